"""A metrics source that answers wrongly, on 127.0.0.1, in a thread (so a CLI in a subprocess and a coroutine in
the test can both ask it): a body of the wrong shape, an answer dripped a byte at a time for ever, an answer of any
size generated as it is sent (never held in memory), a redirect whose body looks like a good answer.

It keeps what it was asked (``asked``) and how many bytes it wrote (``sent``); ``asked_event`` is set at the first
request, so a test can act while the source is in the middle of an answer."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator


class HostileSource:
    def __init__(self, body: str | bytes = b"", *, status: int = 200, drip: bool = False, size: int = 0,
                 headers: dict[str, str] | None = None) -> None:
        self.body = body.encode() if isinstance(body, str) else body
        self.status = status
        self.drip = drip  # send the headers, then one byte every 20 ms, never ending
        self.size = size  # pad the body with spaces to this many bytes, generated lazily
        self.headers = headers or {}
        self.asked: list[str] = []
        self.sent = 0
        self.asked_event = threading.Event()
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> HostileSource:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _chunks(self) -> Iterator[bytes]:
        if self.drip:
            yield self.body[:1] or b" "
            while not self._stop.wait(0.02):
                yield b" "
            return
        yield self.body
        left = self.size - len(self.body)
        block = b" " * 65536
        while left > 0:
            yield block[:left]
            left -= len(block)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                rfile = conn.makefile("rb")
                request = rfile.readline().decode("latin-1")
                length = 0
                while (line := rfile.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                rfile.read(length)  # a POST's body (a webhook's message): read, so closing is not a reset
                self.asked.append(request.split(" ")[1] if " " in request else request)
                self.asked_event.set()
                length = max(self.size, len(self.body)) if not self.drip else 10**9
                head = [f"HTTP/1.1 {self.status} X", "Content-Type: application/json", f"Content-Length: {length}",
                        "Connection: close", *(f"{k}: {v}" for k, v in self.headers.items())]
                conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
                for chunk in self._chunks():
                    conn.sendall(chunk)
                    self.sent += len(chunk)
            except OSError:  # the client went away: what it did not read is never made
                return
