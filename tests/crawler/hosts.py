"""A loopback HTTP server whose routes misbehave the ways real image hosts do."""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

Route = Callable[[BaseHTTPRequestHandler, int], None]  # (handler, how many times this path was hit)


def jpeg_bytes(color: tuple[int, int, int] = (30, 120, 200), size: tuple[int, int] = (80, 60)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG")
    return buffer.getvalue()


def pixel_bomb_png(side: int = 1500) -> bytes:
    """Small file, many pixels: a decompression bomb for a pixel cap below side²."""
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def send(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    content_type: str = "image/png",
    headers: dict[str, str] | None = None,
    declared_length: int | None = None,
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body) if declared_length is None else declared_length))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def image(data: bytes, content_type: str = "image/png", headers: dict[str, str] | None = None) -> Route:
    return lambda handler, hits: send(handler, 200, data, content_type, headers)


def failing_then(failures: list[tuple[int, dict[str, str]]], data: bytes) -> Route:
    """Answer the listed error statuses first, then the image."""

    def route(handler: BaseHTTPRequestHandler, hits: int) -> None:
        if hits <= len(failures):
            status, headers = failures[hits - 1]
            send(handler, status, b"busy", "text/plain", headers)
        else:
            send(handler, 200, data)

    return route


def slow(seconds: float, data: bytes) -> Route:
    def route(handler: BaseHTTPRequestHandler, hits: int) -> None:
        time.sleep(seconds)
        send(handler, 200, data)

    return route


def endless(head: bytes) -> Route:
    """An image header followed by bytes forever, with no Content-Length."""

    def route(handler: BaseHTTPRequestHandler, hits: int) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(head)
        chunk = b"\0" * 65536
        try:
            for _ in range(800):  # 50 MB
                handler.wfile.write(chunk)
        except OSError:
            pass  # the client hung up at its byte cap

    return route


def cut_short(data: bytes, keep_length_header: bool) -> Route:
    """Send half the body then close; with the full Content-Length it is a broken transfer."""

    def route(handler: BaseHTTPRequestHandler, hits: int) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        if keep_length_header:
            handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(data[: len(data) // 2])
        handler.close_connection = True

    return route


def redirect(location: str) -> Route:
    return lambda handler, hits: send(handler, 302, b"", "text/plain", {"Location": location})


class MisbehavingServer:
    def __init__(self, latency_s: float = 0.0) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.requests: list[str] = []
        self.latency_s = latency_s
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server.hits[path] += 1
                    server.requests.append(self.path)
                    hits = server.hits[path]
                if server.latency_s:
                    time.sleep(server.latency_s)
                route = server.routes.get(path)
                if route is None:
                    send(self, 404, b"not found", "text/plain")
                else:
                    try:
                        route(self, hits)
                    except OSError:
                        self.close_connection = True  # the client hung up (timeout, byte cap): expected

            def log_message(self, format: str, *args: object) -> None:
                del format, args

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> MisbehavingServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
