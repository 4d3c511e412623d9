"""Faults: a model that raises, clients that leave, deadlines that pass. Nothing leaks, the service carries on.

Every check of "never reached the model" is on the gate's record of model calls,
and every check of "no slot leaked" on the service's own metrics: queue depth and
requests in flight back at 0, and the images dropped from the queue counted by reason.
"""

from __future__ import annotations

import socket
import threading

import httpx

PNG = {"content-type": "image/png"}


def test_an_exception_in_the_model_fails_its_batch_with_500_says_so_is_counted_and_the_next_batch_works(
    live, gate, png, until
):
    with live(max_batch_size=4) as svc:
        g = gate(svc)
        first = svc.start("POST", "/classify", content=png, headers=PNG)
        until(g.entered.is_set, "the first image in the model")
        real = g.predict

        def fails_on_the_batch_of_three(inputs):
            if len(inputs) == 3:
                raise RuntimeError("injected fault: illegal instruction in a conv kernel")
            return real(inputs)

        g.predict = fails_on_the_batch_of_three  # what the gate calls once opened
        doomed = [svc.start("POST", "/classify", content=png, headers=PNG) for _ in range(3)]
        until(lambda: svc.runtime.batcher.depth == 3, "three images queued behind the first")
        g.open()
        assert first.result().status_code == 200
        for response in (f.result() for f in doomed):
            assert response.status_code == 500
            assert response.headers["content-type"] == "application/problem+json"
            problem = response.json()
            assert problem["title"] == "Inference Failed"
            assert "the model failed on the batch of 3 images" in problem["detail"]
            assert "injected fault" in problem["detail"]
        assert g.batches == [1, 3]
        assert svc.metric("ilcs_batch_failures_total") == 1
        assert svc.metric("ilcs_requests_total", route="/classify", status="500") == 3
        assert svc.classify(png).status_code == 200, "the next batch succeeds"
        assert g.batches == [1, 3, 1] and svc.metric("ilcs_batch_failures_total") == 1
        assert svc.runtime.batcher.alive and svc.metric("ilcs_queue_depth") == 0


def test_requests_whose_deadline_passes_in_the_queue_never_reach_the_model_and_free_their_places(
    live, gate, png, until
):
    with live(max_batch_size=1, queue_size=4, request_timeout_s=0.3) as svc:
        g = gate(svc)
        blocker = svc.start("POST", "/classify", content=png, headers=PNG)
        until(g.entered.is_set, "the first image in the model")
        late = [svc.start("POST", "/classify", content=png, headers=PNG) for _ in range(4)]
        assert [f.result().status_code for f in late] == [504] * 4
        # Their places are free while the model is still held, not when the batcher reaches them.
        assert svc.runtime.batcher.depth == 0 and svc.metric("ilcs_queue_depth") == 0
        assert svc.metric("ilcs_queue_dropped_total", reason="cancelled") == 4
        g.open()
        assert blocker.result().status_code == 504  # its deadline passed while its image was in the model
        after = svc.classify(png)
        assert after.status_code == 200, after.text
        assert g.batches == [1, 1], "no timed-out image reached the model"
        until(lambda: svc.metric("ilcs_requests_in_flight") == 0, "every request answered")
        assert svc.metric("ilcs_queue_depth") == 0


def test_clients_that_hang_up_while_queued_free_their_places_at_once(serve, gate, png, until):
    with serve(max_batch_size=1, queue_size=3) as server:
        g = gate(server.runtime)
        post = {"content": png, "headers": PNG}
        blocker = threading.Thread(target=httpx.post, args=(f"{server.url}/classify",), kwargs=post)
        blocker.start()
        until(g.entered.is_set, "a request in the model")
        head = f"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {len(png)}\r\n\r\n"
        for _ in range(3):
            with socket.create_connection((server.host, server.port)) as raw:
                raw.sendall(head.encode() + png)
                until(lambda: server.runtime.batcher.depth == 1, "the request in the queue")
            until(lambda: server.runtime.batcher.depth == 0, "its place freed when it hung up")
        assert server.metric("ilcs_requests_total", route="/classify", status="499") == 3
        assert server.metric("ilcs_queue_dropped_total", reason="cancelled") == 3
        g.open()
        blocker.join(30)
        assert httpx.post(f"{server.url}/classify", **post).status_code == 200
        until(lambda: server.metric("ilcs_requests_in_flight") == 0, "nothing in flight")
        assert g.batches == [1, 1], "no hung-up request reached the model"


def test_a_client_that_hangs_up_during_its_upload_is_499_not_a_server_error(serve, png, until, caplog):
    with serve() as server:
        head = f"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {len(png)}\r\n\r\n"
        for cut in (0, len(png) // 2):
            with socket.create_connection((server.host, server.port)) as raw:
                raw.sendall(head.encode() + png[:cut])
        until(lambda: server.metric("ilcs_requests_total", route="/classify", status="499") == 2, "two 499s")
        assert server.metric("ilcs_requests_total", route="/classify", status="500") == 0
        assert not [r for r in caplog.records if r.levelname == "ERROR"], "a hang-up is no error of the service"
        until(lambda: server.metric("ilcs_requests_in_flight") == 0, "nothing in flight")
        assert httpx.post(f"{server.url}/classify", content=png, headers=PNG).status_code == 200
