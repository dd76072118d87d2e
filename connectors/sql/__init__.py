"""The SQL connector: schema reflection, subject location, export, erasure and doctor.

``SqlConnector`` is the entry point flows use (through ``connectors.registry``); the
modules behind it are usable on their own with an engine and a reflected ``StoreSchema``.
"""

from connectors.sql.connector import SqlConnector
from connectors.sql.doctor import IndexAdvice, StoreCheck, check_store, missing_indexes
from connectors.sql.edges import Edge
from connectors.sql.export import export_rows
from connectors.sql.locate import locate
from connectors.sql.schema import StoreSchema, reflect_store

__all__ = [
    "Edge",
    "IndexAdvice",
    "SqlConnector",
    "StoreCheck",
    "StoreSchema",
    "check_store",
    "export_rows",
    "locate",
    "missing_indexes",
    "reflect_store",
]
