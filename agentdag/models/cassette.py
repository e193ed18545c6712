"""Model-call record and replay: cassettes that make runs with a real model repeatable offline.

A cassette is a JSONL file with one line per model call: a hash of the canonical request (messages and
settings; not the model's name, so a cassette recorded against one server replays without any), the
request itself for people to read, the response and, for streamed calls, the chunks as they arrived.

* `CassetteModel.recording(model, path)` forwards every call to `model` and appends it to the file.
* `CassetteModel.replaying(path)` answers from the file and opens no model server. A request that was never
  recorded raises `CassetteMissError` (an `AgentdagError`, deliberately not a `ModelError`, so no
  fallback or retry hides it). The k-th identical request gets the k-th recorded answer, cycling when
  a run asks more often than the recording did.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from typing import IO, Any, Literal

from agentdag.errors import AgentdagError
from agentdag.hashing import canonical_hash
from agentdag.messages import Completion, ModelRequest, ModelResponse, ModelSettings, ToolCall, Usage
from agentdag.models.base import Model
from agentdag.tokens import estimate_prompt_tokens, estimate_tokens

__all__ = ["CassetteError", "CassetteMissError", "CassetteModel", "request_key"]

CassetteMode = Literal["record", "replay"]

# Settings added after cassettes were first recorded: left out of a request's key while at their defaults,
# so that cassettes recorded before them still replay.
_LATER_SETTINGS = ("tools", "tool_choice", "parallel_tool_calls")
_DEFAULT_SETTINGS = dataclasses.asdict(ModelSettings())


class CassetteError(AgentdagError):
    """A cassette file cannot be read or written."""


class CassetteMissError(CassetteError):
    """Replay met a request the cassette does not hold."""


def request_key(request: ModelRequest) -> str:
    """The hash that identifies a request in a cassette: SHA-256 of its canonical JSON."""
    return canonical_hash(_request_json(request))


@dataclasses.dataclass(slots=True)
class _Entry:
    response: ModelResponse | None
    chunks: list[str] | None


class CassetteModel(Model):
    """A model that records calls to a cassette or replays them from it; see the module docstring."""

    def __init__(self, path: Path, mode: CassetteMode, wrapped: Model | None, entries: dict[str, list[_Entry]]) -> None:
        self.path = path
        self.mode = mode
        self.wrapped = wrapped
        self.name = wrapped.name if wrapped is not None else _recorded_name(entries) or "cassette"
        self._entries = entries
        self._served: defaultdict[str, int] = defaultdict(int)
        self._file: IO[str] | None = None
        self.hits = 0
        self.recorded = 0

    @classmethod
    def recording(cls, model: Model, path: str | Path) -> CassetteModel:
        """Forward calls to `model` and append each one to the cassette at `path` (created if needed).

        Raises:
            CassetteError: the file cannot be opened for writing.
        """
        cassette = cls(Path(path), "record", model, {})
        try:
            cassette.path.parent.mkdir(parents=True, exist_ok=True)
            cassette._file = cassette.path.open("a", encoding="utf-8")
        except OSError as error:
            raise CassetteError(f"{path}: cannot write the cassette: {error.strerror}") from None
        return cassette

    @classmethod
    def replaying(cls, path: str | Path) -> CassetteModel:
        """Answer calls from the cassette at `path`, without any model server.

        Raises:
            CassetteError: the file is missing or a line is not a recorded call.
        """
        return cls(Path(path), "replay", None, _load(Path(path)))

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Replay the recorded response, or call the wrapped model and record its response."""
        if self.mode == "replay":
            entry = self._replay(request)
            return entry.response if entry.response is not None else _response_from_chunks(request, entry, self.name)
        assert self.wrapped is not None, "a recording cassette always wraps a model"
        response = await self.wrapped.request(request)
        self._record(request, response, None)
        return response

    async def stream(self, request: ModelRequest) -> AsyncGenerator[str | ModelResponse, None]:
        """Replay the recorded chunks, or stream from the wrapped model and record the chunks."""
        if self.mode == "replay":
            entry = self._replay(request)
            for chunk in entry.chunks if entry.chunks is not None else [entry.response.text if entry.response else ""]:
                yield chunk
            if entry.response is not None:
                yield entry.response
            return
        assert self.wrapped is not None, "a recording cassette always wraps a model"
        chunks: list[str] = []
        response: ModelResponse | None = None
        async with aclosing(self.wrapped.stream(request)) as stream:
            try:
                async for item in stream:
                    if isinstance(item, ModelResponse):
                        response = item
                    else:
                        chunks.append(item)
                    yield item
            except GeneratorExit:
                # Closed early by the consumer: recorded as far as it went, and replay stops there too.
                self._record(request, None, chunks)
                raise
        self._record(request, response, chunks)

    def close_file(self) -> None:
        """Close the cassette file; calls after this are no longer recorded."""
        if self._file is not None:
            self._file.close()
            self._file = None

    async def aclose(self) -> None:
        """Close the cassette file and the wrapped model."""
        self.close_file()
        if self.wrapped is not None:
            await self.wrapped.aclose()

    def _replay(self, request: ModelRequest) -> _Entry:
        key = request_key(request)
        entries = self._entries.get(key)
        if not entries:
            last = request.messages[-1].content if request.messages else ""
            raise CassetteMissError(
                f"{self.path}: no recorded response for request {key[:12]} "
                f"(last message: {last[:80]!r}); record the run again with --record"
            )
        index = self._served[key]
        self._served[key] += 1
        self.hits += 1
        return entries[index % len(entries)]

    def _record(self, request: ModelRequest, response: ModelResponse | None, chunks: list[str] | None) -> None:
        if self._file is None:
            return
        line = {
            "key": request_key(request),
            "request": _request_json(request),
            "response": None if response is None else _response_json(response),
            "chunks": chunks,
        }
        self._file.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._file.flush()
        self.recorded += 1


def _request_json(request: ModelRequest) -> dict[str, Any]:
    settings = dataclasses.asdict(request.settings)
    for name in _LATER_SETTINGS:
        if settings[name] == _DEFAULT_SETTINGS[name]:
            del settings[name]
    return {
        "messages": [[message.role, message.content] for message in request.messages],
        "settings": settings,
    }


def _response_json(response: ModelResponse) -> dict[str, Any]:
    return dataclasses.asdict(response)


def _parse_response(data: dict[str, Any]) -> ModelResponse:
    return ModelResponse(
        completions=tuple(
            Completion(
                text=item["text"],
                finish_reason=item["finish_reason"],
                logprobs=None if item.get("logprobs") is None else tuple(item["logprobs"]),
                tool_calls=tuple(ToolCall(**call) for call in item.get("tool_calls", ())),
            )
            for item in data["completions"]
        ),
        usage=Usage(**data["usage"]),
        model=data["model"],
    )


def _load(path: Path) -> dict[str, list[_Entry]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CassetteError(f"{path}: no such cassette; record one with --record") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CassetteError(f"{path}: cannot read the cassette: {error}") from None
    entries: dict[str, list[_Entry]] = defaultdict(list)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            response = None if data["response"] is None else _parse_response(data["response"])
            chunks = data.get("chunks")
            if chunks is not None and not all(isinstance(chunk, str) for chunk in chunks):
                raise TypeError("chunks must be strings")
            entries[str(data["key"])].append(_Entry(response, chunks))
        except (ValueError, KeyError, TypeError) as error:
            raise CassetteError(f"{path}:{number}: not a recorded model call ({error})") from None
    return dict(entries)


def _recorded_name(entries: dict[str, list[_Entry]]) -> str | None:
    for items in entries.values():
        for entry in items:
            if entry.response is not None:
                return entry.response.model
    return None


def _response_from_chunks(request: ModelRequest, entry: _Entry, name: str) -> ModelResponse:
    """The response of a stream that was closed before its end, as far as it went."""
    text = "".join(entry.chunks or [])
    return ModelResponse(
        completions=(Completion(text=text, finish_reason="length"),),
        usage=Usage(
            calls=1,
            prompt_tokens=estimate_prompt_tokens(request.messages, tools=request.settings.tools),
            completion_tokens=estimate_tokens(text),
        ),
        model=name,
    )
