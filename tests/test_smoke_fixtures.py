"""The database fixtures give a working, empty database on every backend."""

from sqlalchemy import inspect

from core.engines import make_engine


def test_db_url_is_empty_and_usable(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
