"""Whether a SQLAlchemy URL makes its driver refuse a connection without TLS (pure).

The rules of the driver that will use the URL: the product ships psycopg 3 (libpq) and
PyMySQL, whose URL options differ from mysqlclient's and MariaDB Connector/Python's. Used
by the config check (``require_tls``) and the posture check (``connectors.sql.posture``).
The evidence names options only, never the URL, which may carry a password.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.engines import normalize_url

Tls = tuple[bool | None, str]
_LIBPQ_DRIVERS = frozenset({"psycopg", "psycopg2", "psycopg2cffi"})
_PG_REQUIRED = ("require", "verify-ca", "verify-full")
_PG_OPTIONAL = ("disable", "allow", "prefer")
_MYSQL_MODES = {
    "REQUIRED": True,
    "VERIFY_CA": True,
    "VERIFY_IDENTITY": True,
    "DISABLED": False,
    "PREFERRED": False,
}
# SQLAlchemy's MySQL dialects gather these URL options into the driver's ``ssl`` dict;
# PyMySQL requires TLS whenever that dict is non-empty (whatever the values).
_SSL_DICT_KEYS = ("ssl_ca", "ssl_cert", "ssl_key", "ssl_capath", "ssl_cipher")
_PYMYSQL_DICT_KEYS = (*_SSL_DICT_KEYS, "ssl_check_hostname")
_PYMYSQL_FLAGS = ("ssl_verify_cert", "ssl_verify_identity")  # passed through as strings
_MARIADB_KEYS = ("ssl", "ssl_ca", "ssl_cert", "ssl_key", "ssl_capath", "ssl_verify_cert")
_FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})


def _opt(query: Mapping[str, str | tuple[str, ...]], key: str) -> str | None:
    # A repeated option reaches the driver as a tuple: libpq rejects it as a value (so
    # does the joined text below), PyMySQL takes it as true, like any non-empty value.
    value = query.get(key)
    return ",".join(value) if isinstance(value, tuple) else value


def _libpq_tls(query: Mapping[str, str | tuple[str, ...]], host: str | None) -> Tls:
    socket_hosts = (_opt(query, "host") or "").split(",")
    if host is None and all(h.startswith("/") for h in socket_hosts):
        return None, "Unix-domain socket (libpq ignores sslmode there)"
    mode = _opt(query, "sslmode")
    if mode is None:
        if _opt(query, "sslrootcert") == "system":
            return True, "sslrootcert=system (libpq then defaults to sslmode=verify-full)"
        return False, "no sslmode in the URL (libpq falls back to PGSSLMODE, else prefer)"
    if mode in _PG_REQUIRED or mode in _PG_OPTIONAL:
        return mode in _PG_REQUIRED, f"sslmode={mode}"
    return False, "sslmode has a value libpq rejects (connecting fails)"


def _pymysql_tls(query: Mapping[str, str | tuple[str, ...]]) -> Tls:
    if "ssl_mode" in query:
        return False, "ssl_mode is not a PyMySQL option (connecting fails); set ssl_ca"
    if _opt(query, "ssl_disabled"):
        return False, "ssl_disabled is set (PyMySQL turns TLS off for any value, even 'false')"
    named = [k for k in _PYMYSQL_DICT_KEYS if k in query]
    named += [k for k in _PYMYSQL_FLAGS if _opt(query, k)]
    if named:
        return True, f"{', '.join(named)} in the URL (PyMySQL then requires TLS)"
    if "ssl" in query:
        return False, "ssl in the URL is not usable by PyMySQL (connecting fails); set ssl_ca"
    return False, "no ssl_* option in the URL (PyMySQL tries TLS, falls back to plain)"


def _other_mysql_tls(driver: str, query: Mapping[str, str | tuple[str, ...]]) -> Tls:
    mode = (_opt(query, "ssl_mode") or "").upper()
    if driver == "mysqldb" and mode in _MYSQL_MODES:
        return _MYSQL_MODES[mode], f"ssl_mode={mode}"
    keys = _SSL_DICT_KEYS if driver == "mysqldb" else _MARIADB_KEYS
    named = [k for k in keys if (_opt(query, k) or "").lower() not in _FALSE_WORDS]
    if named:
        return True, f"{', '.join(named)} in the URL ({driver} then requires TLS)"
    return False, f"no TLS option of the {driver} driver in the URL"


def _mysql_tls(driver: str, query: Mapping[str, str | tuple[str, ...]]) -> Tls:
    if _opt(query, "unix_socket"):
        return None, "Unix-domain socket"
    if driver == "pymysql":
        return _pymysql_tls(query)
    if driver in ("mysqldb", "mariadbconnector"):
        return _other_mysql_tls(driver, query)
    return False, f"driver {driver}: its TLS options are not recognised"


def tls_requirement(url: str) -> Tls:
    """Whether the URL makes the driver refuse a connection without TLS, and the option why.

    None for SQLite and Unix-domain sockets (nothing crosses a network).
    """
    parsed = normalize_url(url)
    backend, driver, query = parsed.get_backend_name(), parsed.get_driver_name(), parsed.query
    if backend == "sqlite":
        return None, "local file"
    if backend in ("mysql", "mariadb"):
        return _mysql_tls(driver, query)
    if backend == "postgresql" and driver in _LIBPQ_DRIVERS:
        return _libpq_tls(query, parsed.host)
    return False, f"{backend}+{driver}: its TLS options are not recognised"
