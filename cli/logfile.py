"""The commands' log file: tracebacks and Prefect's own logs go there, not to the terminal.

One file a day under the data folder, ``logs/lifecycle-YYYYMMDD.log`` (folder 0700, file
0600), opened on the first record. ``install`` (``cli.main``, before any command runs)
puts it on the root logger, so Prefect, when first imported, leaves the root logger alone
and adds no console handler of its own: a failing flow's "Traceback" and "Finished in state
Failed" lines land in the file. The product's own warnings (a lease being waited for, a
processor retried) still show on stderr as one line, without a traceback. ``--verbose``
(``show_prefect_logs``) echoes Prefect's records to stderr too, one line each: tracebacks
stay in the file.

Tracebacks keep the code's frames and the product's error messages, which hold no personal
data (``core.errors``); any other exception's message is withheld, as it may quote stored
values (a database driver's error quotes statement parameters).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

_QUIET = ("prefect", "uvicorn", "fastapi", "httpx", "httpcore", "alembic", "werkzeug", "docket")
"""Loggers whose records go to the file only (unless ``--verbose`` for Prefect)."""
_WITHHELD = "(message withheld: it may quote stored values)"


def log_path() -> Path:
    """Today's log file (UTC date) in the configured data folder."""
    try:
        from config.settings import get_settings

        data_dir = get_settings().data_dir
    except Exception:  # invalid settings: the folder the settings would name, if they could
        from config.settings import data_dir_from

        data_dir = data_dir_from(os.environ)
    return data_dir / "logs" / f"lifecycle-{datetime.now(UTC):%Y%m%d}.log"


def safe_traceback(error: BaseException) -> str:
    """``error``'s traceback with its causes; messages of errors not ours are withheld."""
    from core.errors import LifecycleError

    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        shown = current.message if isinstance(current, LifecycleError) else _WITHHELD
        frames = "".join(traceback.format_tb(current.__traceback__))
        name = f"{type(current).__module__}.{type(current).__qualname__}"
        parts.append(f"Traceback (most recent call last):\n{frames}{name}: {shown}\n")
        cause = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        current = cause
    return "\nwhich was raised while handling or because of:\n\n".join(reversed(parts))


class SafeFormatter(logging.Formatter):
    """The standard format, with ``safe_traceback`` for exceptions."""

    def formatException(
        self,
        ei: tuple[type[BaseException], BaseException, TracebackType | None]
        | tuple[None, None, None],
    ) -> str:
        error = ei[1]
        return "" if error is None else safe_traceback(error).rstrip("\n")


class DailyLogFile(logging.Handler):
    """Appends to today's log file, created 0600 (in a 0700 folder) on the first record."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(
            SafeFormatter("%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")
        )
        self.path: Path | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record) + "\n"
            path = log_path()
            if path != self.path:
                from core.private_files import create_private_file, private_dir

                private_dir(path.parent)
                create_private_file(path)
                self.path = path
            with path.open("a", encoding="utf-8") as f:
                f.write(text)
        except Exception:
            self.handleError(record)


class TerminalLine(logging.Handler):
    """The product's own warnings on stderr, one line each, never a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        self.addFilter(lambda r: not r.name.startswith(_QUIET))

    def emit(self, record: logging.LogRecord) -> None:
        try:  # the stderr of now (tests swap it), the message alone
            sys.stderr.write(f"{record.levelname.lower()}: {record.getMessage()}\n")
        except Exception:
            self.handleError(record)


def _file_handler() -> DailyLogFile | None:
    return next((h for h in logging.getLogger().handlers if isinstance(h, DailyLogFile)), None)


def install() -> None:
    """Send every log record to the log file, and only the product's warnings to stderr.

    Prefect's console handler, when Prefect was imported already (a process forked from
    one that had), is taken off: its records go to the file like the rest.
    """
    root = logging.getLogger()
    if _file_handler() is not None:
        return
    for handler in list(root.handlers):
        if type(handler).__name__ == "PrefectConsoleHandler":
            root.removeHandler(handler)
    root.addHandler(DailyLogFile())
    root.addHandler(TerminalLine())


def show_prefect_logs(show: bool = True) -> None:
    """``--verbose``: Prefect's records on stderr too (they still go to the file); with
    ``show`` False, on the file only again."""
    root = logging.getLogger()
    shown = [h for h in root.handlers if isinstance(h, _Verbose)]
    if show and not shown:
        root.addHandler(_Verbose())
    elif not show:
        for handler in shown:
            root.removeHandler(handler)


class _Verbose(logging.Handler):
    """The frameworks' records (``_QUIET``: Prefect and its server's) on stderr, one line
    each: a traceback stays in the log file. The product's warnings are ``TerminalLine``'s."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s - %(message)s"))
        self.addFilter(lambda r: r.name.startswith(_QUIET))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            bare = logging.makeLogRecord(
                record.__dict__ | {"exc_info": None, "exc_text": None, "stack_info": None}
            )
            traceback = " (traceback in the log file)" if record.exc_info else ""
            sys.stderr.write(self.format(bare) + traceback + "\n")
        except Exception:
            self.handleError(record)


def log_exception(error: BaseException, what: str) -> Path:
    """Write ``error``'s traceback (``safe_traceback``) to the log file; returns its path."""
    handler = _file_handler() or DailyLogFile()
    exc_info = (type(error), error, error.__traceback__)
    handler.handle(logging.LogRecord("lifecycle", logging.ERROR, "", 0, what, None, exc_info))
    return handler.path or log_path()
