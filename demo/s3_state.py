"""moto's S3 state kept in a file, so a local S3 survives a stop and start.

``S3State(folder)`` restores ``folder/s3.snapshot`` into moto's in-process S3 backends
before the server serves (``restore``), counts every mutating request (``wrap``: a WSGI
middleware), and writes a new snapshot at most ``SAVE_INTERVAL_S`` after a change (a
background thread) and once more when the server stops (``close``).

Deletes are never lost: a DELETE request or a DeleteObjects call is answered only once a
snapshot holding it is on disk (deletes arriving together share one snapshot), so an
acknowledged delete survives even ``kill -9`` and erased data never comes back. Other
changes (uploads, settings) are acknowledged at once: a ``kill -9`` or a power cut loses at
most the last ``SAVE_INTERVAL_S`` plus one snapshot's write of them, about a second; a stop
with SIGTERM or SIGINT loses nothing.

The snapshot is a pickle of the backends (buckets, every version and delete marker, Object
Lock retention and legal holds, bucket policies, lifecycle rules, encryption, tags), behind a
one-line header naming the format, the moto version and the payload's SHA-256. moto's
versioned key store pickles only the latest version of each key by itself, so ``_Pickler``
writes all of them. Unpickling runs code named in the file, so a snapshot is only read when
it is ours and writable by us alone (the folder is mode 0700, the file 0600).

A snapshot that cannot be read (damaged, another moto version, not private) raises
``StateError`` with one line saying why and what to do: the caller refuses to start rather
than serve an empty S3, which would silently drop the objects a suspended erasure or the
served CRM still refer to, and would overwrite the only copy at the next save.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import moto
from moto.core.base_backend import BackendDict
from moto.s3.models import s3_backends
from moto.s3.utils import _VersionedKeyStore

from core.private_files import FILE_MODE, private_dir, tighten_dir

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

SNAPSHOT = "s3.snapshot"
FORMAT = 1
MAGIC = "lifecycle-local-s3-state"
SAVE_INTERVAL_S = 0.5  # how often the saver looks for changes: bounds what kill -9 loses
DURABLE_TIMEOUT_S = 30.0  # how long a delete's answer waits for its snapshot at most
MUTATING = frozenset({"PUT", "POST", "DELETE", "PATCH"})


class StateError(Exception):
    """A saved state that cannot be restored; the message is one line for the operator."""


def _versioned_store(lists: list[tuple[str, list[Any]]]) -> _VersionedKeyStore:
    """Rebuild a key store with every version of every key (see ``_Pickler``)."""
    store = _VersionedKeyStore()
    for key, versions in lists:
        store.setlist(key, versions)
    return store


class _Pickler(pickle.Pickler):
    """Pickles moto's ``_VersionedKeyStore`` whole: plain pickling keeps the latest versions
    only (the store's ``items()`` yields one value per key), losing older versions."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is _VersionedKeyStore:
            return _versioned_store, ([(k, list(v)) for k, v in obj.lists()],)
        return NotImplemented


class _Gate:
    """Requests share it; a snapshot takes it alone, so it never sees a half-made change.

    A waiting snapshot holds new requests back, so a busy server cannot starve it.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._exclusive = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive)
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive)
            self._exclusive = True
            self._cond.wait_for(lambda: self._active == 0)
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class S3State:
    """Restore, track and save moto's S3 state in ``folder`` (see the module doc)."""

    def __init__(self, folder: Path, *, say: Callable[[str], None] = print) -> None:
        self.folder = folder
        self.path = folder / SNAPSHOT
        self._say = say
        self._gate = _Gate()
        self._cond = threading.Condition()
        self._changes = 0  # mutating requests answered so far
        self._saved = 0  # how many of them the last snapshot holds
        self._urgent = False  # a delete waits for a snapshot
        self._stop = False
        self._failing = False  # the last save failed (said once)
        self._save_lock = threading.Lock()  # the saver thread and close() write one at a time
        self._thread: threading.Thread | None = None

    # -- restore -------------------------------------------------------------------------------

    def restore(self) -> str:
        """Replace moto's S3 state with the snapshot (or empty it when there is none): what
        was restored, in words. StateError when the snapshot cannot be read."""
        private_dir(self.folder)
        tighten_dir(self.folder)
        payload = self._load() if self.path.exists() else None
        BackendDict.reset()  # what /moto-api/reset does for S3: this state replaces all
        s3_backends.bucket_accounts.clear()
        if payload is None:
            return f"no saved state in {self.folder}: starting empty"
        for account, partitions in payload["accounts"].items():
            backends = s3_backends[account]  # created and registered as moto does
            for partition, backend in partitions.items():
                dict.__setitem__(backends, partition, backend)  # no lookup-time creation
        s3_backends.bucket_accounts.update(payload["bucket_accounts"])
        buckets, versions = _counts(payload["accounts"])
        return (
            f"restored {buckets} buckets ({versions} versions and delete markers) from {self.path}"
        )

    def _load(self) -> dict[str, Any]:
        def refuse(why: str) -> StateError:
            return StateError(
                f"cannot restore the local S3's saved state {self.path}: {why}; refusing to "
                f"start rather than serve it empty (to start empty, remove {self.folder})"
            )

        try:
            info = self.path.stat()
            if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise refuse("it is not private to this user (it is only read when it is)")
            with self.path.open("rb") as f:
                header, body = f.readline(), f.read()
        except OSError as e:
            raise refuse(f"unreadable ({type(e).__name__})") from None
        fields = header.decode("ascii", errors="replace").split()
        if len(fields) != 4 or fields[0] != MAGIC:
            raise refuse("not a snapshot, or damaged (no header)")
        if fields[1] != f"format={FORMAT}" or fields[2] != f"moto={moto.__version__}":
            raise refuse(
                f"written by another version ({fields[1]} {fields[2]}; this is "
                f"format={FORMAT} moto={moto.__version__})"
            )
        if fields[3] != f"sha256={hashlib.sha256(body).hexdigest()}":
            raise refuse("damaged (checksum mismatch)")
        try:
            payload = pickle.loads(body)
            if (
                not isinstance(payload, dict)
                or not {"accounts", "bucket_accounts"} <= payload.keys()
            ):
                raise ValueError("unexpected content")
        except Exception as e:  # unpickling raises almost anything on a foreign file
            raise refuse(f"damaged ({type(e).__name__})") from None
        return payload

    # -- track and save ------------------------------------------------------------------------

    def wrap(self, app: WSGIApplication) -> WSGIApplication:
        """``app`` with every request inside the gate, mutating ones counted as changes, and
        deleting ones answered only once a snapshot holds them (see the module doc)."""

        def tracked(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            change = 0
            with self._gate.shared():  # moto changes its state inside app(), not while streaming
                result = app(environ, start_response)
                if environ.get("REQUEST_METHOD", "GET") in MUTATING:
                    change = self._changed(urgent=_deletes(environ))
            if change and _deletes(environ):  # outside the gate: the snapshot needs it alone
                self._wait_saved(change)
            return result

        return tracked

    def _changed(self, *, urgent: bool) -> int:
        with self._cond:
            self._changes += 1
            self._urgent = self._urgent or urgent
            self._cond.notify_all()
            return self._changes

    def _wait_saved(self, change: int) -> None:
        with self._cond:  # a failed save is said in the log; the answer is not held forever
            self._cond.wait_for(lambda: self._saved >= change, timeout=DURABLE_TIMEOUT_S)

    def start_saving(self) -> None:
        """Save in the background shortly after changes, until ``close``."""
        self._thread = threading.Thread(target=self._run, name="s3-state-saver", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:  # a delete waiting for its snapshot wakes the saver at once
                self._cond.wait_for(lambda: self._stop or self._urgent, timeout=SAVE_INTERVAL_S)
                if self._stop:
                    return
                pending = self._changes > self._saved
            if pending:
                self.save()

    def save(self) -> bool:
        """Write a snapshot now, atomically; False when it failed (said once, in one line)."""
        with self._save_lock:
            try:
                with self._gate.exclusive():
                    with self._cond:
                        covered, self._urgent = self._changes, False
                    body = _dumps()
                _write_atomically(self.path, _header(body) + body)
            except Exception as e:  # a failed save must not kill the server: retried
                if not self._failing:  # said once, not at every retry
                    self._say(f"local S3: could not save its state to {self.path}: {e!r}")
                self._failing = True
                return False
            if self._failing:
                self._say(f"local S3: its state is saved again to {self.path}")
                self._failing = False
            with self._cond:
                self._saved = max(self._saved, covered)
                self._cond.notify_all()
            return True

    def close(self) -> None:
        """Stop the saver and save what changed since its last snapshot."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._changes > self._saved:
            self.save()


def _deletes(environ: WSGIEnvironment) -> bool:
    """DELETE requests and DeleteObjects (``POST ?delete``): never to be undone by a crash."""
    method = environ.get("REQUEST_METHOD", "GET")
    query = str(environ.get("QUERY_STRING", "")).split("&")
    return method == "DELETE" or (
        method == "POST" and any(q.split("=")[0] == "delete" for q in query)
    )


def _dumps() -> bytes:
    accounts = {account: dict(backends) for account, backends in s3_backends.items()}
    payload = {"accounts": accounts, "bucket_accounts": dict(s3_backends.bucket_accounts)}
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(payload)
    return buffer.getvalue()


def _header(body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return f"{MAGIC} format={FORMAT} moto={moto.__version__} sha256={digest}\n".encode("ascii")


def _counts(accounts: dict[str, dict[str, Any]]) -> tuple[int, int]:
    """Buckets, and object versions plus delete markers, in restored backends."""
    buckets = versions = 0
    for partitions in accounts.values():
        for backend in partitions.values():
            for bucket in backend.buckets.values():
                buckets += 1
                versions += sum(len(v) for _, v in bucket.keys.lists())
    return buckets, versions


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (mode 0600): temp file, fsync, rename, fsync the folder."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a crash
    finally:
        os.close(folder)
