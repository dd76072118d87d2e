"""Identity matching on every backend: case-insensitive for non-ASCII letters too, never
accent-insensitive, exact where the column is case-sensitive, and never on a mask token.

SQLite's lower() folds ASCII only; PostgreSQL's follows LC_CTYPE; MariaDB's default
collations ignore case and accents. The same searches must find the same rows on all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from connectors.base import Findings
from connectors.sql.casefold import case_variants
from connectors.sql.config import SqlStore
from connectors.sql.locate import locate
from connectors.sql.schema import reflect_store
from core.engines import make_engine
from core.errors import TerminalError
from core.identity_values import MAX_CASED_LETTERS

ROWS = [
    {"id": 1, "email": "jürgen@example.com", "code": "K-100"},
    {"id": 2, "email": "jurgen@example.com", "code": "k-100"},  # another person
    {"id": 3, "email": "ZOË.ÄRGER@EXAMPLE.COM", "code": "Ä-7"},  # stored upper case
    {"id": 4, "email": "0123456789abcdef" * 4, "code": "psn_" + "0123456789abcdef" * 2},
    {"id": 5, "email": "[redacted]", "code": "[redacted]"},
]
# MariaDB: the server default (utf8mb4_general_ci here) and two more accent-insensitive
# _ci collations, among them MariaDB 11's default family. PostgreSQL: the database's
# LC_CTYPE and the C collation, under which lower() folds ASCII only.
MYSQL_COLLATIONS = [None, "utf8mb4_unicode_ci", "utf8mb4_uca1400_ai_ci"]


def _store(url: str, table: str) -> SqlStore:
    return SqlStore.model_validate(
        {
            "type": "sql",
            "name": "crm",
            "url": url,
            "region": "eu-central-1",
            "tables": [
                {
                    "name": table,
                    "identity": [
                        {"column": "email", "kind": "email", "case_insensitive": True},
                        {"column": "code", "kind": "customer_number"},
                    ],
                    "fields": {"email": ["contact"]},
                }
            ],
        }
    )


def _create(engine: Engine, name: str, collation: str | None) -> None:
    md = sa.MetaData()
    sa.Table(
        name,
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.String(120, collation=collation), nullable=False, index=True),
        sa.Column("code", sa.String(40, collation=collation), nullable=False, index=True),
    )
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(md.tables[name].insert(), ROWS)


def _mysql_knows(engine: Engine, collation: str) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f"SELECT 'a' COLLATE {collation}"))
    except sa.exc.DBAPIError:
        return False
    return True


@pytest.fixture
def stores(db_url: str) -> Iterator[tuple[Engine, list[SqlStore]]]:
    """One table per collation to test (only the server default outside MariaDB)."""
    engine = make_engine(db_url)
    collations: list[str | None] = [None]
    if engine.dialect.name in ("mysql", "mariadb"):
        collations = [c for c in MYSQL_COLLATIONS if c is None or _mysql_knows(engine, c)]
    elif engine.dialect.name == "postgresql":
        collations = [None, "C"]  # the database's LC_CTYPE, and one that folds ASCII only
    names = [f"people_{n}" for n in range(len(collations))]
    for name, collation in zip(names, collations, strict=True):
        _create(engine, name, collation)
    try:
        yield engine, [_store(db_url, name) for name in names]
    finally:
        engine.dispose()


def _ids(engine: Engine, store: SqlStore, kind: str, value: str) -> set[Any]:
    findings: Findings = locate(
        engine, reflect_store(engine, store), store, {kind: frozenset({value})}
    )
    return {key[0] for target in findings.targets for key in target.keys}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("jürgen@example.com", {1}),
        ("JÜRGEN@EXAMPLE.COM", {1}),
        ("Jürgen@Example.com", {1}),
        ("jÜrgen@example.COM", {1}),
        ("jurgen@example.com", {2}),  # no accent: the other person only
        ("JURGEN@EXAMPLE.COM", {2}),
        ("zoë.ärger@example.com", {3}),  # stored in upper case, searched in lower
        ("Zoë.Ärger@Example.com", {3}),
        ("zoe.arger@example.com", set()),
    ],
)
def test_case_insensitive_column_folds_non_ascii_but_keeps_accents(
    stores: tuple[Engine, list[SqlStore]], value: str, expected: set[int]
) -> None:
    engine, declared = stores
    for store in declared:
        assert _ids(engine, store, "email", value) == expected, store.tables[0].name


@pytest.mark.parametrize(
    ("value", "expected"),
    [("K-100", {1}), ("k-100", {2}), ("Ä-7", {3}), ("ä-7", set()), ("A-7", set())],
)
def test_case_sensitive_column_matches_exactly(
    stores: tuple[Engine, list[SqlStore]], value: str, expected: set[int]
) -> None:
    engine, declared = stores
    for store in declared:
        assert _ids(engine, store, "customer_number", value) == expected, store.tables[0].name


@pytest.mark.parametrize(
    "token",
    [
        "0123456789abcdef" * 4,
        "0123456789ABCDEF" * 4,
        "psn_" + "0123456789abcdef" * 2,
        "PSN_" + "0123456789ABCDEF" * 2,
        "[redacted]",
        "[Redacted]",
    ],
)
def test_mask_tokens_never_match(stores: tuple[Engine, list[SqlStore]], token: str) -> None:
    # Rows 4 and 5 hold what an erasure writes; intake refuses such values, and locate
    # does not search for them either (derived identities come from stored rows).
    engine, declared = stores
    for store in declared:
        assert _ids(engine, store, "email", token) == set()
        assert _ids(engine, store, "customer_number", token) == set()


def test_case_insensitive_seed_keeps_the_indexable_form(
    stores: tuple[Engine, list[SqlStore]],
) -> None:
    engine, declared = stores
    store = declared[0]
    table = store.tables[0].name
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement.lower())

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        _ids(engine, store, "email", "JÜRGEN@EXAMPLE.COM")
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    seed = next(s for s in statements if f"from {table}" in s and "email" in s)
    if engine.dialect.name in ("mysql", "mariadb"):
        # The plain IN uses the column's index; the binary-collated lower() keeps accents.
        assert f"{table}.email in (" in seed and "collate utf8mb4_bin" in seed
    else:
        # lower(column) IN (...): an expression index on lower(email) serves it.
        assert f"lower({table}.email) in (" in seed


def test_case_variants() -> None:
    assert case_variants("email", "JÜRGEN@EXAMPLE.COM") == [
        "jÜrgen@example.com",
        "jürgen@example.com",
    ]
    assert case_variants("email", "straße@example.com") == ["straße@example.com"]  # no 1:1 upper
    assert len(case_variants("email", "äöü@example.com")) == 8


def test_too_many_non_ascii_letters_are_refused_without_the_value() -> None:
    value = "ä" * (MAX_CASED_LETTERS + 1) + "@example.com"
    with pytest.raises(TerminalError) as caught:
        case_variants("email", value)
    assert "identity 'email'" in str(caught.value) and "ä" not in str(caught.value)
    assert len(case_variants("email", "ä" * MAX_CASED_LETTERS + "@example.com")) == 256
