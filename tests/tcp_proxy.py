"""A tiny HTTP-aware TCP proxy on loopback whose link to the server can be cut at an exact request.

Used to make an object store "go away" at a chosen moment of a real process's
work: the process talks to the proxy (its endpoint URL), the proxy forwards
every request to the real server (moto) byte for byte, and logs the request
line of each. :meth:`CuttableProxy.cut_after` arms a trigger: once a request
matching it has been forwarded, the next request (on any connection) is not
forwarded; from then on the listener is closed (new connections are refused)
and every request on an open keep-alive connection closes that connection.
Responses to requests already forwarded still reach the client, so "the run's
first object was written and acknowledged, then the store went away" is exact.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Seen:
    """A request the proxy received: method, target (path and query), whether it was forwarded."""

    method: str
    target: str
    forwarded: bool


class CuttableProxy:
    """Forward TCP connections from ``127.0.0.1:<port>`` to ``upstream``; cut at a chosen request."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._trigger: Callable[[str, str], bool] | None = None
        self._armed = False
        self.down = threading.Event()
        self._socks: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._accept = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept.start()

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``: give this to the client as its endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    def cut_after(self, trigger: Callable[[str, str], bool]) -> None:
        """Cut the link just after the first forwarded request with ``trigger(method, target)`` true."""
        with self._lock:
            self._trigger = trigger

    def cut(self) -> None:
        """Cut now: refuse new connections, close each open one at its next request."""
        with self._lock:
            self._go_down()

    def close(self) -> None:
        """Stop the proxy and close every socket."""
        with self._lock:
            self._go_down()
            for s in self._socks:
                _close(s)

    def _go_down(self) -> None:
        if not self.down.is_set():
            self.down.set()
            _close(self._listener)

    # ------------------------------------------------------------------ plumbing

    def _accept_loop(self) -> None:
        while not self.down.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down.is_set():
                _close(client)
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._socks += [client, server]
            threading.Thread(target=self._requests, args=(client, server), daemon=True).start()
            threading.Thread(target=_pump, args=(server, client), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket) -> None:
        """Forward the client's requests one by one (HTTP/1.1 framing), deciding at each whether to cut."""
        rfile = client.makefile("rb")
        try:
            while True:
                head = _read_head(rfile)
                if head is None:
                    return
                method, target = head[0].split(b" ")[:2]
                m, t = method.decode(), target.decode()
                with self._lock:
                    if self._armed:
                        self._go_down()
                    go = not self.down.is_set()
                    self.seen.append(Seen(m, t, go))
                    if go and self._trigger is not None and self._trigger(m, t):
                        self._armed, self._trigger = True, None
                if not go:
                    return
                server.sendall(b"".join(head[1]))
                _forward_body(rfile, server, head[2])
        except OSError:
            return
        finally:
            _close(client)
            _close(server)


def _read_head(rfile) -> tuple[bytes, list[bytes], dict[bytes, bytes]] | None:
    """Request line, raw header lines and lower-cased headers of the next request (None at EOF)."""
    raw: list[bytes] = []
    while True:
        line = rfile.readline(65537)
        if not line:
            return None
        if raw or line.strip():
            raw.append(line)
        if raw and line in (b"\r\n", b"\n"):
            break
    headers = {}
    for h in raw[1:-1]:
        k, _, v = h.partition(b":")
        headers[k.strip().lower()] = v.strip()
    return raw[0].rstrip(b"\r\n"), raw, headers


def _forward_body(rfile, server: socket.socket, headers: dict[bytes, bytes]) -> None:
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        while True:
            size_line = rfile.readline(65537)
            server.sendall(size_line)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    line = rfile.readline(65537)
                    server.sendall(line)
                    if line in (b"\r\n", b"\n", b""):
                        return
            server.sendall(_read_exactly(rfile, size + 2))
    n = int(headers.get(b"content-length", b"0") or 0)
    if n:
        server.sendall(_read_exactly(rfile, n))


def _read_exactly(rfile, n: int) -> bytes:
    data = rfile.read(n)
    if data is None or len(data) < n:
        raise OSError("client closed mid-request")
    return data


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        _close(src)
        _close(dst)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()
