"""Where the service's CPU goes per stage of a request, under load: ``python -m benchmarks.attribution``.

``ilcs serve`` runs on loopback under the closed-loop client of ``benchmarks.loopback``
(``POST /classify``, NEU JPEGs, the gray heatmap) while py-spy (a standalone sampling
profiler: ``pip install py-spy``; ``--py-spy`` names its binary) samples every thread of
the server that is not idle. Each sample is given to the innermost stage its stack is in
(decoding, the model, the heatmap, the event loop's HTTP...), so the shares are of the
server's busy thread time. The section is written into ``reports/service-bench.md``
between two markers, which ``benchmarks.load`` keeps when it rewrites the report.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.loopback import Service, load_images, request_payloads, run_level
from benchmarks.markdown import render, table

__all__ = ["STAGES", "checkpoint_at", "keep_section", "main", "model_cpu", "split", "stage_of"]

DEFAULT_OUT = Path("reports/service-bench.md")
BEGIN, END = "<!-- attribution: begin -->", "<!-- attribution: end -->"


def _strict_check_frame() -> str:
    """The frame of ``service.intake.decode`` at its simplejpeg call (py-spy shows no frame inside C code)."""
    from service import intake

    lines, first = inspect.getsourcelines(intake.decode)
    line = first + next(i for i, text in enumerate(lines) if "simplejpeg.decode_jpeg" in text)
    return rf"^decode \(service/intake\.py:{line}\)"


# Work stages, in priority order: a sample whose stack passes through one of these frames anywhere is that
# stage's (the first listed wins: the PNG encoder inside the heatmap is "heatmap PNG", the model's backend
# code inside ``Engine.predict`` is the model's). Patterns match one frame "Class.function (package/file.py:line)".
STAGES: list[tuple[str, re.Pattern[str]]] = [
    (stage, re.compile(pattern))
    for stage, pattern in [
        ("model forward (stack, backend, softmax)", r"(^|\.)_?predict \(service/inference\.py"),
        ("JPEG strict check (simplejpeg)", _strict_check_frame()),
        (
            "decoding (Pillow, gray, reduce)",
            r"(^|\.)(decode|_plain_jpeg|_reduced|reduce_gray|_decode|to_gray) \((service|model_zoo)/",
        ),
        ("preprocessing (resize, normalise)", r"model_zoo/preprocess\.py"),
        ("heatmap PNG and base64", r"(^|\.)(encode_png|_chunk|b64encode) \("),
        ("heatmap upsampling and colour", r"model_zoo/heatmap\.py|(^|\.)render_heatmap \("),
        ("header inspection", r"(^|\.)(inspect|inspect_upload|_walk_png|_walk_jpeg) \(service/"),
        ("answer: result, validation, JSON", r"(^|\.)(build_result|serialize_response|jsonable_encoder) \("),
    ]
]
# What is left goes to the innermost frame among these layers: logging, metrics, the batcher, the service's own
# request code, the web stack, the event loop and the hand-offs between it and the model threads.
LAYERS: list[tuple[str, re.Pattern[str]]] = [
    ("access log", re.compile(r"AccessLog\._line|service/logs\.py|logging/")),
    ("metrics", re.compile(r"prometheus_client")),
    ("batcher and admission", re.compile(r"service/(batcher|admission)\.py")),
    ("request handling (routes, middleware, pipeline)", re.compile(r"service/")),
    (
        "HTTP server and framework (h11, uvicorn, Starlette, FastAPI, pydantic)",
        re.compile(r"uvicorn|h11|httptools|starlette|anyio|fastapi|pydantic"),
    ),  # fmt: skip
    (
        "event loop and thread hand-offs (asyncio, uvloop, executor)",
        re.compile(r"asyncio|uvloop|selectors|concurrent/|threading"),
    ),
]


def stage_of(frames: list[str]) -> str:
    """The stage of one sampled stack (outermost frame first)."""
    for stage, pattern in STAGES:
        if any(pattern.search(frame) for frame in frames):
            return stage
    for frame in reversed(frames):
        for layer, pattern in LAYERS:
            if pattern.search(frame):
                return layer
    return "other"


def split(collapsed: str) -> tuple[Counter, Counter]:
    """Samples per stage in py-spy's raw output (``thread;frame;...;frame count``), for the event loop's
    thread and for the others (the model workers)."""
    loop, workers = Counter(), Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        thread, *frames = stack.split(";")
        on_loop = thread.endswith(": MainThread")  # uvicorn's event loop; the model workers are ilcs-model_N
        (loop if on_loop else workers)[stage_of(frames)] += int(count)
    return loop, workers


def model_cpu(checkpoints: dict[str, Path], sizes: tuple[int, ...] = (1, 4, 8), rounds: int = 6) -> dict:
    """CPU ms per image of each checkpoint's service engine (frozen graph, one thread), per batch size.

    CPU time of the calling thread (``time.thread_time``), so other work on the machine does not count;
    the checkpoints are measured in interleaved rounds and the median kept.
    """
    import statistics
    import time

    import torch

    from service.inference import Engine

    torch.set_num_threads(1)
    engines = {name: Engine.load(path, "cpu", threads=1, workers=1, graph=True) for name, path in checkpoints.items()}
    samples: dict[str, dict[int, list[float]]] = {name: {b: [] for b in sizes} for name in engines}
    for _ in range(rounds):
        for name, engine in engines.items():
            for size in sizes:
                batch = engine.example_input(size)
                engine.predict(batch)
                calls = max(1, 16 // size)
                start = time.thread_time()
                for _ in range(calls):
                    engine.predict(batch)
                samples[name][size].append(1e3 * (time.thread_time() - start) / (calls * size))
    return {name: {b: statistics.median(v) for b, v in by_size.items()} for name, by_size in samples.items()}


def checkpoint_at(rev: str, folder: Path, stem: str = "model_zoo/checkpoints/ilcs_neu") -> Path:
    """The shipped checkpoint as it was at git revision ``rev``, written into ``folder``."""
    for suffix in (".json", ".safetensors"):
        data = subprocess.run(["git", "show", f"{rev}:{stem}{suffix}"], check=True, capture_output=True).stdout
        (folder / f"old{suffix}").write_bytes(data)
    return folder / "old"


def keep_section(report: str, previous: str) -> str:
    """``report`` with the attribution section of ``previous`` (if it has one) put back at its end."""
    if BEGIN not in previous or END not in previous:
        return report
    return report.rstrip("\n") + "\n\n" + previous[previous.index(BEGIN) : previous.index(END) + len(END)] + "\n"


def _with_section(report: str, section: str) -> str:
    block = f"{BEGIN}\n{section.strip()}\n{END}"
    if BEGIN in report and END in report:
        return report[: report.index(BEGIN)] + block + report[report.index(END) + len(END) :]
    return report.rstrip("\n") + "\n\n" + block + "\n"


def main(args: argparse.Namespace) -> None:
    """Profile the served request path under load and write the section."""
    py_spy = args.py_spy or shutil.which("py-spy")
    if not py_spy:
        raise SystemExit("py-spy not found: pip install py-spy (into any prefix) and pass --py-spy PATH")
    payloads = request_payloads(load_images())
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    env = {"ILCS_BACKEND": args.backend, "ILCS_CALIBRATE": "false"}
    raw = Path(args.samples)
    with Service(args.batch, args.delay_ms, 256, **env) as svc:
        run_level(svc, payloads, clients=4, requests=50)  # warm the server's paths
        spy = [py_spy, "record", "--pid", str(svc.proc.pid), "--duration", str(args.seconds), "--rate",
               str(args.rate), "--format", "raw", "--threads", "--nonblocking", "--output", str(raw)]  # fmt: skip
        level = {}
        driver = threading.Thread(
            target=lambda: level.update(v=run_level(svc, payloads, args.clients, seconds=args.seconds + 5))
        )
        driver.start()
        subprocess.run(spy, check=True, capture_output=True)
        driver.join()
    loop, workers = split(raw.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        from service.settings import get_settings

        old = checkpoint_at(args.baseline, Path(tmp))
        cpu = model_cpu({f"{args.baseline} (no MIAM)": old, "shipped": get_settings().checkpoint}, rounds=args.rounds)
    measured = level["v"]
    total = sum(loop.values()) + sum(workers.values())
    stages = sorted(set(loop) | set(workers), key=lambda s: -(loop[s] + workers[s]))
    rows = [(s, f"{loop[s] / total:.1%}", f"{workers[s] / total:.1%}", f"{(loop[s] + workers[s]) / total:.1%}")
            for s in stages]  # fmt: skip
    section = render(
        "attribution.md",
        command=f"python -m benchmarks.attribution --seconds {args.seconds} --clients {args.clients}",
        date=f"{datetime.now(UTC):%Y-%m-%d %H:%M}",
        load=load,
        backend=args.backend,
        batch=args.batch,
        clients=args.clients,
        throughput=f"{measured.throughput:.1f}",
        samples=total,
        rate=args.rate,
        table=table(["stage", "event loop", "model workers", "all"], rows),
        loop_share=f"{sum(loop.values()) / total:.0%}",
        baseline=args.baseline,
        rounds=args.rounds,
        model_cpu=table(
            ["checkpoint", *(f"batch {b}, ms/image" for b in next(iter(cpu.values())))],
            [(name, *(f"{v:.1f}" for v in by_size.values())) for name, by_size in cpu.items()],
        ),
    )
    out = Path(args.out)
    out.write_text(_with_section(out.read_text() if out.exists() else "", section))
    print(section)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=30, help="seconds sampled under load")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rate", type=int, default=100, help="samples per second per thread")
    parser.add_argument("--batch", type=int, default=1, help="the service's batch size (the calibrated pick)")
    parser.add_argument("--delay-ms", type=float, default=10.0)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--py-spy", default=None, help="path of the py-spy binary (default: on PATH)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds of the model CPU measure")
    parser.add_argument("--baseline", default="ef9dc56", help="git revision of the no-MIAM checkpoint compared")
    parser.add_argument("--samples", default="/tmp/ilcs-attribution-samples.txt", help="py-spy's raw output")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    main(parser.parse_args())
