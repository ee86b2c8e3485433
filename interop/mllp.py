"""MLLP (Minimal Lower Layer Protocol): HL7 v2 messages framed as ``<VT> message <FS><CR>`` over TCP.

``send`` is the client (one message, wait for the acknowledgement frame); ``MllpServer`` is a threaded server
that keeps each connection open for any number of messages (many HL7 gateways send on one long connection) and
answers every frame with what its handler returns.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from collections.abc import Callable

START, END = b"\x0b", b"\x1c\r"
MAX_FRAME = 1024 * 1024  # a PCD-01 message is a few KiB; more is not HL7 from a monitor

log = logging.getLogger("interop.mllp")


class MllpError(OSError):
    """The peer could not be reached, closed early, or answered with something that is not an MLLP frame."""


def parse_hostport(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """Return (host, port) from ``HOST:PORT`` (or ``:PORT``; port 0: any free port), raising ValueError otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]") or default_host, int(port)


def frame(message: str) -> bytes:
    """Return a message as one MLLP frame (UTF-8)."""
    return START + message.encode("utf-8") + END


def read_frame(sock: socket.socket, buffer: bytearray) -> str | None:
    """Read one frame from ``sock`` (``buffer`` keeps bytes past it); None when the peer closed cleanly first."""
    while True:
        end = buffer.find(END)
        if end >= 0:
            start = buffer.find(START)
            if start < 0 or start > end:
                del buffer[: end + len(END)]
                raise MllpError("frame without a start byte (0x0b)")
            text = bytes(buffer[start + 1 : end]).decode("utf-8", errors="replace")
            del buffer[: end + len(END)]
            return text
        if len(buffer) > MAX_FRAME:
            raise MllpError(f"frame longer than {MAX_FRAME} bytes")
        chunk = sock.recv(65536)
        if not chunk:
            if buffer.strip():
                raise MllpError("connection closed inside a frame")
            return None
        buffer += chunk


def send(host: str, port: int, message: str, timeout_s: float = 10.0) -> str:
    """Send one message and return the acknowledgement's text; raise MllpError (an OSError) when that fails."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(frame(message))
            reply = read_frame(sock, bytearray())
    except MllpError:
        raise
    except OSError as exc:
        raise MllpError(f"MLLP {host}:{port}: {exc}") from exc
    if reply is None:
        raise MllpError(f"MLLP {host}:{port} closed the connection without an acknowledgement")
    return reply


Handler = Callable[[str], str]


class _Connection(socketserver.BaseRequestHandler):
    server: MllpServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(self.server.idle_timeout_s)
        buffer = bytearray()
        while not self.server.stopping.is_set():
            try:
                text = read_frame(sock, buffer)
            except TimeoutError:
                return
            except (MllpError, OSError) as exc:
                log.warning("MLLP connection from %s: %s", self.client_address[0], exc)
                return
            if text is None:
                return
            try:
                reply = self.server.handler(text)
            except Exception:  # a bug answers nothing rather than a wrong acknowledgement; the sender resends
                log.exception("MLLP handler failed")
                return
            sock.sendall(frame(reply))


class MllpServer(socketserver.ThreadingTCPServer):
    """A threaded MLLP server: ``handler(message) -> acknowledgement`` for every frame received."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, handler: Handler, idle_timeout_s: float = 300.0) -> None:
        self.handler = handler
        self.idle_timeout_s = idle_timeout_s
        self.stopping = threading.Event()
        super().__init__((host, port), _Connection)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """Return the port listened on (useful with port 0)."""
        return int(self.server_address[1])

    def start(self) -> None:
        """Serve on a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="mllp-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self.stopping.set()
        self.shutdown()
        self.server_close()
