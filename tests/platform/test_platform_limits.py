from __future__ import annotations

import socket
import threading
from urllib.parse import urlparse

import httpx

UPLOAD_BYTES = 200 * 1024 * 1024


def _send_upload(url: str, chunked: bool) -> bytes:
    """Stream a 200 MB multipart body at the server; return what it answered."""
    address = urlparse(url)
    sock = socket.create_connection((address.hostname, address.port), timeout=30)
    length_header = b"Transfer-Encoding: chunked" if chunked else f"Content-Length: {UPLOAD_BYTES}".encode()
    sock.sendall(
        b"POST /v1/datasets/any/images HTTP/1.1\r\nHost: test\r\n"
        b"Content-Type: multipart/form-data; boundary=xyz\r\n" + length_header + b"\r\n\r\n"
    )
    # A well-formed multipart start, so the refusal is about size and not a malformed body.
    preamble = (
        b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="huge.png"\r\nContent-Type: image/png\r\n\r\n'
    )
    chunk = b"\0" * (1024 * 1024)

    def stream_body() -> None:
        try:
            for piece in (preamble, *([chunk] * (UPLOAD_BYTES // len(chunk)))):
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        except OSError:
            pass  # the server closed the connection after refusing: that is the point

    sender = threading.Thread(target=stream_body, daemon=True)
    sender.start()
    answer = b""
    while b"byte limit" not in answer:  # status line and body may come in separate segments
        try:
            received = sock.recv(4096)
        except OSError:
            break
        if not received:
            break
        answer += received
    sock.close()
    sender.join(timeout=30)
    return answer


def test_a_200_mb_upload_is_refused_with_413_and_the_server_stays_up(api_url: str) -> None:
    for chunked in (False, True):
        answer = _send_upload(api_url, chunked)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"byte limit" in answer
        assert httpx.get(f"{api_url}/healthz").status_code == 200
    assert httpx.get(f"{api_url}/readyz").json()["ready"] is True
