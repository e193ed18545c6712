"""What every converter shares: reading a downloaded release file, validating records, the plan format.

A converter turns the files of an official release into harness records (see `data_sources`). It reads
what was downloaded and never executes any of it. Records the rule cannot convert are skipped with a
reason, so that one odd record does not cost the whole data set; a file that is not what the source
publishes (not JSON, not a gzip tar archive, a field of the wrong type) is a `ConversionError`.
"""

from __future__ import annotations

import json
import tarfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = [
    "ConversionError",
    "Converted",
    "Converter",
    "SourceRecord",
    "format_plan_text",
    "read_archive",
    "read_json",
    "read_jsonl",
    "validate",
]

Model = TypeVar("Model", bound=BaseModel)
_ARCHIVE_LIMIT = 256 * 2**20  # bytes read out of one archive, at most (a decompression bomb stops here)


class ConversionError(ValueError):
    """A downloaded file is not shaped like the official release it should be."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Converted:
    """A converter's output: the harness records, and a reason for every source record left out."""

    records: tuple[dict[str, Any], ...]
    skipped: tuple[str, ...] = ()


Converter = Callable[[Mapping[str, Path]], Converted]
"""Reads the downloaded files (by source key) and returns the harness records."""


class SourceRecord(BaseModel):
    """Base of the models of official records.

    Unknown fields are ignored rather than forbidden: these are third-party files pinned to a revision,
    and a field the harness format does not carry is dropped, not an error.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)


def read_json(path: Path) -> Any:
    """The JSON document in a downloaded file.

    Raises:
        ConversionError: the file is not UTF-8 JSON.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConversionError(f"{path.name} is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise ConversionError(f"{path.name} is not JSON (line {error.lineno}, column {error.colno})") from None


def read_jsonl(path: Path) -> list[Any]:
    """The JSON value on each non-blank line of a downloaded JSON Lines file.

    Raises:
        ConversionError: the file is not UTF-8, or a line is not JSON.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConversionError(f"{path.name} is not UTF-8 text") from None
    values = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                values.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ConversionError(f"{path.name}:{number} is not JSON (column {error.colno})") from None
    return values


def validate(model: type[Model], value: Any, *, where: str) -> Model:
    """`value` as a `model`, or one line that says where and what is wrong.

    Raises:
        ConversionError: the value does not match the model.
    """
    try:
        return model.model_validate(value)
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        field = f" field {location!r}" if location else ""
        raise ConversionError(f"{where}:{field} {first['msg'].lower()}") from None


def read_archive(path: Path, wanted: Callable[[str], bool]) -> dict[str, bytes]:
    """The regular files of a gzip tar archive whose path `wanted` accepts, by path below the top folder.

    GitHub's archives put every file under one `REPO-REVISION/` folder; paths are given without it. Nothing is
    extracted to disk, so a member's path cannot escape anywhere; links and special files are ignored.

    Raises:
        ConversionError: the file is not a gzip tar archive, or holds more than 256 MiB of wanted files.
    """
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(path, mode="r:gz") as archive:
            for member in archive:
                relative = PurePosixPath(*PurePosixPath(member.name).parts[1:]).as_posix()
                if not member.isfile() or relative == "." or not wanted(relative):
                    continue
                total += member.size
                if total > _ARCHIVE_LIMIT:
                    raise ConversionError(f"{path.name} holds more than {_ARCHIVE_LIMIT >> 20} MiB of wanted files")
                extracted = archive.extractfile(member)
                if extracted is not None:
                    files[relative] = extracted.read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise ConversionError(f"{path.name} is not a gzip tar archive ({error})") from None
    return files


def format_plan_text(calls: Sequence[str]) -> str:
    """A plan in LLMCompiler's numbered format: one call per line, then `join()<END_OF_PLAN>`."""
    lines = [f"{index}. {call}" for index, call in enumerate(calls, start=1)]
    lines.append(f"{len(calls) + 1}. join()<END_OF_PLAN>")
    return "\n".join(lines)
