"""References from a node's arguments to earlier nodes' outputs, and their resolution.

Two forms exist:

* a structured reference, a JSON object `{"$ref": 3}` or `{"$ref": 3, "path": "items.0.title"}`, which
  is replaced by node 3's output (or the value at the field path) with its type intact;
* LLMCompiler-style `$3`, `${3}` and `${3.items.0.title}` inside strings. A string that is exactly one
  such reference is replaced by the structured value; inside longer text the value is spliced in as text
  (strings as they are, anything else as compact JSON).

A bare `$N` counts as a reference only when node N exists, so text such as "costs $100" stays literal;
the braced form always counts and an unknown node in it is an error. A node id in text has at most 18
digits: after `$` a longer run of digits is a number, and in braces it is an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from agentdag.errors import InvalidReferenceError

__all__ = [
    "Reference",
    "contains_reference",
    "find_references",
    "is_whole_reference",
    "normalize_references",
    "parse_path",
    "rename_references",
    "resolve_references",
]

REF_KEY = "$ref"
_MAX_ID_DIGITS = 18
_STRING_REFERENCE = re.compile(r"\$\{(\d+)((?:\.[^}]*)?)\}|\$(\d+)(?![\d.\w])")


@dataclass(frozen=True, slots=True)
class Reference:
    """One reference found in a node's arguments.

    Attributes:
        node_id: the referenced node.
        path: field path into its output (empty for the whole output).
        explicit: False for a bare `$N` in text, which only counts when node N exists.
    """

    node_id: int
    path: tuple[str | int, ...]
    explicit: bool


def parse_path(path: object) -> tuple[str | int, ...]:
    """Parse a field path: `"items.0.title"`, or a list of keys and indices.

    Raises:
        InvalidReferenceError: the path is neither a string nor a list of strings and integers.
    """
    if path is None or path == "":
        return ()
    if isinstance(path, str):
        return tuple(_index(part) for part in path.split("."))
    if isinstance(path, list) and all(isinstance(part, str | int) and not isinstance(part, bool) for part in path):
        return tuple(path)
    raise InvalidReferenceError(f"a reference path must be a string like 'items.0.title', got {path!r}")


def _index(part: str) -> str | int:
    """A path part: digits are a list index, unless too long for one (or "²", a digit `int()` refuses)."""
    return int(part) if part.isdecimal() and len(part) <= _MAX_ID_DIGITS else part


def _node_id(digits: str) -> int | None:
    """The node id written as `digits`, or None when it is too long to be one (`int()` refuses past 4,300)."""
    return int(digits) if len(digits) <= _MAX_ID_DIGITS else None


def _is_reference_object(value: Mapping[str, Any]) -> bool:
    return REF_KEY in value


def _parse_reference_object(value: Mapping[str, Any]) -> Reference:
    extra = set(value) - {REF_KEY, "path"}
    if extra:
        raise InvalidReferenceError(f"a reference object has only '$ref' and 'path', not {sorted(map(str, extra))}")
    raw = node_id = value[REF_KEY]
    if isinstance(raw, str) and raw.lstrip("$").isdecimal():
        node_id = _node_id(raw.lstrip("$"))
    if not isinstance(node_id, int) or isinstance(node_id, bool):
        raise InvalidReferenceError(f"'$ref' must be a node id (an integer), got {raw!r}")
    return Reference(node_id, parse_path(value.get("path")), explicit=True)


def _string_references(text: str) -> Iterator[tuple[re.Match[str], Reference]]:
    for match in _STRING_REFERENCE.finditer(text):
        braced, path, bare = match.group(1), match.group(2), match.group(3)
        if braced is not None:
            node_id = _node_id(braced)
            if node_id is None:
                raise InvalidReferenceError(f"{match.group(0)[:40]!r}… names a node id too long to exist")
            yield match, Reference(node_id, parse_path(path[1:]), explicit=True)
        else:
            node_id = _node_id(bare)
            if node_id is not None:  # else a long number in text, such as "$100000000000000000000"
                yield match, Reference(node_id, (), explicit=False)


def find_references(value: object) -> Iterator[Reference]:
    """Yield every reference inside an argument value, depth first.

    Raises:
        InvalidReferenceError: a reference object is malformed, or the value is nested too deeply to search.
    """
    try:
        yield from _find(value)
    except RecursionError:
        raise InvalidReferenceError("the value is nested too deeply to search for references") from None


def _find(value: object) -> Iterator[Reference]:
    if isinstance(value, str):
        if "$" in value:
            for _, reference in _string_references(value):
                yield reference
    elif isinstance(value, Mapping):
        if _is_reference_object(value):
            yield _parse_reference_object(value)
            return
        for item in value.values():
            yield from _find(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _find(item)


def is_whole_reference(text: str, known: Collection[int]) -> bool:
    """Whether `text` is exactly one reference that counts, so it resolves to a structured value."""
    match = _STRING_REFERENCE.fullmatch(text)
    return match is not None and (match.group(1) is not None or _node_id(match.group(3)) in known)


def contains_reference(value: object, known: Collection[int]) -> bool:
    """Whether `value` holds a reference that counts, given the ids of nodes that exist."""
    return any(reference.explicit or reference.node_id in known for reference in find_references(value))


def _follow(output: object, path: tuple[str | int, ...], node_id: int) -> Any:
    current = output
    for depth, key in enumerate(path):
        where = ".".join(str(part) for part in path[: depth + 1])
        if isinstance(current, Mapping):
            if str(key) not in current:
                keys = ", ".join(sorted(map(str, current))[:10]) or "none"
                raise InvalidReferenceError(f"node {node_id}'s output has no field {where!r} (fields: {keys})")
            current = current[str(key)]
        elif isinstance(current, list):
            if not isinstance(key, int) or not -len(current) <= key < len(current):
                raise InvalidReferenceError(
                    f"node {node_id}'s output has no item {where!r} (a list of {len(current)} items)"
                )
            current = current[key]
        else:
            raise InvalidReferenceError(
                f"node {node_id}'s output at {where!r} is a {type(current).__name__}, not a container"
            )
    return current


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def resolve_references(value: Any, outputs: Mapping[int, Any]) -> Any:
    """Return `value` with every reference replaced by the referenced output.

    `outputs` maps the ids of the nodes this value may refer to onto their outputs; a bare `$N` whose N is
    not among them stays literal text.

    Raises:
        InvalidReferenceError: a reference names a node not in `outputs` or a path that does not exist, or
            the value (or an output spliced into text) is nested too deeply.
    """
    try:
        return _resolve(value, outputs)
    except RecursionError:
        raise InvalidReferenceError("the value is nested too deeply to resolve its references") from None


def _resolve(value: Any, outputs: Mapping[int, Any]) -> Any:
    if isinstance(value, str):
        return _resolve_string(value, outputs) if "$" in value else value
    if isinstance(value, Mapping):
        if _is_reference_object(value):
            return _lookup(_parse_reference_object(value), outputs)
        return {key: _resolve(item, outputs) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_resolve(item, outputs) for item in value]
    return value


def _lookup(reference: Reference, outputs: Mapping[int, Any]) -> Any:
    if reference.node_id not in outputs:
        raise InvalidReferenceError(f"reference to node {reference.node_id}, whose output is not available here")
    return _follow(outputs[reference.node_id], reference.path, reference.node_id)


def _resolve_string(text: str, outputs: Mapping[int, Any]) -> Any:
    matches = [
        (match, reference)
        for match, reference in _string_references(text)
        if reference.explicit or reference.node_id in outputs
    ]
    if not matches:
        return text
    if len(matches) == 1 and matches[0][0].span() == (0, len(text)):
        return _lookup(matches[0][1], outputs)
    pieces: list[str] = []
    position = 0
    for match, reference in matches:
        pieces.append(text[position : match.start()])
        pieces.append(_as_text(_lookup(reference, outputs)))
        position = match.end()
    pieces.append(text[position:])
    return "".join(pieces)


def rename_references(value: Any, renames: Mapping[int, int]) -> Any:
    """Return `value` with references to the nodes in `renames` pointed at their new ids.

    Used when a repeated call reuses an earlier node's output: the repeat is not run, and the nodes that
    reference it read the earlier node's output instead. Every form is renamed (`$N`, `${N.path}`,
    `{"$ref": N}` and `{"$ref": "N"}`).
    """
    if not renames:
        return value
    if isinstance(value, str):
        if "$" not in value:
            return value

        def rename(match: re.Match[str]) -> str:
            braced, path, bare = match.group(1), match.group(2), match.group(3)
            node_id = _node_id(braced if braced is not None else bare)
            if node_id is None or node_id not in renames:
                return match.group(0)
            return f"${{{renames[node_id]}{path}}}" if braced is not None else f"${renames[node_id]}"

        return _STRING_REFERENCE.sub(rename, value)
    if isinstance(value, Mapping):
        if REF_KEY in value:
            target = _renamed_target(value[REF_KEY])
            return {**value, REF_KEY: renames[target]} if target is not None and target in renames else dict(value)
        return {key: rename_references(item, renames) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rename_references(item, renames) for item in value]
    return value


def normalize_references(value: Any, known: Collection[int]) -> Any:
    """`value` with every reference that counts written one way, so that equal calls compare equal.

    A reference object, or a string that is exactly one reference, becomes `{"$ref": N}` (with `"path":
    "a.0.b"` when it has one); a reference inside longer text becomes `${N}` or `${N.a.0.b}`. A bare `$N`
    whose node is not in `known` stays text, as it would when the call runs.

    Raises:
        InvalidReferenceError: a reference object is malformed, or the value is nested too deeply.
    """
    try:
        return _normalize(value, known)
    except RecursionError:
        raise InvalidReferenceError("the value is nested too deeply to read its references") from None


def _normalize(value: Any, known: Collection[int]) -> Any:
    if isinstance(value, str):
        if "$" not in value:
            return value
        matches = [
            (match, reference)
            for match, reference in _string_references(value)
            if reference.explicit or reference.node_id in known
        ]
        if len(matches) == 1 and matches[0][0].span() == (0, len(value)):
            return _reference_object(matches[0][1])
        pieces: list[str] = []
        position = 0
        for match, reference in matches:
            path = "".join(f".{part}" for part in reference.path)
            pieces += [value[position : match.start()], f"${{{reference.node_id}{path}}}"]
            position = match.end()
        return "".join([*pieces, value[position:]])
    if isinstance(value, Mapping):
        if _is_reference_object(value):
            return _reference_object(_parse_reference_object(value))
        return {key: _normalize(item, known) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_normalize(item, known) for item in value]
    return value


def _reference_object(reference: Reference) -> dict[str, Any]:
    if not reference.path:
        return {REF_KEY: reference.node_id}
    return {REF_KEY: reference.node_id, "path": ".".join(str(part) for part in reference.path)}


def _renamed_target(raw: object) -> int | None:
    """The node id a `$ref` value names (an integer, or digits in a string), or None."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.lstrip("$").isdecimal():
        return _node_id(raw.lstrip("$"))
    return None
