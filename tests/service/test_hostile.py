"""Hostile and unlucky traffic: slow clients, costly small files, oversized batches, bad framing.

Each test drives one family of the outside test the service failed once (issue 13)
and checks the property that fixes the whole family, not the one reproduction:
admission that cannot be poisoned by slow uploads, work bounded by what the header
declares, limits enforced while the body is parsed, connections with deadlines.
"""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.service.conftest import Server, encode

PNG = {"content-type": "image/png"}


def picture(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width), dtype=np.uint8)


@pytest.fixture(scope="module")
def server(serve) -> Iterator[Server]:
    # The default request deadline (a slow body meets it after 10 s); short head and keep-alive deadlines.
    with serve(max_batch_size=4, request_timeout_s=10.0, header_timeout_s=0.5, keep_alive_s=1.0) as running:
        yield running


def closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """Read until the server closes ``sock``; the bytes it sent, or None if it was still open after ``seconds``."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return received


# ---- 1. admission that cannot latch ------------------------------------------------------------


def test_a_slow_upload_neither_blocks_others_nor_leaves_the_service_refusing(server, png):
    """One client trickles a body while another posts images; afterwards normal load gets no 503."""
    host, port = server.host, server.port
    slow = socket.create_connection((host, port))
    slow.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 12000\r\n\r\n")
    stop = threading.Event()

    def trickle() -> None:
        try:
            while not stop.is_set():
                slow.send(b"\x00")
                time.sleep(0.05)
        except OSError:
            return  # the server closed it

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        during = [client.post("/classify", content=png, headers=PNG).status_code for _ in range(8)]
        answer = closed_within(slow, 20.0)
        stop.set()
        trickler.join(5)
        slow.close()
        assert during == [200] * 8, "the slow upload held nobody up"
        assert answer is not None and answer.startswith(b"HTTP/1.1 408"), "the trickled body met its deadline"
        assert server.runtime.admission.outstanding == 0 and server.runtime.admission.in_flight == 0

    def client_loop(statuses: list[int]) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            statuses.extend(client.post("/classify", content=png, headers=PNG).status_code for _ in range(15))

    statuses: list[int] = []
    workers = [threading.Thread(target=client_loop, args=(statuses,)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert statuses.count(200) == 60 and 503 not in statuses, "normal load after the slow client: 0 x 503"


# ---- 7. connection deadlines and framing -------------------------------------------------------


def test_a_head_sent_slowly_and_a_silent_connection_are_closed(server):
    silent = socket.create_connection((server.host, server.port))
    assert closed_within(silent, 5.0) is not None, "a connection that never sends a head is closed"
    silent.close()
    slow = socket.create_connection((server.host, server.port))
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    closed = False
    for byte in head[:-4]:
        try:
            slow.send(bytes([byte]))
        except OSError:
            closed = True
            break
        time.sleep(0.1)
    assert closed or closed_within(slow, 5.0) is not None, "a head trickled a byte at a time is cut off"
    slow.close()


def test_an_idle_keep_alive_connection_is_closed(server):
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = closed_within(sock, 5.0)
        assert answer is not None and answer.startswith(b"HTTP/1.1 200"), "answered, then closed when idle"


def test_content_length_with_transfer_encoding_is_refused_and_the_connection_closed(server):
    smuggled = b"GET /model HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b"0\r\n\r\n" + smuggled
    request = (
        b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        + f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        + body
    )
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(request)
        answer = closed_within(sock, 5.0)
    assert answer is not None, "the connection is closed after the refusal"
    assert answer.startswith(b"HTTP/1.1 400") and b"Transfer-Encoding" in answer
    assert answer.count(b"HTTP/1.1") == 1, "the smuggled request got no answer"


def test_no_redirect_is_built_from_the_clients_host(server):
    response = httpx.get(f"{server.url}/model/", headers={"Host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 404 and "location" not in response.headers


# ---- 2, 3, 4. work bounded by what the request declares ----------------------------------------


def _png_with_chunks(count: int) -> bytes:
    data = encode(picture(40, 40))
    empty = struct.pack(">I", 0) + b"tEXt" + struct.pack(">I", zlib.crc32(b"tEXt"))
    return data[:33] + empty * count + data[33:]


def _rle8_bmp(width: int, height: int) -> bytes:
    """An RLE8 BMP of ``width`` x ``height``: one pixel then end-of-line per row (tiny file, slow decoder)."""
    rows = (b"\x01\x07" + b"\x00\x00") * height + b"\x00\x01"
    palette = b"".join(bytes([i, i, i, 0]) for i in range(256))
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(rows), 2835, 2835, 256, 0)
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + info + palette + rows


@pytest.mark.parametrize(
    ("name", "data", "status", "word"),
    [
        ("1 x 16M png", encode(np.zeros((1, 1 << 14), np.uint8)), 422, "ILCS_MIN_SIDE"),
        ("thin png", encode(np.zeros((40, 40 * 17), np.uint8)), 422, "ILCS_MAX_ASPECT"),
        ("long side", encode(np.zeros((600, 9000), np.uint8)), 413, "ILCS_MAX_SIDE"),
        ("rle8 bmp", _rle8_bmp(4096, 4096), 400, "run-length"),
        ("png of many chunks", _png_with_chunks(100_000), 400, "chunks"),
    ],
)
def test_inputs_that_would_cost_more_than_they_weigh_are_refused_before_decoding(
    live, model_calls, name, data, status, word
):
    with live(max_side=8192, max_pixels=4096 * 4096, max_body_bytes=4 << 20) as svc:
        calls = model_calls(svc)
        response = svc.classify(data, "image/bmp" if name.endswith("bmp") else "image/png")
        assert response.status_code == status, response.text
        assert word in response.json()["detail"]
        assert calls == [] and svc.runtime.batcher.depth == 0, "refused before the queue"


def test_a_rle4_bmp_is_refused_too(live):
    buf = io.BytesIO()
    Image.fromarray(picture(40, 40)).convert("P").save(buf, "BMP")
    data = bytearray(buf.getvalue())
    struct.pack_into("<I", data, 30, 2)  # BI_RLE4
    struct.pack_into("<H", data, 28, 4)
    with live() as svc:
        response = svc.classify(bytes(data), "image/bmp")
        assert response.status_code == 400, response.text


def test_a_batch_is_refused_at_the_first_part_past_the_limit_while_the_body_is_parsed(live, png):
    boundary = "b0undary"
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="x"\r\n\r\n\r\n'.encode()
    sent = [0]

    async def body():
        for _ in range(150_000):
            sent[0] += 1
            yield part
        yield f"--{boundary}--\r\n".encode()

    with live(max_batch_images=4) as svc:
        headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
        response = svc.post("/classify/batch", content=body(), headers=headers)
        assert response.status_code == 413, response.text
        assert sent[0] < 1000, f"the parser stopped early, not after {sent[0]} parts"


def test_the_pixels_of_a_batch_are_counted_and_bounded(live, png):
    big = encode(picture(1024, 1024))
    files = [("files", (f"{i}.png", big, "image/png")) for i in range(5)]
    with live(max_request_pixels=4 * 1024 * 1024, max_batch_images=8, max_body_bytes=16 << 20) as svc:
        response = svc.post("/classify/batch", files=files)
        assert response.status_code == 413 and "ILCS_MAX_REQUEST_PIXELS" in response.json()["detail"]
        response = svc.post("/classify/batch", files=files[:4])
        assert response.status_code == 200 and all(item["result"] for item in response.json()["results"])
        assert svc.runtime.admission.outstanding == 0


def test_a_big_batch_is_refused_while_the_model_is_busy_and_single_requests_keep_their_place(live, gate, png, until):
    big = encode(picture(1024, 1024))
    files = [("files", (f"{i}.png", big, "image/png")) for i in range(8)]
    with live(request_timeout_s=3.0, max_batch_images=8, max_body_bytes=16 << 20) as svc:
        svc.runtime.admission.observe(units=1, seconds=0.2)  # the model thread's speed: 0.2 s an image unit
        g = gate(svc)
        single = svc.start("POST", "/classify", content=png, headers=PNG)
        until(g.entered.is_set, "the single image in the model")
        refused = svc.post("/classify/batch", files=files)  # 8 x 2 units x 0.2 s: longer than a second
        assert refused.status_code == 503 and refused.headers["retry-after"]
        g.open()
        assert single.result().status_code == 200


# ---- 8. degenerate inputs ----------------------------------------------------------------------


def test_an_image_too_small_to_show_a_defect_is_refused_and_a_uniform_one_flagged(live):
    with live(low_confidence_threshold=0.0) as svc:  # confidence alone would never flag
        tiny = svc.classify(encode(np.full((1, 1), 77, np.uint8)))
        assert tiny.status_code == 422 and "ILCS_MIN_SIDE" in tiny.json()["detail"]
        for value in (0, 128, 255):
            blank = svc.classify(encode(np.full((300, 300), value, np.uint8))).json()
            assert blank["low_confidence"] is True
        nearly = np.full((64, 64), 128, np.uint8)
        nearly[::7, ::5] = 129
        assert svc.classify(encode(nearly)).json()["low_confidence"] is True
        assert svc.classify(encode(picture(64, 64))).json()["low_confidence"] is False
