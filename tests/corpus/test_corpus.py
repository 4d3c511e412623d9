"""Every bad input gets a 4xx problem+json, every odd-but-valid one its clean twin's answer; nothing 5xx.

The inputs are ``tests/corpus/generate.py``'s, made when the tests run. After each
one, a good image must get its right answer from the same service, so a case that
broke the batcher, a worker thread or the event loop fails right where it happened.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tests.corpus.generate import LIMITS, Case, Expect, Request, corpus, encode, fingerprint, picture

CASES = corpus()
LABELS = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
GOOD = encode(picture(64, 64, seed=5))


@pytest.fixture(scope="module")
def svc(live):
    with live(**LIMITS) as running:
        yield running


def send(svc, request: Request):
    return svc.request(request.method, request.url, **request.kwargs())


def answer(response) -> tuple[list[float], int, int]:
    """Scores in label order (the top five of six), width, height."""
    assert response.status_code == 200, response.text
    body = response.json()
    by_label = {t["label"]: t["score"] for t in body["top5"]}
    return [by_label.get(label, 0.0) for label in LABELS], body["width"], body["height"]


@pytest.fixture(scope="module")
def twin_answer(svc):
    cache: dict[str, tuple[list[float], int, int]] = {}

    def of(request: Request) -> tuple[list[float], int, int]:
        key = hashlib.sha256(request.content + repr((request.headers, request.params)).encode()).hexdigest()
        if key not in cache:
            cache[key] = answer(send(svc, request))
        return cache[key]

    return of


@pytest.fixture(scope="module")
def good_answer(svc):
    return answer(svc.classify(GOOD))


def test_the_corpus_holds_at_least_200_distinct_inputs():
    fingerprints = {fingerprint(c.request) for c in CASES}
    assert len(fingerprints) == len(CASES) >= 200
    assert {c.expect for c in CASES} == set(Expect)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_bad_input_is_refused_and_an_odd_one_answered_as_its_twin(svc, twin_answer, good_answer, case: Case):
    response = send(svc, case.request)
    status = response.status_code
    assert status < 500, response.text
    if 400 <= status < 500:
        assert case.expect is not Expect.ANSWER, f"refused a valid input: {response.text}"
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == status and problem["title"] and len(problem["detail"]) > 20
        assert problem["request_id"] == response.headers["x-request-id"]
    else:
        assert status == 200 and case.expect is not Expect.REFUSE, f"answered {status} to a bad input"
        scores, width, height = answer(response)
        if case.expect is not Expect.ANY:  # ANY: another valid picture, no twin to match
            assert case.twin is not None
            twin_scores, twin_width, twin_height = twin_answer(case.twin)
            assert (width, height) == (twin_width, twin_height)
            assert scores == pytest.approx(twin_scores, abs=1e-5)
    # Right after: the service still answers a good image, and answers it right.
    after = answer(svc.classify(GOOD))
    assert after[0] == pytest.approx(good_answer[0], abs=1e-6) and after[1:] == good_answer[1:]
    assert svc.runtime.batcher.alive


def test_the_whole_corpus_caused_no_server_error(svc):
    text = svc.get("/metrics").text
    requests = [line for line in text.splitlines() if line.startswith("ilcs_requests_total{")]
    assert len(requests) > 5  # 200, 400, 404, 405, 413, 415, 422...
    # The only 5xx: /readyz's 503 while the app warmed up, before the corpus.
    assert [line for line in requests if 'status="5' in line and "/readyz" not in line] == []
    assert svc.metric("ilcs_batch_failures_total") == 0
    assert svc.metric("ilcs_queue_depth") == 0 and svc.runtime.batcher.depth == 0


def test_odd_inputs_really_differ_from_their_twins():
    """The twins are not the cases themselves: an ANSWER case's bytes differ from its twin's (except by design)."""
    same = [c.name for c in CASES if c.expect is Expect.ANSWER and c.twin == c.request]
    assert same == []
    assert np.mean([c.twin is not None for c in CASES if c.expect is not Expect.REFUSE]) == 1.0
