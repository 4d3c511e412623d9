"""The service's throughput and latency on loopback against its raw model: ``ilcs bench --load``.

Writes ``reports/service-bench.md``: calibration, closed-loop levels of the full product
path (``POST /classify``, a NEU JPEG, gray heatmap), the raw model measured right before
and after each saturation run (this machine's speed drifts), the same pipeline in-process
without HTTP, and one model worker on every core for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from benchmarks.attribution import keep_section
from benchmarks.loopback import Level, Service, load_images, request_payloads, run_level
from benchmarks.machine import machine
from benchmarks.markdown import render, table

__all__ = ["main", "pipeline_throughput", "raw_throughput"]

DEFAULT_OUT = Path("reports/service-bench.md")
ROUNDS = 3  # saturation runs, each between two raw measurements


def main(args: argparse.Namespace | None = None) -> None:
    """Run the benchmark and write the report (``args``: clients, requests, out; None: defaults)."""
    from service import calibration
    from service.inference import Engine
    from service.settings import get_settings

    clients = getattr(args, "clients", None) or 16
    requests = getattr(args, "requests", None) or 800
    out = Path(getattr(args, "out", None) or DEFAULT_OUT)
    settings = get_settings()
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())

    engine = Engine.from_settings(settings)
    # The service's own pick: end to end in-process (decoding, batcher, model, heatmap, answer), torch as served.
    found = asyncio.run(calibration.calibrate([engine], settings, calibration.DEFAULT_SIZES))
    rows, (batch, delay_ms) = found.rows, found.plan
    print(calibration.format_table(rows, batch), f"\nchosen: batch {batch}, delay {delay_ms} ms", flush=True)

    payloads = request_payloads(load_images())
    levels: list[Level] = []
    raws: list[float] = []
    with Service(batch, delay_ms, queue_size=max(256, 8 * clients)) as svc:
        run_level(svc, payloads, clients=min(4, clients), requests=50)  # warm the server's paths
        levels += [_show(run_level(svc, payloads, n, requests)) for n in sorted({1, 4, clients})]
        raws.append(_show(raw_throughput(engine, batch), "raw model"))
        for _ in range(ROUNDS):
            levels.append(_show(run_level(svc, payloads, 4 * clients, requests)))
            raws.append(_show(raw_throughput(engine, batch), "raw model"))
        pipeline = _show(pipeline_throughput(engine, load_images(), batch), "in-process pipeline")
        one_batch, one_delay, one_call = one_call_at_a_time(engine)
    # The same service with one model worker on every core (torch's usual way), at its own batch size.
    cores = os.cpu_count() or 1
    with Service(one_batch, one_delay, max(256, 8 * clients), ILCS_MODEL_WORKERS="1", ILCS_THREADS=str(cores)) as svc:
        run_level(svc, payloads, clients=min(4, clients), requests=50)
        one_worker = _show(run_level(svc, payloads, 4 * clients, requests)).throughput

    saturation = levels[-ROUNDS:]
    ratios = [lv.throughput / ((a + b) / 2) for lv, a, b in zip(saturation, raws[:-1], raws[1:], strict=True)]
    model_ms = 1e3 * cores / float(np.mean(raws))
    server_ms = 1e3 * float(np.mean([lv.server_cpu_s / lv.requests for lv in saturation]))
    service = float(np.mean([lv.throughput for lv in saturation]))
    best = max(lv.throughput for lv in levels)
    images = sum(lv.model_images for lv in saturation) or 1.0
    workers_ms = 1e3 * sum(lv.server_cpu_s - lv.loop_cpu_s for lv in saturation) / images
    card, m = engine.card, machine()
    text = render(
        "service-bench.md",
        command=f"ilcs bench --load --clients {clients} --requests {requests}",
        date=f"{datetime.now(UTC):%Y-%m-%d %H:%M}",
        cpu=m["cpu"], cores=m["cores"], torch=m["torch"], python=m["python"], load=load, device=engine.device,
        workers=engine.workers, threads=torch.get_num_threads(),
        checkpoint=f"{card.name} v{card.version} ({card.arch}, input {card.input_size}), "
        f"sha256 `{card.weights_sha256[:16]}...`",
        calibration=calibration.format_table(rows, batch), batch=batch, delay_ms=delay_ms,
        levels=table(
            ["clients", "requests", "errors", "throughput (req/s)", "p50 ms", "p95 ms", "p99 ms", "mean batch",
             "server CPU s", "client CPU s"],
            [(lv.clients, lv.requests, lv.errors, f"{lv.throughput:.1f}", *(f"{lv.percentile_ms(q):.1f}" for q in
              (50, 95, 99)), f"{lv.mean_batch:.1f}", f"{lv.server_cpu_s:.1f}", f"{lv.client_cpu_s:.1f}")
             for lv in levels],
            left=0,
        ),
        clients=saturation[0].clients,
        rounds=table(
            ["run", "raw before (img/s)", "service (req/s)", "raw after (img/s)", "service / mean raw"],
            [(i + 1, f"{raws[i]:.1f}", f"{lv.throughput:.1f}", f"{raws[i + 1]:.1f}", f"{r:.0%}")
             for i, (lv, r) in enumerate(zip(saturation, ratios, strict=True))],
            left=0,
        ),
        median=f"{float(np.median(ratios)):.0%}",
        model_ms=f"{model_ms:.1f}", cores_n=cores, server_ms=f"{server_ms:.1f}",
        client_ms=f"{1e3 * float(np.mean([lv.client_cpu_s / lv.requests for lv in saturation])):.2f}",
        extra_ms=f"{max(server_ms - model_ms, 0):.1f}",
        loop_ms=f"{1e3 * float(np.mean([lv.loop_cpu_s / lv.requests for lv in saturation])):.2f}",
        workers_ms=f"{workers_ms:.1f}",
        one_batch=one_batch, one_call=f"{one_call:.1f}", service=f"{service:.1f}",
        service_vs_one=f"{service / one_call:.0%}", raw=f"{float(np.mean(raws)):.1f}",
        one_worker=f"{one_worker:.1f}", one_worker_ratio=f"{one_worker / one_call:.0%}",
        pipeline=f"{pipeline:.1f}", best=f"{best:.1f}", best_ratio=f"{best / pipeline:.0%}",
    )  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(keep_section(text, out.read_text() if out.exists() else ""))  # benchmarks.attribution's
    print(f"wrote {out}")


def _show(measured, what: str = ""):
    """Print a level or a throughput as it is measured, and pass it on."""
    if isinstance(measured, Level):
        print(f"{measured.clients:>3} clients: {measured.throughput:7.1f} req/s, p50 {measured.percentile_ms(50):6.1f} "
              f"ms, p99 {measured.percentile_ms(99):6.1f} ms, mean batch {measured.mean_batch:.1f}, errors "
              f"{measured.errors}", flush=True)  # fmt: skip
    else:
        print(f"{what}: {measured:.1f} images/s", flush=True)
    return measured


def pipeline_throughput(engine, images: list[bytes], batch: int, seconds: float = 5.0, heatmap: str = "gray") -> float:
    """Images/s of the service's own batch function without HTTP (header inspection, decoding, the model, the
    heatmap), in ``engine.workers`` threads side by side, batches of ``batch`` real images."""
    from service.intake import ImageLimits
    from service.metrics import Metrics
    from service.pipeline import BatchProcessor, Job, Upload, inspect_upload
    from service.settings import Settings

    limits = ImageLimits.from_settings(Settings())
    processor = BatchProcessor(engine, Metrics())

    def jobs(start: int) -> list:
        uploads = [Upload(images[(start + i) % len(images)]) for i in range(batch)]
        return [Job(up, inspect_upload(up, limits), heatmap) for up in uploads]

    def worker(stop: float) -> int:
        done = 0
        while done < 3 * batch or time.perf_counter() < stop:
            processor(jobs(done))
            done += batch
        return done

    processor(jobs(0))  # warm-up
    with ThreadPoolExecutor(engine.workers) as pool:
        start = time.perf_counter()
        total = sum(pool.map(worker, [start + seconds] * engine.workers))
        return total / (time.perf_counter() - start)


def raw_throughput(engine, batch: int, seconds: float = 5.0) -> float:
    """Images/s of the model as the service runs it, without the service: ``calibration.measure`` at ``batch``."""
    from service import calibration

    return calibration.measure(engine, (batch,), min_seconds=seconds)[0].images_per_s


def one_call_at_a_time(engine) -> tuple[int, float, float]:
    """The plain way, for comparison: one worker with torch's threads on every core, calibrated on its own.

    Returns its batch size, its delay (ms) and its raw images/s at that batch size.
    """
    from service import calibration
    from service.inference import Engine

    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        single = Engine(engine.model, engine.card, engine.device, workers=1, graph=engine.graph is not None)
        rows = calibration.measure(single, tuple(b for b in calibration.DEFAULT_SIZES if b <= 16))
        batch, delay_ms = calibration.choose(rows)
        return batch, delay_ms, next(r.images_per_s for r in rows if r.batch_size == batch)
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    main(parser.parse_args())
