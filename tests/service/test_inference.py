"""service.inference.Engine: the model as the service runs it, eager or as a frozen graph."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from service.inference import Engine


@pytest.fixture(scope="module")
def engines(tiny_checkpoint):
    graph = Engine.load(tiny_checkpoint, "cpu", threads=1, workers=1, graph=True)
    eager = Engine(graph.model, graph.card, graph.device, workers=1, graph=False)
    return graph, eager


def test_on_the_cpu_the_model_runs_as_a_frozen_graph_by_default(engines):
    graph, eager = engines
    assert isinstance(graph.graph, torch.jit.ScriptModule)
    assert eager.graph is None


@pytest.mark.parametrize("batch", [1, 5])
def test_the_graph_answers_what_the_eager_model_answers_at_any_batch_size(engines, batch):
    graph, eager = engines
    rng = np.random.default_rng(batch)
    inputs = [graph.prepare(rng.integers(0, 256, (48, 80), dtype=np.uint8)) for _ in range(batch)]
    for g, e in zip(graph.predict(inputs), eager.predict(inputs), strict=True):
        np.testing.assert_allclose(g.scores, e.scores, atol=1e-5)
        np.testing.assert_allclose(g.attention, e.attention, atol=1e-5)


def test_a_model_that_cannot_be_traced_runs_eagerly_and_says_so(engines, monkeypatch, caplog):
    graph, _ = engines

    def refuse(*args, **kwargs):
        raise RuntimeError("cannot trace this")

    monkeypatch.setattr(torch.jit, "trace", refuse)
    with caplog.at_level(logging.WARNING, logger="service"):
        fallback = Engine(graph.model, graph.card, graph.device, graph=True)
    assert fallback.graph is None and "running it eagerly" in caplog.text
    assert len(fallback.predict(fallback.example_input(2))) == 2
