"""How much CPU the service spends per request besides the model: ``python -m benchmarks.overhead``.

Writes ``reports/service-overhead.md``. With the loopback client and ``ilcs serve`` of
``benchmarks.load``, it measures the shipped checkpoint (``/classify`` with the gray heatmap
and with ``?heatmap=none``), the same service around a *near-null model* (what is left is
the request's own cost) and ``GET /healthz`` (the web stack alone). On C cores shared by
server and client the service answers at most C / (CPU per request) requests a second, so
the near-null model's non-model CPU bounds the share of the raw model throughput it can reach.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import torch

from benchmarks.load import raw_throughput
from benchmarks.loopback import Service, load_images, request_bytes, run_level
from benchmarks.machine import machine
from benchmarks.markdown import render, table

__all__ = ["main"]

DEFAULT_OUT = Path("reports/service-overhead.md")
LABELS = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


@dataclass
class Row:
    name: str
    raw: float | None  # images/s of the model alone, None for /healthz
    throughput: float  # answered requests/s at saturation
    server_ms: float  # server CPU per request
    client_ms: float  # load generator CPU per request
    errors: int
    loop_ms: float = 0.0  # the event-loop thread's CPU per request
    workers_ms: float = 0.0  # the other threads' CPU (model workers: decode, model, heatmap) per model image
    extras_ms: float = 0.0  # decoding, resizing and the heatmap alone, in this process, per image


def null_checkpoint(folder: Path) -> Path:
    """An ILCS checkpoint so small its forward pass costs next to nothing: 4 channels per block, 32 x 32."""
    from model_zoo import create_model
    from model_zoo.checkpoint import ModelCard, save_checkpoint

    hyper = {"input_size": 32, "channels": [4, 4, 4], "attn_layer": None}
    torch.manual_seed(0)
    stem = folder / "near-null"
    card = ModelCard(name="near-null", arch="ilcs", labels=LABELS, input_size=32, hyperparameters=hyper)
    save_checkpoint(create_model("ilcs", **hyper), stem, card)
    return stem


def payloads(images: list[bytes], target: str) -> list[bytes]:
    """``"GET /path"``: that request; ``"/classify?..."``: one ``POST`` of each image."""
    if target.startswith("GET "):
        return [f"{target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()]
    return [request_bytes(img, "image/jpeg", query=target.removeprefix("/classify")) for img in images]


def measure(checkpoint: Path, targets: dict[str, str], clients: int, requests: int) -> list[Row]:
    """Raw model throughput, then the service at saturation for each ``name: request target``."""
    from service.inference import Engine
    from service.settings import get_settings

    settings = get_settings()
    engine = Engine.load(checkpoint, "cpu", settings.threads, settings.model_workers, settings.graph)
    images = load_images()
    rows = []
    with Service(1, 5.0, queue_size=max(256, 4 * clients), ILCS_CHECKPOINT=str(checkpoint)) as svc:
        for name, target in targets.items():
            batch = payloads(images, target)
            run_level(svc, batch, clients=4, requests=100)  # warm this path
            # The raw model right before and right after the service, averaged: this machine's speed drifts.
            before = raw_throughput(engine, 1)
            lv = run_level(svc, batch, clients, requests)
            web_only = target.startswith("GET ")
            raw = None if web_only else (before + raw_throughput(engine, 1)) / 2
            rows.append(
                Row(
                    name, raw, lv.throughput, 1e3 * lv.server_cpu_s / lv.requests,
                    1e3 * lv.client_cpu_s / lv.requests, lv.errors, 1e3 * lv.loop_cpu_s / lv.requests,
                    1e3 * (lv.server_cpu_s - lv.loop_cpu_s) / max(lv.model_images, 1.0),
                    0.0 if web_only else extras_alone_ms(engine, images, target),
                )
            )  # fmt: skip
            print(rows[-1], flush=True)
    return rows


def extras_alone_ms(engine, images: list[bytes], target: str, rounds: int = 3) -> float:
    """CPU ms per image a model worker spends besides the model (decode, resize, heatmap), alone in this thread.

    ``service.pipeline.BatchProcessor`` on one image at a time, minus ``Engine.predict`` on the same
    prepared images; the smaller of ``rounds`` repeats (this machine's speed drifts).
    """
    from service.intake import ImageLimits, decode
    from service.metrics import Metrics
    from service.pipeline import BatchProcessor, Job, Upload, inspect_upload
    from service.settings import Settings

    kind = parse_qs(urlsplit(target).query).get("heatmap", ["gray"])[0]
    limits = ImageLimits.from_settings(Settings())
    process = BatchProcessor(engine, Metrics())
    jobs = [Job(up, inspect_upload(up, limits), kind) for up in map(Upload, images)]
    prepared = [engine.prepare(decode(j.upload.data, j.header, engine.card.input_size)[0]) for j in jobs]
    best = float("inf")
    for _ in range(rounds):
        start = time.thread_time()
        for job in jobs:
            process([job])
        middle = time.thread_time()
        for x in prepared:
            engine.predict([x])
        best = min(best, ((middle - start) - (time.thread_time() - middle)) / len(images))
    return 1e3 * best


def main(args: argparse.Namespace) -> None:
    from model_zoo.checkpoint import SHIPPED_CHECKPOINT

    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(
            SHIPPED_CHECKPOINT,
            {"shipped, /classify": "/classify", "shipped, /classify?heatmap=none": "/classify?heatmap=none"},
            args.clients,
            args.requests,
        )
        rows += measure(
            null_checkpoint(Path(tmp)),
            {"near-null model, /classify": "/classify", "near-null model, GET /healthz": "GET /healthz"},
            args.clients,
            args.requests,
        )
    command = f"python -m benchmarks.overhead --clients {args.clients} --requests {args.requests}"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(format_report(command, rows, load))
    print(f"wrote {out}")


def format_report(command: str, rows: list[Row], load: str) -> str:
    m, cores = machine(), os.cpu_count() or 1
    model = {r.name: 1e3 * cores / r.raw if r.raw else 0.0 for r in rows}
    figures = table(
        ["configuration", "model alone (img/s)", "service (req/s)", "service / model", "server CPU ms/req",
         "model CPU ms/img", "non-model server CPU ms/req", "client CPU ms/req", "errors"],
        [(r.name, f"{r.raw:.1f}" if r.raw else "-", f"{r.throughput:.1f}", f"{r.throughput / r.raw:.0%}" if r.raw
          else "-", f"{r.server_ms:.2f}", f"{model[r.name]:.2f}", f"{r.server_ms - model[r.name]:.2f}",
          f"{r.client_ms:.2f}", r.errors) for r in rows],
    )  # fmt: skip
    threads = table(
        ["configuration", "event loop CPU ms/req", "model workers CPU ms/img", "model alone ms/img",
         "decode, resize, heatmap alone ms/img", "the rest: slower beside the request path, ms/img"],
        [(r.name, f"{r.loop_ms:.2f}", f"{r.workers_ms:.2f}", f"{model[r.name]:.2f}", f"{r.extras_ms:.2f}",
          f"{r.workers_ms - model[r.name] - r.extras_ms:+.2f}") for r in rows if r.raw],
    )  # fmt: skip
    shipped, null = rows[0], next(r for r in rows if r.name.startswith("near-null") and r.raw)
    health = next(r for r in rows if r.raw is None)
    model_ms = model[shipped.name]
    floor_ms = null.server_ms - model[null.name]
    budget_ms = model_ms / 9  # what the whole request path may cost for 90% of the raw model throughput
    return render(
        "service-overhead.md",
        command=command, date=f"{datetime.now(UTC):%Y-%m-%d %H:%M}", cpu=m["cpu"], cores=m["cores"],
        torch=m["torch"], python=m["python"], load=load, figures=figures, threads=threads,
        model_ms=f"{model_ms:.1f}", floor_ms=f"{floor_ms:.1f}", null_client_ms=f"{null.client_ms:.2f}",
        health_ms=f"{health.server_ms:.2f}", cores_n=cores,
        bound=f"{model_ms / (model_ms + floor_ms + null.client_ms):.0%}", budget_ms=f"{budget_ms:.1f}",
        measured=f"{shipped.throughput / shipped.raw:.0%}", loop_ms=f"{shipped.loop_ms:.2f}",
        loop_share=f"{shipped.loop_ms / budget_ms:.0%}", extras_ms=f"{shipped.extras_ms:.2f}",
        rest_ms=f"{shipped.workers_ms - model_ms - shipped.extras_ms:.1f}",
    )  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    main(parser.parse_args())
