"""A real S3-protocol server on loopback for the object-storage tests.

moto's standalone server (``moto.server.ThreadedMotoServer``, as in s3fs's own
test suite) serves the S3 HTTP protocol from a thread of the test process; the
subclass below wraps its WSGI app to log every request (method, bucket, key), so
tests can check which objects a command wrote, and serialises exclusive creates
(``PUT`` with ``If-None-Match: *``): S3 makes them atomic, moto's threaded server
checks and then writes, so two racing creators could both succeed there.
Credentials are dummies; nothing leaves the machine.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pytest

moto_server = pytest.importorskip("moto.moto_server.threaded_moto_server")
pytest.importorskip("s3fs")

#: Dummy credentials the in-process server accepts.
KEY, SECRET, REGION = "testing-key", "testing-secret", "us-east-1"
#: HTTP methods that change objects.
WRITE_METHODS = ("PUT", "POST", "DELETE")


@dataclass(frozen=True)
class Request:
    """One request the server received."""

    method: str
    bucket: str
    key: str
    query: str


class LoggingMotoServer(moto_server.ThreadedMotoServer):
    """``ThreadedMotoServer`` whose WSGI app records every request in :attr:`requests`."""

    def __init__(self, ip_address: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(ip_address=ip_address, port=port, verbose=False)
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._exclusive = threading.Lock()

    def _server_entry(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        class QuietHandler(MotoRequestHandler):
            def log(self, type: str, message: str, *args: Any) -> None:  # no access log on stderr
                pass

        inner = DomainDispatcherApplication(create_backend_app)

        def app(environ: dict[str, Any], start_response: Any) -> Any:
            path = unquote(environ.get("PATH_INFO", "")).lstrip("/")
            bucket, _, key = path.partition("/")
            with self._lock:
                self.requests.append(
                    Request(environ["REQUEST_METHOD"], bucket, key, environ.get("QUERY_STRING", ""))
                )
            if environ["REQUEST_METHOD"] == "PUT" and environ.get("HTTP_IF_NONE_MATCH") == "*":
                with self._exclusive:  # an exclusive create is atomic on S3; moto checks, then writes
                    return inner(environ, start_response)
            return inner(environ, start_response)

        self._server = make_server(self._ip_address, self._port, app, True, request_handler=QuietHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


@dataclass
class S3:
    """A running server: endpoint, options for fsspec and the CLI, environment, request log."""

    server: LoggingMotoServer
    endpoint: str
    buckets: list[str] = field(default_factory=list)

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options reaching this server (no listing cache: readers see fresh data)."""
        return {
            "key": KEY,
            "secret": SECRET,
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": REGION},
            "use_listings_cache": False,
        }

    @property
    def cli_options(self) -> list[str]:
        """The same as ``--storage-option`` arguments."""
        return [
            "--storage-option",
            f"client_kwargs.endpoint_url={self.endpoint}",
            "--storage-option",
            f"key={KEY}",
            "--storage-option",
            f"secret={SECRET}",
        ]

    @property
    def env(self) -> dict[str, str]:
        """Environment for a subprocess that reaches the server through AWS_* variables only."""
        env = dict(os.environ)
        env.update(
            AWS_ACCESS_KEY_ID=KEY,
            AWS_SECRET_ACCESS_KEY=SECRET,
            AWS_DEFAULT_REGION=REGION,
            AWS_ENDPOINT_URL=self.endpoint,
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )
        return env

    def new_bucket(self) -> str:
        """Create a fresh, uniquely named bucket and return its name."""
        import boto3

        name = f"sgnlake-{uuid.uuid4().hex[:12]}"
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            region_name=REGION,
        )
        client.create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def mark(self) -> int:
        """Position in the request log (pass to :meth:`writes`)."""
        return len(self.server.requests)

    def writes(self, bucket: str, since: int = 0) -> list[Request]:
        """Object-changing requests to ``bucket`` since position ``since``."""
        return [
            r
            for r in self.server.requests[since:]
            if r.bucket == bucket and r.method in WRITE_METHODS and r.key
        ]


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    """A loopback S3 server for the whole session (stopped at the end)."""
    server = LoggingMotoServer()
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3(server=server, endpoint=f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture
def bucket(s3: S3) -> str:
    """A fresh bucket on the loopback server."""
    return s3.new_bucket()
