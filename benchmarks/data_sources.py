"""The benchmark data sets: where each is officially published, pinned to a revision, and how it converts.

Each `DataSet` names its harness file (relative to a data folder, like `../shared/data`), the files of its
official release (`Source`: a URL at a fixed commit or a versioned URL, the SHA-256 of its content when it
is known, and a size limit), and the converter that turns them into harness records.

`sha256=None` means the checksum has not been recorded yet: it could not be learned on the machine this
table was written on (it has no internet access). `agentdag data fetch` refuses such a download unless
`--no-verify` is given, and prints the SHA-256 it got so that it can be checked and recorded here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .convert_calls import convert_bfcl
from .convert_common import Converter
from .convert_math import convert_gsm8k
from .convert_search import convert_fanoutqa, convert_hotpotqa, convert_movie, convert_parallelqa
from .convert_swe import convert_humanevalfix, convert_polyglot, convert_quixbugs

__all__ = ["DATA_SETS", "DataSet", "Source", "data_set_for_path", "find_data_set"]

_MB = 2**20


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """One file of an official release, pinned to a revision.

    Attributes:
        key: the name the converter knows the file by.
        url: where it is published (a commit or versioned URL, so that its content cannot change).
        sha256: the SHA-256 of its content, or None while it is not recorded (see the module docstring).
        max_bytes: a download larger than this is refused.
    """

    key: str
    url: str
    sha256: str | None
    max_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSet:
    """A benchmark data set: its harness file, its official release and its converter.

    Attributes:
        name: the name `agentdag data fetch NAME` takes.
        path: the harness file, relative to a data folder (`search/fanoutqa_dev.jsonl`).
        title: what it is, in a few words.
        license: the license of the data.
        homepage: the project's page.
        sources: the release files to download.
        convert: turns the downloaded files (by source key) into harness records.
    """

    name: str
    path: str
    title: str
    license: str
    homepage: str
    sources: tuple[Source, ...]
    convert: Converter


_FANOUTQA = "https://raw.githubusercontent.com/zhudotexe/fanoutqa/eb0598884011725c6e29ff0fe75d9da935cad628"
_LLMCOMPILER = "https://raw.githubusercontent.com/SqueezeAILab/LLMCompiler/dca77b2197f89a20e505545a1458ae4a2ff04571"
_BFCL = (
    "https://raw.githubusercontent.com/ShishirPatil/gorilla/b82e73a599d1d45ceecb5eead1db392eb1a2dd0c"
    "/berkeley-function-call-leaderboard/bfcl_eval/data"
)
_OCTOPACK = "https://raw.githubusercontent.com/bigcode-project/octopack/e17a8f6470264286bc6a52eb8263582083bf3bf6"
_GSM8K = "https://raw.githubusercontent.com/openai/grade-school-math/3101c7d5072418e28b9008a6636bde82a006892c"


def _bfcl(category: str) -> tuple[Source, ...]:
    return (
        Source(key="questions", url=f"{_BFCL}/BFCL_v4_{category}.json", sha256=None, max_bytes=20 * _MB),
        Source(key="answers", url=f"{_BFCL}/possible_answer/BFCL_v4_{category}.json", sha256=None, max_bytes=20 * _MB),
    )


DATA_SETS: tuple[DataSet, ...] = (
    DataSet(
        name="fanoutqa",
        path="search/fanoutqa_dev.jsonl",
        title="FanOutQA dev set",
        license="CC BY-SA 4.0",
        homepage="https://fanoutqa.com",
        sources=(
            Source(key="dev", url=f"{_FANOUTQA}/fanoutqa/data/fanout-final-dev.json", sha256=None, max_bytes=50 * _MB),
        ),
        convert=convert_fanoutqa,
    ),
    DataSet(
        name="hotpotqa",
        path="search/hotpotqa_distractor.jsonl",
        title="HotpotQA dev set, distractor setting",
        license="CC BY-SA 4.0",
        homepage="https://hotpotqa.github.io",
        sources=(
            Source(
                key="dev",
                url="http://curtis.ml.cmu.edu/datasets/hotpot/hotpot_dev_distractor_v1.json",
                sha256=None,
                max_bytes=100 * _MB,
            ),
        ),
        convert=convert_hotpotqa,
    ),
    DataSet(
        name="parallelqa",
        path="search/llmcompiler_parallelqa.jsonl",
        title="LLMCompiler's ParallelQA",
        license="MIT",
        homepage="https://github.com/SqueezeAILab/LLMCompiler",
        sources=(
            Source(key="data", url=f"{_LLMCOMPILER}/datasets/parallelqa_dataset.json", sha256=None, max_bytes=10 * _MB),
        ),
        convert=convert_parallelqa,
    ),
    DataSet(
        name="movie",
        path="search/llmcompiler_movie.jsonl",
        title="LLMCompiler's Movie Recommendation (from BIG-bench)",
        license="MIT (BIG-bench: Apache-2.0)",
        homepage="https://github.com/SqueezeAILab/LLMCompiler",
        sources=(
            Source(
                key="data",
                url=f"{_LLMCOMPILER}/datasets/movie_recommendations_formatted.json",
                sha256=None,
                max_bytes=10 * _MB,
            ),
        ),
        convert=convert_movie,
    ),
    DataSet(
        name="bfcl_parallel",
        path="calls/bfcl_parallel.jsonl",
        title="BFCL v4 parallel",
        license="Apache-2.0",
        homepage="https://gorilla.cs.berkeley.edu/leaderboard.html",
        sources=_bfcl("parallel"),
        convert=convert_bfcl,
    ),
    DataSet(
        name="bfcl_parallel_multiple",
        path="calls/bfcl_parallel_multiple.jsonl",
        title="BFCL v4 parallel multiple",
        license="Apache-2.0",
        homepage="https://gorilla.cs.berkeley.edu/leaderboard.html",
        sources=_bfcl("parallel_multiple"),
        convert=convert_bfcl,
    ),
    DataSet(
        name="quixbugs",
        path="swe/quixbugs.jsonl",
        title="QuixBugs, Python programs",
        license="MIT",
        homepage="https://github.com/jkoppel/QuixBugs",
        sources=(
            Source(
                key="archive",
                url="https://github.com/jkoppel/QuixBugs/archive/c7d615710629c665aacb2518e7ab77a914de03a8.tar.gz",
                sha256=None,
                max_bytes=100 * _MB,
            ),
        ),
        convert=convert_quixbugs,
    ),
    DataSet(
        name="polyglot",
        path="swe/polyglot_python.jsonl",
        title="Exercism Python exercises of Aider's polyglot benchmark",
        license="MIT",
        homepage="https://github.com/Aider-AI/polyglot-benchmark",
        sources=(
            Source(
                key="archive",
                url="https://github.com/Aider-AI/polyglot-benchmark/archive/7e0611e77b54e2dea774cdc0aa00cf9f7ed6144f.tar.gz",
                sha256=None,
                max_bytes=100 * _MB,
            ),
        ),
        convert=convert_polyglot,
    ),
    DataSet(
        name="humanevalfix",
        path="swe/humanevalfix.jsonl",
        title="HumanEvalFix (HumanEvalPack, Python)",
        license="MIT",
        homepage="https://github.com/bigcode-project/octopack",
        sources=(
            Source(
                key="data",
                url=f"{_OCTOPACK}/evaluation/create/humaneval-x/data/python/data/humanevalpack.jsonl",
                sha256=None,
                max_bytes=20 * _MB,
            ),
        ),
        convert=convert_humanevalfix,
    ),
    DataSet(
        name="gsm8k",
        path="math/gsm8k_test.jsonl",
        title="GSM8K test split",
        license="MIT",
        homepage="https://github.com/openai/grade-school-math",
        sources=(
            Source(key="test", url=f"{_GSM8K}/grade_school_math/data/test.jsonl", sha256=None, max_bytes=20 * _MB),
        ),
        convert=convert_gsm8k,
    ),
)


def find_data_set(name: str) -> DataSet | None:
    """The data set called `name` (or whose harness file is named `name`), or None."""
    for data_set in DATA_SETS:
        if name in (data_set.name, data_set.path, data_set.path.rsplit("/", 1)[-1]):
            return data_set
    return None


def data_set_for_path(path: str) -> DataSet | None:
    """The data set whose harness file is `path` (relative to a data folder), or None."""
    return next((data_set for data_set in DATA_SETS if data_set.path == path), None)
