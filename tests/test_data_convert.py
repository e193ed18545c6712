"""The converters: release-shaped fixtures give the shared files' records, field by field; bad files one error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from agentdag.benchmarks.convert_common import ConversionError, read_archive, validate
from agentdag.benchmarks.convert_math import convert_gsm8k
from agentdag.benchmarks.convert_search import convert_fanoutqa, convert_hotpotqa
from agentdag.benchmarks.convert_swe import convert_polyglot, convert_quixbugs
from agentdag.benchmarks.data_sources import DATA_SETS, find_data_set
from data_fixtures import canonical, expected_records, tar_gz, write_release
from pydantic import BaseModel


@pytest.mark.parametrize("data_set", DATA_SETS, ids=lambda data_set: data_set.name)
def test_each_release_converts_to_the_records_of_the_shared_file(data_set: Any, tmp_path: Path) -> None:
    converted = data_set.convert(write_release(data_set, tmp_path))
    expected = expected_records(data_set)
    assert converted.skipped == ()
    assert len(converted.records) == len(expected)
    for record, wanted in zip(converted.records, expected, strict=True):
        assert set(record) == set(wanted)
        for field in wanted:
            assert record[field] == wanted[field], f"{data_set.name}: field {field!r} differs"
    assert canonical(list(converted.records)) == canonical(expected)  # types too: 61.6 stays a float


def _write_json(path: Path, value: Any) -> dict[str, Path]:
    path.write_text(json.dumps(value), encoding="utf-8")
    return {"dev": path}


def _sub(id: str, question: str, *, depends_on: list[str] | None = None) -> Any:
    return {"id": id, "question": question, "decomposition": [], "answer": "x", "depends_on": depends_on or []}


def test_fanoutqa_question_that_depends_on_a_later_one_is_skipped_with_its_reason(tmp_path: Path) -> None:
    questions = [
        {"id": "ok", "question": "Q?", "decomposition": [_sub("a", "A?")], "answer": "x", "categories": []},
        {
            "id": "odd",
            "question": "Q?",
            "decomposition": [_sub("b", "B?", depends_on=["c"]), _sub("c", "C?")],
            "answer": "x",
            "categories": [],
        },
    ]
    for question in questions:
        for sub in question["decomposition"]:
            sub["evidence"] = None
    converted = convert_fanoutqa(_write_json(tmp_path / "dev.json", questions))
    assert [record["id"] for record in converted.records] == ["ok"]
    assert converted.records[0]["oracle_plan_text"] == '1. search("A?")\n2. join()<END_OF_PLAN>'
    assert converted.skipped == ("odd: sub-question b depends on c, which is not asked before it",)


def test_a_field_of_the_wrong_type_is_one_error_naming_the_record(tmp_path: Path) -> None:
    record = {"_id": "1", "answer": 3, "question": "Q?", "supporting_facts": [], "context": [], "type": "bridge"}
    with pytest.raises(ConversionError, match=r"^question 0: field 'answer' input should be a valid string$"):
        convert_hotpotqa(_write_json(tmp_path / "dev.json", [{**record, "level": "hard"}]))
    with pytest.raises(ConversionError, match=r"^question 0: field 'level' field required$"):
        convert_hotpotqa(_write_json(tmp_path / "dev.json", [{**record, "answer": "yes"}]))


def test_a_file_that_is_not_json_is_one_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "fanout-final-dev.json"
    path.write_text("<html>rate limited</html>", encoding="utf-8")
    with pytest.raises(ConversionError, match=r"^fanout-final-dev.json is not JSON \(line 1, column 1\)$"):
        convert_fanoutqa({"dev": path})
    path.write_text('{"not": "a list"}', encoding="utf-8")
    with pytest.raises(ConversionError, match="is not a JSON list of questions"):
        convert_fanoutqa({"dev": path})
    path.write_bytes(b"\xff\xfe[]")
    with pytest.raises(ConversionError, match="is not UTF-8 text"):
        convert_fanoutqa({"dev": path})


def test_gsm8k_answer_is_the_number_after_the_last_marker_without_separators(tmp_path: Path) -> None:
    lines = [
        {"question": "How many?", "answer": "It is 2,000 + 125 = <<2000+125=2125>>2,125\n#### 2,125"},
        {"question": "No marker?", "answer": "There is no final line"},
    ]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    converted = convert_gsm8k({"test": path})
    assert converted.records == (
        {"id": "gsm8k/test/0", "question": "How many?", "solution": lines[0]["answer"], "answer": "2125"},
    )
    assert converted.skipped == ("gsm8k/test/1: the solution has no '#### answer' line",)


def test_polyglot_exercise_without_an_example_solution_is_skipped(tmp_path: Path) -> None:
    base = "polyglot-benchmark-abc/python/exercises/practice"

    def config(name: str) -> bytes:
        named = {"solution": [f"{name}.py"], "test": [f"{name}_test.py"], "example": [".meta/example.py"]}
        return json.dumps({"authors": [], "files": named}).encode()

    files = {
        f"{base}/one/.docs/instructions.md": b"# Instructions\n\nDo one.\n",
        f"{base}/one/.docs/instructions.append.md": b"# Instructions append\n\nIn Python.\n",
        f"{base}/one/.meta/config.json": config("one"),
        f"{base}/one/.meta/example.py": b"def one():\n    return 1\n",
        f"{base}/one/one.py": b"def one():\n    pass\n",
        f"{base}/one/one_test.py": b"from one import one\n",
        f"{base}/two/.docs/instructions.md": b"# Instructions\n",
        f"{base}/two/.meta/config.json": config("two"),
        f"{base}/two/two.py": b"",
        f"{base}/two/two_test.py": b"",
    }
    archive = tmp_path / "archive.tar.gz"
    archive.write_bytes(tar_gz(files))
    converted = convert_polyglot({"archive": archive})
    (record,) = converted.records
    assert record["instructions"] == "# Instructions\n\nDo one.\n\n# Instructions append\n\nIn Python.\n"
    assert record["files"] == {"one.py": "def one():\n    pass\n", "one_test.py": "from one import one\n"}
    assert record["gold"] == {"one.py": "def one():\n    return 1\n"}
    assert record["test_command"] == "python -m pytest -q one_test.py"
    assert converted.skipped == ("polyglot/two: .meta/example.py is missing",)


def test_an_archive_that_is_not_the_repository_is_one_error(tmp_path: Path) -> None:
    archive = tmp_path / "c7d6157.tar.gz"
    archive.write_bytes(tar_gz({"other-abc/README.md": b"# another repository\n"}))
    with pytest.raises(ConversionError, match=r"lacks conftest.py, .*: not the QuixBugs repository$"):
        convert_quixbugs({"archive": archive})
    archive.write_bytes(b"<html>not found</html>")
    with pytest.raises(ConversionError, match=r"^c7d6157.tar.gz is not a gzip tar archive"):
        convert_quixbugs({"archive": archive})
    archive.write_bytes(tar_gz({"repo-abc/a.txt": b"x" * 1000})[:60])  # cut short
    with pytest.raises(ConversionError, match="is not a gzip tar archive"):
        read_archive(archive, lambda _: True)


def test_archive_members_are_read_below_the_top_folder_and_never_extracted(tmp_path: Path) -> None:
    archive = tmp_path / "archive.tar.gz"
    archive.write_bytes(tar_gz({"repo-abc/a/b.txt": b"b", "repo-abc/../../escape.txt": b"e", "repo-abc/c.txt": b"c"}))
    assert read_archive(archive, lambda path: path != "c.txt") == {"a/b.txt": b"b", "../../escape.txt": b"e"}
    assert list(tmp_path.iterdir()) == [archive]


def test_validation_error_is_one_line() -> None:
    class Record(BaseModel):
        id: str

    with pytest.raises(ConversionError) as raised:
        validate(Record, {"id": ["not", "a", "string"]}, where="file.jsonl:7")
    assert str(raised.value) == "file.jsonl:7: field 'id' input should be a valid string"


def test_data_sets_are_found_by_name_or_harness_file_name() -> None:
    assert [data_set.name for data_set in DATA_SETS] == [
        *("fanoutqa", "hotpotqa", "parallelqa", "movie", "bfcl_parallel", "bfcl_parallel_multiple"),
        *("quixbugs", "polyglot", "humanevalfix", "gsm8k"),
    ]
    hotpotqa = find_data_set("hotpotqa")
    assert hotpotqa is not None
    assert find_data_set("hotpotqa_distractor.jsonl") is hotpotqa
    assert find_data_set("search/hotpotqa_distractor.jsonl") is hotpotqa
    assert find_data_set("nope") is None
    for data_set in DATA_SETS:
        for source in data_set.sources:  # every source is pinned to a commit or a versioned file
            assert source.url.startswith(("https://", "http://curtis.ml.cmu.edu/datasets/hotpot/"))
            assert "/main/" not in source.url and "/master/" not in source.url
            assert source.sha256 is None or len(source.sha256) == 64
