"""What the HTTP parser refuses before the app sees it: a 4xx, the connection closed, the service unharmed.

uvicorn's HTTP/1.1 parser (h11) answers these itself with ``400 Invalid HTTP
request received.`` as text/plain: the one kind of refusal that is not
problem+json, because no request reaches the app. The tests pin that down, and
that a good request is answered right after each.
"""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.corpus.generate import encode, picture

GOOD = encode(picture(64, 64, seed=5))
PNG_HEAD = "POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"

MALFORMED = {
    # h11 refuses a head it cannot parse within 16 KiB of buffered input; a 20 KB one sent at once may fit one
    # read and reach the app, which answers it like any other request (tests/corpus/test_corpus.py)
    "a 1 MB header": (PNG_HEAD + "X-Big: " + "a" * 1_000_000 + "\r\nContent-Length: 0\r\n\r\n").encode(),
    "garbage request line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello\r\n\r\n",
    "no HTTP version": b"POST /classify\r\n\r\n",
    "negative Content-Length": (PNG_HEAD + "Content-Length: -5\r\n\r\n").encode(),
    "Content-Length not a number": (PNG_HEAD + "Content-Length: lots\r\n\r\n").encode(),
    "two different Content-Lengths": (PNG_HEAD + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd").encode(),
    "bad chunk size": (PNG_HEAD + "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n").encode(),
    "header without a colon": (PNG_HEAD + "this is no header\r\nContent-Length: 0\r\n\r\n").encode(),
    "space before the colon": (PNG_HEAD + "Content-Length : 0\r\n\r\n").encode(),
    "bare LF in a header value": (PNG_HEAD + "X-A: a\rb\r\nContent-Length: 0\r\n\r\n").encode(),
}


@pytest.fixture(scope="module")
def server(serve):
    with serve() as running:
        yield running


def exchange(server, data: bytes) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):  # refused before all of it was sent; the answer is there
            pass
        chunks = []
        try:
            while chunk := sock.recv(65536):  # the server closes the connection after its answer
                chunks.append(chunk)
        except ConnectionResetError:  # closed with unread bytes of ours still in its buffer
            pass
    return b"".join(chunks)


@pytest.mark.parametrize("name", list(MALFORMED))
def test_the_parser_refuses_with_400_and_the_service_answers_the_next_request(server, until, name):
    before = server.metric("ilcs_requests_total", route="/classify", status="200")
    answer = exchange(server, MALFORMED[name])
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"content-type: text/plain" in answer.lower() and b"Invalid HTTP request received." in answer
    good = httpx.post(f"{server.url}/classify", content=GOOD, headers={"content-type": "image/png"})
    assert good.status_code == 200
    until(lambda: server.metric("ilcs_requests_total", route="/classify", status="200") == before + 1, "the 200")
    until(lambda: server.metric("ilcs_requests_in_flight") == 0, "nothing left in flight")
