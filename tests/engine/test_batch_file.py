"""Reading batch files: every readable line kept, every other reported by number, never
by its content (it holds identities)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import TerminalError
from engine.batch_file import BatchLine, read_batch

SECRET = "hidden.person@example.com"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_lines_with_several_identities_and_requesters(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "b.csv",
        "kind,identity,requested_by\n"
        "erasure,email=a@example.com,desk\n"
        "\n"
        "# a comment line\n"
        "access,email=b@example.com;customer_number=C-1,\n",
    )
    batch = read_batch(path)
    assert batch.problems == []
    assert batch.lines == [
        BatchLine(2, "erasure", {"email": "a@example.com"}, "desk"),
        BatchLine(5, "access", {"email": "b@example.com", "customer_number": "C-1"}, None),
    ]


def test_json_lines_take_objects_or_text_identities(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "b.jsonl",
        '{"kind": "erasure", "identity": {"email": "a@example.com"}}\n'
        '{"kind": "erasure", "identity": "email=b@example.com", "requested-by": "desk"}\n',
    )
    batch = read_batch(path)
    assert [line.identity for line in batch.lines] == [
        {"email": "a@example.com"},
        {"email": "b@example.com"},
    ]
    assert batch.lines[1].requested_by == "desk"


def test_bad_lines_are_numbered_and_never_quoted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "b.jsonl",
        '{"kind": "erasure", "identity": {"email": "ok@example.com"}}\n'
        f'{{"kind": "erasure", "identity": "{SECRET}"}}\n'
        f'{{"identity": {{"email": "{SECRET}"}}}}\n'
        f"not json {SECRET}\n"
        f'{{"kind": "erasure", "identity": {{"email": "{SECRET}"}}, "name": "{SECRET}"}}\n'
        '["a list"]\n',
    )
    batch = read_batch(path)
    assert [line.number for line in batch.lines] == [1]
    assert [n for n, _ in batch.problems] == [2, 3, 4, 5, 6]
    text = " ".join(problem for _, problem in batch.problems)
    assert "KIND=VALUE" in text and "kind is missing" in text and "unknown field" in text
    assert SECRET not in text and "hidden" not in text


def test_csv_row_with_wrong_field_count_is_one_problem(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "b.csv",
        f"kind,identity\nerasure,email={SECRET},extra\nerasure,email=b@example.com\n",
    )
    batch = read_batch(path)
    assert batch.problems == [(2, "3 fields, the header has 2")]
    assert len(batch.lines) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kind,who\nerasure,x\n", "missing: identity"),
        ("kind,identity,colour\nerasure,email=a@example.com,red\n", "unknown CSV column"),
        ("\n# nothing\n", "holds no request"),
    ],
)
def test_unreadable_files_are_one_clear_error(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(TerminalError, match=expected):
        read_batch(write(tmp_path, "b.csv", text))


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(TerminalError, match="does not exist"):
        read_batch(tmp_path / "nope.csv")
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"\xff\xfe\x00kind")
    with pytest.raises(TerminalError, match="not UTF-8"):
        read_batch(binary)
