"""Line tracking: every YAML path maps to its line, and pydantic locations map onto paths."""

from __future__ import annotations

from pathlib import Path

from config.problems import LineMap, Problem, allowed_keys, format_path, yaml_path
from config.schema import Inventory, Policy
from config.yaml_lines import read_yaml

SAMPLE = """\
# comment
stores:
  - name: crm
    tables:
      - name: customers
        fields: {email: [contact], name: [contact]}
  - name: files
    flag: yes
base: &base {a: 1}
merged:
  <<: *base
  b: 2
"""


def test_lines_of_keys_and_items(tmp_path: Path) -> None:
    path = tmp_path / "sample.yaml"
    path.write_text(SAMPLE, encoding="utf-8")
    doc = read_yaml(path, {})
    assert doc.parsed and doc.problems == ()
    line = doc.lines.line_of
    assert line(("stores",)) == 2
    assert line(("stores", 0)) == 3
    assert line(("stores", 0, "tables", 0, "name")) == 5
    assert line(("stores", 0, "tables", 0, "fields", "email", 0)) == 6
    assert line(("stores", 1)) == 7
    # A missing path takes the line of its nearest ancestor.
    assert line(("stores", 1, "region")) == 7
    assert line(("nothing", "here")) == 2  # the root: its first line of content
    assert doc.data["stores"][1]["flag"] == "yes"  # YAML 1.2 booleans only
    assert doc.data["merged"] == {"a": 1, "b": 2}


def test_duplicate_keys_are_problems(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("a: 1\nb:\n  c: 1\n  c: 2\n", encoding="utf-8")
    doc = read_yaml(path, {})
    assert [str(p) for p in doc.problems] == ["dup.yaml:4 b.c: duplicate key (first at line 3)"]


def test_syntax_error_has_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("a: 1\nb: [1, 2\nc: 3\n", encoding="utf-8")
    doc = read_yaml(path, {})
    assert not doc.parsed and doc.data is None
    (problem,) = doc.problems
    assert str(problem).startswith("broken.yaml:3: invalid YAML: ")


def test_unsafe_tags_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "tag.yaml"
    path.write_text("a:\n  b: !!python/object:os.system x\n", encoding="utf-8")
    doc = read_yaml(path, {})
    assert not doc.parsed
    assert str(doc.problems[0]).startswith("tag.yaml:2: invalid YAML: could not determine")


def test_interpolation_problem_points_at_the_value(tmp_path: Path) -> None:
    path = tmp_path / "env.yaml"
    path.write_text("x:\n  - url: ${NOPE}\n", encoding="utf-8")
    doc = read_yaml(path, {})
    assert [str(p) for p in doc.problems] == [
        "env.yaml:2 x[0].url: environment variable NOPE is not set"
    ]


def test_undecodable_file(tmp_path: Path) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    assert [str(p) for p in read_yaml(path, {}).problems] == ["latin.yaml:1: not valid UTF-8 text"]


def test_pydantic_loc_maps_onto_the_yaml_path() -> None:
    data = {"stores": [{"type": "sql", "name": "crm", "tables": [{"fields": {"Bad Col": []}}]}]}
    loc = ("stores", 0, "sql", "tables", 0, "fields", "Bad Col", "[key]")
    assert yaml_path(loc, data) == ("stores", 0, "tables", 0, "fields", "Bad Col")
    # A missing field keeps its name; the line comes from the parent.
    assert yaml_path(("stores", 0, "sql", "url"), data) == ("stores", 0, "url")
    assert format_path(("stores", 0, "tables", 1, "fields", "email")) == (
        "stores[0].tables[1].fields.email"
    )


def test_allowed_keys_follow_unions_and_aliases() -> None:
    assert "endpoint_url" in allowed_keys(Inventory, ("stores", 0, "s3"))
    assert "as" in allowed_keys(Inventory, ("stores", 0, "sql", "tables", 0, "derives", 0))
    assert "s3" in allowed_keys(Policy, ("retention", 0, "measured_from"))
    assert allowed_keys(Policy, ("no", "such")) == []


def test_problem_rendering_and_order() -> None:
    problems = [
        Problem("policy.yaml", 3, ("a",), "x"),
        Problem("inventory.yaml", 10, ("b", 0), "y"),
        Problem("inventory.yaml", 2, (), "z"),
    ]
    assert [str(p) for p in sorted(problems, key=Problem.sort_key)] == [
        "inventory.yaml:2: z",
        "inventory.yaml:10 b[0]: y",
        "policy.yaml:3 a: x",
    ]
    assert LineMap({}).line_of(("a",)) == 1
