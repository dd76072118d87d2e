"""A local S3 endpoint for the demo, tests and benchmarks: moto's server, in-process, over HTTP.

``LocalS3`` runs ``moto.server.ThreadedMotoServer`` on 127.0.0.1 (a free port by default),
waits until it answers HTTP, and stops it cleanly (the listening socket is closed, the
server thread joined), so pytest's warnings-as-errors sees no unclosed socket or thread.

Credentials are dummies and stay scoped: ``env()`` returns the variables a client or the
``lifecycle`` command needs (including ``LIFECYCLE_S3_ENDPOINT``, which the demo inventory
reads); ``applied_env()`` sets them for a ``with`` block and restores what was there. ``client()``
passes them explicitly and never reads the process environment.

moto keeps its state in module-level backends shared by everything in the process: two
``LocalS3`` instances (or ``LocalS3`` and ``mock_aws``) in one process see the same buckets.
``LocalS3(fresh=True)`` (the default) therefore resets moto when it starts, which is what makes
"a fresh server per demo run" hold in-process: Object Lock's COMPLIANCE retention otherwise
makes a locked object undeletable until its date, on moto as on AWS.

``LocalS3(tls_dir=folder)`` speaks HTTPS instead, with a local CA and certificate in
``folder`` (``demo.local_tls``: kept from an earlier start while valid; clients trust
``ca.pem``: ``env()`` sets ``AWS_CA_BUNDLE``, ``client()`` passes it), and judges
``aws:SecureTransport`` in bucket policies per request as AWS does (``demo.s3_transport``):
a TLS-only bucket policy then refuses plain-HTTP requests only, instead of every object call
as moto alone does.

``LocalS3(state_dir=folder)`` keeps moto's S3 state in ``folder`` (``demo.s3_state``):
restored before serving (instead of ``fresh``'s reset), saved shortly after every change and
when stopped; ``start`` raises ``StateError`` when the saved state cannot be read.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from demo.local_tls import TlsFiles, tls_files
from demo.s3_state import S3State

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication
    from mypy_boto3_s3 import S3Client

HOST = "127.0.0.1"
DEFAULT_REGION = "eu-central-1"
DUMMY_ACCESS_KEY = "demo-access-key"  # moto accepts any credentials; these are not secrets
DUMMY_SECRET_KEY = "demo-secret-key"  # a placeholder the local server ignores
START_TIMEOUT_S = 10.0


class _MotoServer(ThreadedMotoServer):
    """moto's threaded server, its socket wrapped in TLS (with ``context``) and its WSGI app
    in ``wrap`` (when given)."""

    def __init__(
        self,
        ip_address: str,
        port: int,
        context: ssl.SSLContext | None,
        wrap: Callable[[WSGIApplication], WSGIApplication] | None = None,
    ) -> None:
        super().__init__(ip_address=ip_address, port=port, verbose=False)
        self._context = context
        self._wrap = wrap

    def _server_entry(self) -> None:  # ThreadedMotoServer's, plus ssl_context and wrap
        app: WSGIApplication = DomainDispatcherApplication(create_backend_app)
        if self._wrap is not None:
            app = self._wrap(app)
        self._server = make_server(
            self._ip_address,
            self._port,
            app,
            True,
            request_handler=MotoRequestHandler,
            ssl_context=self._context,
        )
        self._server_ready_event.set()
        self._server.serve_forever()


class LocalS3:
    """A moto S3 server on 127.0.0.1 for the lifetime of a ``with`` block (or start/stop)."""

    def __init__(
        self,
        port: int = 0,
        *,
        region: str = DEFAULT_REGION,
        fresh: bool = True,
        quiet: bool = True,
        tls_dir: Path | None = None,
        state_dir: Path | None = None,
    ) -> None:
        """``port=0`` picks a free port; ``fresh`` resets moto's in-process state on start;
        ``quiet`` keeps werkzeug's per-request access log off stderr while running;
        ``tls_dir`` serves HTTPS with a certificate kept there; ``state_dir`` keeps the state
        there (see the module doc)."""
        self.region = region
        self._port = port
        self._fresh = fresh
        self._quiet = quiet
        self._tls_dir = tls_dir
        self._state_dir = state_dir
        self._tls: TlsFiles | None = None
        self._state: S3State | None = None
        self.restored = ""  # with state_dir: what start restored, in words
        self._transport: AbstractContextManager[None] | None = None
        self._server: ThreadedMotoServer | None = None
        self._endpoint: str | None = None
        self._saved_log_level: int | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> LocalS3:
        """Start the server and wait until it answers HTTP(S); returns ``self``."""
        if self._server is not None:
            raise RuntimeError("LocalS3 is already running")
        wrap = None
        if self._state_dir is not None:  # restored before the first request can arrive
            state = S3State(self._state_dir)
            self.restored = state.restore()  # StateError: nothing started yet
            self._state, wrap = state, state.wrap
        if self._quiet:
            werkzeug_log = logging.getLogger("werkzeug")
            self._saved_log_level = werkzeug_log.level
            werkzeug_log.setLevel(logging.WARNING)
        if self._tls_dir is not None:
            self._tls = tls_files(self._tls_dir)
        context = self._tls.server_context() if self._tls is not None else None
        server = _MotoServer(HOST, self._port, context, wrap)
        server.start()
        self._server = server
        host, port = server.get_host_and_port()
        self._endpoint = f"{'https' if self._tls else 'http'}://{host}:{port}"
        try:
            if self._tls is not None:
                from demo.s3_transport import transport_aware_policies

                self._transport = transport_aware_policies()
                self._transport.__enter__()
            self._wait_until_answering()
            if self._state is not None:
                self._state.start_saving()
            elif self._fresh:
                self.reset()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and join the server thread (idempotent)."""
        server, self._server = self._server, None
        self._endpoint = None
        if server is not None:
            server.stop()  # shutdown() + join; it leaves the listening socket open
            # ThreadedMotoServer exposes no close: without server_close() the socket is only
            # closed by the garbage collector, with a ResourceWarning (an error under pytest).
            wsgi_server: Any = getattr(server, "_server", None)
            if wsgi_server is not None:
                wsgi_server.server_close()
        state, self._state = self._state, None
        if state is not None:  # after the server: no request can change it any more
            state.close()
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.__exit__(None, None, None)
        self._tls = None
        if self._saved_log_level is not None:
            logging.getLogger("werkzeug").setLevel(self._saved_log_level)
            self._saved_log_level = None

    def __enter__(self) -> LocalS3:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def tls(self) -> TlsFiles | None:
        """The CA and certificate files while serving HTTPS; None over plain HTTP."""
        return self._tls

    def _urlopen(self, request: urllib.request.Request | str, timeout: float) -> Any:
        """``urlopen`` trusting this server's CA when it speaks TLS."""
        context = self._tls.client_context() if self._tls else None
        return urllib.request.urlopen(request, timeout=timeout, context=context)

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``; RuntimeError when the server is not running."""
        if self._endpoint is None:
            raise RuntimeError("LocalS3 is not running: use it as a context manager or start()")
        return self._endpoint

    def reset(self) -> None:
        """Drop every bucket and object in moto's in-process state (locked objects too)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with self._urlopen(request, START_TIMEOUT_S) as response:
            response.read()

    def _wait_until_answering(self) -> None:
        """Poll the endpoint until an HTTP response (any status) comes back."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with self._urlopen(f"{self.endpoint_url}/", 1.0) as response:
                    response.read()
                return
            except urllib.error.HTTPError as e:  # an HTTP error status still means "answering"
                e.close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"local S3 at {self.endpoint_url} did not answer "
                        f"within {START_TIMEOUT_S:.0f} s"
                    ) from None
                time.sleep(0.05)

    # -- clients and environment -------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Variables a client or the ``lifecycle`` command needs to use this server.

        Returned, not applied: the caller decides where they go (a subprocess ``env=``,
        ``monkeypatch.setenv``, or ``applied_env()``).
        """
        values = {
            "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_KEY,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "LIFECYCLE_S3_ENDPOINT": self.endpoint_url,
        }
        if self._tls is not None:
            values["AWS_CA_BUNDLE"] = str(self._tls.ca)
        return values

    @contextmanager
    def applied_env(self) -> Iterator[dict[str, str]]:
        """Set ``env()`` in ``os.environ`` for a ``with`` block, then restore what was there."""
        with applied(self.env()) as values:
            yield values

    def client(self, region: str | None = None, *, max_pool_connections: int = 10) -> S3Client:
        """A boto3 S3 client for this server (explicit dummy credentials, path-style URLs).

        Raise ``max_pool_connections`` to at least the number of threads sharing the client.
        """
        return s3_client(
            self.endpoint_url,
            region=region or self.region,
            ca=str(self._tls.ca) if self._tls else None,
            max_pool_connections=max_pool_connections,
        )


def s3_client(
    endpoint: str, *, region: str, ca: str | None = None, max_pool_connections: int = 10
) -> S3Client:
    """A boto3 S3 client for a local S3 at ``endpoint`` (dummy credentials, path-style URLs,
    the server's CA ``ca`` when it speaks TLS)."""
    session = boto3.session.Session(
        aws_access_key_id=DUMMY_ACCESS_KEY,
        aws_secret_access_key=DUMMY_SECRET_KEY,
        region_name=region,
    )
    return session.client(
        "s3",
        endpoint_url=endpoint,
        verify=ca,
        config=Config(
            s3={"addressing_style": "path"},
            max_pool_connections=max_pool_connections,
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )


@contextmanager
def applied(values: Mapping[str, str]) -> Iterator[dict[str, str]]:
    """Set ``values`` in ``os.environ`` for a ``with`` block; restore (or remove) them after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield dict(values)
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


@contextmanager
def local_s3(
    region: str = DEFAULT_REGION, *, fresh: bool = True, tls_dir: Path | None = None
) -> Iterator[LocalS3]:
    """``with local_s3() as s3:`` a started ``LocalS3`` on a free port, stopped afterwards."""
    with LocalS3(region=region, fresh=fresh, tls_dir=tls_dir) as server:
        yield server
