"""Training on a GPU: fp16 AMP with a gradient scaler only on CUDA, no per-step waits for the device.

The CPU's training arithmetic is what it was before AMP: ``train_one_epoch`` gives the loss,
accuracy and weights of the plain fp32 loop written out below (``reference_epoch``), to the bit.
The AMP branch is checked with a recording scaler and bf16 autocast, which a CPU can run.
"""

from __future__ import annotations

import copy
import sys
from contextlib import contextmanager

import pytest
import torch
from torch.nn import functional as F

from model_zoo.preprocess import Preprocess
from model_zoo.registry import create_model
from training import precision as precision_module
from training.augment import augment_batch, augment_batch_with_masks, train_transform
from training.engine import box_loss, train_one_epoch
from training.precision import MixedPrecision, mixed_precision

SIZE, N, BATCH = 32, 12, 4


@pytest.fixture
def setup():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the training tests run (the cores are shared)
    yield _setup()
    torch.set_num_threads(threads)


def _setup():
    torch.manual_seed(0)
    model = create_model("ilcs", num_classes=6, input_size=SIZE, channels=[8, 16, 32])
    gen = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (1, 40, 40), dtype=torch.uint8, generator=gen) for _ in range(N)]
    masks = [None if i % 3 == 0 else (torch.rand(1, 40, 40, generator=gen) > 0.7).to(torch.uint8) for i in range(N)]
    labels = torch.arange(N) % 6
    return model, images, masks, labels


def _optimiser(model):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)


def reference_epoch(model, images, labels, masks, box_weight, seed):
    """The loop as it was before AMP: eager fp32, ``.item()`` after every step."""
    torch.manual_seed(seed)
    optimizer, scheduler = _optimiser(model)
    preprocess, transform = Preprocess(SIZE), train_transform(SIZE)
    model.train()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    total, total_box, correct, seen = 0.0, 0.0, 0, 0
    for start in range(0, len(order), BATCH):
        idx = order[start : start + BATCH]
        y = labels[idx]
        if box_weight:
            x, m, valid = augment_batch_with_masks([images[i] for i in idx], [masks[i] for i in idx], transform)
            out = model.forward_with_attention(preprocess(x))
            logits, aux = out.logits, box_loss(out.attention, m, valid)
            loss = F.cross_entropy(logits, y) + box_weight * aux
            total_box += aux.item() * len(idx)
        else:
            logits = model(preprocess(augment_batch([images[i] for i in idx], transform)))
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(idx)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(idx)
    return {"loss": total / seen, "acc": correct / seen, "box_loss": total_box / seen}


def run_epoch(model, images, labels, masks, box_weight, seed, **kw):
    torch.manual_seed(seed)
    optimizer, scheduler = _optimiser(model)
    generator = torch.Generator().manual_seed(seed)
    return train_one_epoch(
        model, images, labels, optimizer, scheduler, Preprocess(SIZE), train_transform(SIZE), BATCH, generator,
        torch.device("cpu"), masks=masks, box_loss_weight=box_weight, **kw,
    )  # fmt: skip


@pytest.mark.parametrize("box_weight", [0.0, 1.0], ids=["classes", "classes+boxes"])
def test_the_cpu_trains_exactly_as_the_plain_fp32_loop(setup, box_weight):
    model, images, masks, labels = setup
    twin = copy.deepcopy(model)
    got = run_epoch(model, images, labels, masks, box_weight, seed=3)
    want = reference_epoch(twin, images, labels, masks, box_weight, seed=3)
    assert got == want
    for a, b in zip(model.state_dict().values(), twin.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_amp_is_on_only_on_cuda(monkeypatch):
    made = []

    class Scaler:
        def __init__(self, device, enabled):
            made.append((device, enabled))

    monkeypatch.setattr(precision_module.torch.amp, "GradScaler", Scaler)
    gpu = mixed_precision(torch.device("cuda", 0))
    cpu = mixed_precision(torch.device("cpu"))
    assert (gpu.enabled, gpu.device_type, gpu.dtype) == (True, "cuda", torch.float16)
    assert cpu.enabled is False
    assert made == [("cuda", True), ("cpu", False)]


class RecordingScaler:
    """A gradient scaler that records the calls a training step makes (and scales by 1, so it still trains)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def scale(self, loss):
        self.calls.append("scale")
        assert loss.dtype == torch.float32, "the loss is computed in fp32, outside autocast"
        return loss

    def step(self, optimizer):
        self.calls.append("step")
        optimizer.step()

    def update(self):
        self.calls.append("update")


class RecordingPrecision(MixedPrecision):
    """The AMP branch with its autocast recorded rather than run (a CPU's bf16 autocast is slow)."""

    active = False

    @contextmanager
    def autocast(self):
        RecordingPrecision.active = True
        try:
            yield
        finally:
            RecordingPrecision.active = False


def test_the_amp_branch_runs_the_forward_under_autocast_and_steps_through_the_scaler(setup):
    model, images, masks, labels = setup
    scaler = RecordingScaler()
    amp = RecordingPrecision("cuda", True, scaler)
    forwards = []
    model.lcs.register_forward_hook(lambda *_: forwards.append(RecordingPrecision.active))
    model.train()
    before = copy.deepcopy(model.state_dict())
    out = run_epoch(model, images, labels, masks, 1.0, seed=3, precision=amp)
    steps = N // BATCH
    assert scaler.calls == ["scale", "step", "update"] * steps
    assert forwards == [True] * steps  # the forward under autocast, the losses after it
    assert out["loss"] == out["loss"] and out["box_loss"] > 0  # finite, and the box loss took part
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_no_host_sync_per_step(setup, monkeypatch):
    """``.item()`` (a wait for the GPU) only at the log interval and the epoch's end, not once per step."""
    model, images, masks, labels = setup
    calls = []
    real = torch.Tensor.item

    def item(tensor):  # counted when the training loop calls it (the augmentation's random draws are host-side)
        if sys._getframe(1).f_globals["__name__"] == "training.engine":
            calls.append(1)
        return real(tensor)

    monkeypatch.setattr(torch.Tensor, "item", item)
    run_epoch(model, images, labels, masks, 1.0, seed=3, log_every=1000)
    assert len(calls) == 3  # loss, box loss and correct, once each at the end
    calls.clear()
    run_epoch(model, images, labels, masks, 1.0, seed=3, log_every=1)
    assert len(calls) == 3 + 2 * (N // BATCH)  # plus loss and accuracy at each of the N / BATCH log points


def test_augmentation_runs_one_batch_ahead_in_a_worker_thread_on_a_gpu_and_in_order():
    import threading

    from training.engine import ahead

    calls, threads, second_started = [], set(), threading.Event()

    def augment(i):
        calls.append(i)
        threads.add(threading.current_thread().name)
        if i == 2:
            second_started.set()
        return i * 10

    steps = ahead(augment, [1, 2, 3, 4], in_thread=True)
    assert next(steps) == 10
    assert second_started.wait(timeout=10)  # the next batch is augmented while this one trains, unasked
    assert list(steps) == [20, 30, 40] and calls == [1, 2, 3, 4]
    assert all(name.startswith("augment") for name in threads)


def test_on_the_cpu_augmentation_stays_in_the_training_thread_and_happens_when_its_batch_is_used():
    import threading

    from training.engine import ahead

    calls = []
    steps = ahead(lambda i: calls.append((i, threading.current_thread().name)) or i, [1, 2], in_thread=False)
    assert calls == [] and next(steps) == 1 and calls == [(1, threading.current_thread().name)]
