"""One hash of JSON-like values, for keys that must not depend on key order (cassettes, the tool cache)."""

from __future__ import annotations

import hashlib
import json

__all__ = ["canonical_hash"]


def canonical_hash(value: object) -> str:
    """SHA-256 (hex) of `value` as canonical JSON: keys sorted, no spaces; non-JSON values by their repr."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)
    return hashlib.sha256(canonical.encode()).hexdigest()
