"""The `search` MCP server: BM25 full-text search and title look-up over a JSON Lines corpus.

Run it over stdio (or streamable HTTP on 127.0.0.1 with `--http PORT`)::

    python -m agentdag.tools.search --hotpotqa ../shared/data/search/hotpotqa_distractor.jsonl
    python -m agentdag.tools.search --corpus docs.jsonl --title-field title --text-field text

Tools (both read-only and idempotent):

* `search(query: str, k: int = 5) -> list of {title, text, score}`: the `k` best documents by BM25;
* `lookup(title: str) -> {title, text}`: the document with that title (exact, then ignoring case, then the
  closest spelling); an unknown title is a tool error that lists similar titles.

`--latency-ms` delays every call by a seeded, per-call jitter around the mean, standing in for a web API in
benchmarks. The index lives in memory unless `--index PATH` names a cache file (rebuilt when the corpus
changes).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from .search_index import SearchIndex, SimulatedLatency
from .transport import add_transport_arguments, serve

__all__ = ["LookupResult", "SearchResult", "create_server", "main"]

MAX_K = 50
FUZZY_CUTOFF = 0.8
"""How close (difflib ratio, ignoring case) a title must be for `lookup` to return it in place of the asked one."""

_READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, destructive_hint=False, open_world_hint=False)


class SearchResult(BaseModel):
    """One ranked document; `score` is BM25 relevance (higher is better, comparable within one query)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    text: str
    score: float


class LookupResult(BaseModel):
    """The document `lookup` found."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    text: str


def create_server(index: SearchIndex, *, latency: SimulatedLatency | None = None) -> MCPServer[Any]:
    """An MCP server with the `search` and `lookup` tools over `index`.

    Args:
        index: the corpus; the server queries it from the event loop's thread.
        latency: a simulated delay before every call (None: answer at once).
    """
    delay = latency or SimulatedLatency(mean_ms=0)
    server: MCPServer[Any] = MCPServer(
        "agentdag-search",
        instructions=(
            f"Full-text search over {len(index)} documents. Use `search` with a few keywords; use `lookup` "
            "when you know a document's title."
        ),
        log_level="WARNING",
    )

    @server.tool(annotations=_READ_ONLY, structured_output=True)
    async def search(
        query: Annotated[str, Field(description="Keywords to search for; any text is accepted.")],
        k: Annotated[int, Field(ge=1, le=MAX_K, description="How many results to return.")] = 5,
    ) -> list[SearchResult]:
        """Search the corpus by keywords (BM25); returns up to `k` documents as {title, text, score}, best first."""
        await delay.wait(f"search\x00{query}")
        hits = index.search(query, limit=k)
        return [SearchResult(title=hit.title, text=hit.text, score=hit.score) for hit in hits]

    @server.tool(annotations=_READ_ONLY, structured_output=True)
    async def lookup(
        title: Annotated[str, Field(description="The document's title; close spellings are accepted.")],
    ) -> LookupResult:
        """Return the document with this title as {title, text}; an unknown title's error lists similar ones."""
        await delay.wait(f"lookup\x00{title}")
        document = index.get(title)
        if document is None:
            close = index.close_titles(title, limit=1, cutoff=FUZZY_CUTOFF)
            document = index.get(close[0]) if close else None
        if document is None:
            raise ToolError(_not_found(index, title))
        return LookupResult(title=document.title, text=document.text)

    return server


def _not_found(index: SearchIndex, title: str) -> str:
    similar = index.close_titles(title, limit=5, cutoff=0.5)
    for hit in index.search(title, limit=5):
        if hit.title not in similar:
            similar.append(hit.title)
    if not similar:
        return f"no document titled {title!r}; use `search` to find one"
    listed = "; ".join(repr(candidate) for candidate in similar[:8])
    return f"no document titled {title!r}; similar titles: {listed}"


def create_parser() -> argparse.ArgumentParser:
    """The command line of `python -m agentdag.tools.search`."""
    parser = argparse.ArgumentParser(
        prog="python -m agentdag.tools.search",
        description="MCP server: BM25 full-text search (SQLite FTS5) and title look-up over a JSON Lines corpus. "
        "Tools: search(query, k=5) -> [{title, text, score}], lookup(title) -> {title, text}.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", type=Path, metavar="FILE", help="a JSON Lines file of documents, one object a line")
    source.add_argument(
        "--hotpotqa",
        type=Path,
        metavar="FILE",
        help="a HotpotQA JSON Lines file: index every context paragraph, deduplicated by title",
    )
    parser.add_argument("--title-field", default="title", help="with --corpus: the title field (default: title)")
    parser.add_argument(
        "--text-field",
        default="text",
        help="with --corpus: the text field, a string or list of strings (default: text)",
    )
    parser.add_argument(
        "--index", type=Path, metavar="PATH", help="keep the index in this SQLite file, rebuilt when the corpus changes"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, metavar="MS", help="simulated mean latency per call (default: 0)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the latency jitter (default: 0)")
    add_transport_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Build the index and serve it until the client disconnects."""
    args = create_parser().parse_args(argv)
    try:
        if args.hotpotqa is not None:
            index = SearchIndex.from_hotpotqa(args.hotpotqa, cache=args.index)
        else:
            index = SearchIndex.from_jsonl(
                args.corpus, title_field=args.title_field, text_field=args.text_field, cache=args.index
            )
    except (OSError, ValueError) as error:
        sys.exit(f"search: cannot index the corpus: {error}")
    server = create_server(index, latency=SimulatedLatency(mean_ms=args.latency_ms, seed=args.seed))
    serve(server, args)


if __name__ == "__main__":
    main()
