"""Inference speed of the paper's seven models on this CPU: ``ilcs bench --models``.

Throughput and latency per image over a grid of batch sizes and inputs, for each
model on execution paths side by side: ``eager`` (fp32, NCHW, ``no_grad``), ``cl``
(channels-last, ``inference_mode``), ``jit`` (channels-last, ``torch.jit.trace``,
``freeze`` and ``optimize_for_inference``, which folds BatchNorm and fuses activations
into oneDNN kernels), ``compile`` (``torch.compile``, one compilation per shape), and the
service's backends (``service.backends``): ``frozen`` (its torch backend, a frozen TorchScript
graph), ``onnxruntime`` and ``openvino`` (the graph ``model_zoo.onnx_export`` writes, with the
service's session options). ``--rounds`` repeats the whole grid, (model, path) after (model, path),
so every path sees the same machine load; each point keeps its median round.
Each (model, path) runs in a fresh subprocess, so its peak resident memory is its own.
The run is added to ``reports/speed.json`` under its label (replacing an earlier run
of that label) and ``reports/speed.md`` is rendered from all the runs there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from benchmarks.machine import machine

__all__ = ["PATHS", "bench_point", "build_path", "main", "module_breakdown", "save_run"]

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "speed.md"
MODELS = ("resnet50", "resnet50+miam", "effnet", "effnet+miam", "mobilenet_v2", "mobilenet_v2+miam", "ilcs")
PATHS = ("eager", "cl", "jit", "compile", "frozen", "onnxruntime", "openvino")
RUNTIMES = ("frozen", "onnxruntime", "openvino")  # the service's backends
# ILCS's switchable variants for --variants: label -> (registry name, constructor arguments). The first ships.
VARIANTS: dict[str, tuple[str, dict]] = {
    "ilcs": ("ilcs", {}),
    "ilcs pool_at=early": ("ilcs", {"pool_at": "early"}),
    "ilcs downsample=pool": ("ilcs", {"downsample": "pool"}),
    "ilcs attn_layer=None": ("ilcs", {"attn_layer": None}),
    "mobilenet_v2": ("mobilenet_v2", {}),
}


# --------------------------------------------------------------------------- timing (in the worker)


def build_path(model: nn.Module, path: str, example: torch.Tensor) -> tuple[Callable, torch.Tensor]:
    """Return ``(forward, input)`` for an execution path; ``example`` fixes a traced path's shape."""
    model.eval()
    if path == "eager":
        return model, example.contiguous()
    x = example.contiguous(memory_format=torch.channels_last)
    model = model.to(memory_format=torch.channels_last)
    if path == "cl":
        return model, x
    if path == "jit":
        with torch.inference_mode(False), torch.no_grad():
            traced = torch.jit.trace(model, x, check_trace=False)
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced)), x
    if path == "compile":
        return torch.compile(model, dynamic=False), x
    if path in RUNTIMES:
        return _runtime(model, path, example)
    msg = f"unknown path {path!r}; choose one of {', '.join(PATHS)}"
    raise ValueError(msg)


def _runtime(model: nn.Module, path: str, example: torch.Tensor) -> tuple[Callable, torch.Tensor]:
    """One of the service's backends on ``model``, with this process's torch thread count, one worker."""
    from model_zoo.checkpoint import ModelCard
    from model_zoo.onnx_export import default_cache_dir
    from service.backends import build_runner

    size, threads = example.shape[-1], torch.get_num_threads()
    # The weights are seeded, so the same for every round: the graph is exported once per model and input size.
    digest = hashlib.sha256(b"".join(t.detach().numpy().tobytes() for t in model.state_dict().values()))
    card = ModelCard(arch=f"bench-{size}", labels=[], input_size=size, in_chans=example.shape[1],
                     weights_sha256=digest.hexdigest())  # fmt: skip
    runner = build_runner(path.replace("frozen", "torch"), model, card, torch.device("cpu"), threads, 1,
                          graph=True, cache_dir=default_cache_dir() / "bench")  # fmt: skip
    return runner, example.contiguous(memory_format=torch.channels_last)


def bench_point(forward: Callable, x: torch.Tensor, path: str, warmup: int = 3, reps: int = 10, min_time: float = 1.0):
    """Time ``forward(x)`` one call at a time, after warm-up, until ``reps`` calls and ``min_time`` seconds."""
    # A frozen TorchScript module runs under no_grad; inference_mode tensors cannot enter it on every torch.
    with torch.no_grad() if path in ("eager", "jit", *RUNTIMES) else torch.inference_mode():
        t0 = time.perf_counter()
        forward(x)  # the first call pays for tracing, freezing or compiling
        first = time.perf_counter() - t0
        for _ in range(warmup - 1):
            forward(x)
        times: list[float] = []
        deadline = time.perf_counter() + min_time
        while len(times) < reps or (time.perf_counter() < deadline and len(times) < 200):
            t0 = time.perf_counter()
            forward(x)
            times.append(time.perf_counter() - t0)
    q1, med, q3 = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else times * 3
    b = x.shape[0]
    return {
        "batch": b, "size": x.shape[-1], "reps": len(times), "median_s": med, "q1_s": q1, "q3_s": q3,
        "min_s": min(times), "max_s": max(times), "img_per_s": b / med, "ms_per_img": 1e3 * med / b,
        "first_call_s": first,
    }  # fmt: skip


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def worker(name: str, kwargs: dict, path: str, sizes: Sequence[int], batches: Sequence[int], threads: int, **timing):
    """Measure one (model, path) over the grid in this process (a fresh one, for its own peak memory)."""
    import warnings

    from model_zoo.profile import count_flops
    from model_zoo.registry import create_model

    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit's deprecation notices
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # the square-map check, constant here
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rss_start = _maxrss_mb()
    model = create_model(name, **kwargs).eval()
    gflops = {s: count_flops(model, s) / 1e9 for s in sizes}
    points = []
    # Smallest work first, so the running maxrss after each point is that point's peak or an earlier one's.
    for size, batch in sorted(((s, b) for s in sizes for b in batches), key=lambda sb: sb[0] ** 2 * sb[1]):
        forward, x = build_path(model, path, torch.randn(batch, 3, size, size))
        point = bench_point(forward, x, path, **timing)
        points.append(point | {"peak_rss_mb": round(_maxrss_mb(), 1), "gflop_per_s": gflops[size] * point["img_per_s"]})
        print(f"  {name} {path} b={batch} s={size}: {point['img_per_s']:.1f} img/s", file=sys.stderr, flush=True)
    return {
        "model": name, "kwargs": kwargs, "path": path, "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in model.parameters()), "gflops": gflops, "rss_start_mb": round(rss_start, 1),
        "peak_rss_mb": round(_maxrss_mb(), 1), "points": points,
    }  # fmt: skip


def run_in_subprocess(spec: dict) -> dict:
    """Run ``worker(**spec)`` in a fresh interpreter and return its result."""
    cmd = [sys.executable, "-m", "benchmarks.models", "--worker", json.dumps(spec)]
    out = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- where the time goes


def module_breakdown(model: nn.Module, x: torch.Tensor, iters: int = 10) -> list[tuple[str, str, float]]:
    """Milliseconds per forward in each outermost module of a known kind, plus the rest; sorted by time.

    On a CPU a forward is synchronous, so the wall clock between a module's pre- and
    post-hook is its time; a module inside a timed one is not timed again.
    """
    from torchvision.ops.misc import Conv2dNormActivation

    from model_zoo.layers import MIAM, ChannelAttention, ConvBnAct, SpatialAttention

    kinds = {ConvBnAct: "conv+bn+act", Conv2dNormActivation: "conv+bn+act", ChannelAttention: "channel attention",
             SpatialAttention: "spatial attention", MIAM: "MIAM", nn.MaxPool2d: "max pool", nn.Conv2d: "conv",
             nn.BatchNorm2d: "bn", nn.ReLU6: "act", nn.ReLU: "act", nn.Linear: "linear"}  # fmt: skip
    totals: dict[str, float] = {}
    labels: dict[str, str] = {}
    handles, stack = [], []
    for name, mod in model.named_modules():
        kind = kinds.get(type(mod))
        if kind and not any(name.startswith(c + ".") for c in labels):
            labels[name] = kind
            handles.append(mod.register_forward_pre_hook(lambda *_, n=name: stack.append((n, time.perf_counter()))))
            handles.append(mod.register_forward_hook(lambda *_: _stop(stack, totals)))
    with torch.inference_mode():
        model(x)
        totals.clear()
        t0 = time.perf_counter()
        for _ in range(iters):
            model(x)
        total = time.perf_counter() - t0
    for h in handles:
        h.remove()
    rows = [(n, labels[n], 1e3 * t / iters) for n, t in totals.items()]
    other = 1e3 * total / iters - sum(r[2] for r in rows)
    rows.append(("(between modules: element-wise products and sums, head pooling)", "other", other))
    return sorted(rows, key=lambda r: -r[2])


def _stop(stack: list, totals: dict[str, float]) -> None:
    name, t0 = stack.pop()
    totals[name] = totals.get(name, 0.0) + time.perf_counter() - t0


def profile(name: str, size: int, batch: int, threads: int, iters: int = 10) -> dict:
    """Where one model's channels-last eager forward goes: per kind, the ten costliest modules, the operators."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from model_zoo.registry import create_model

    torch.set_num_threads(threads)
    model = create_model(name).eval().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    rows = module_breakdown(model, x, iters)
    kinds: dict[str, float] = {}
    for _, kind, ms in rows:
        kinds[kind] = kinds.get(kind, 0.0) + ms
    with torch.inference_mode(), torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(iters):
            model(x)
    operators = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=36)
    return {
        "batch": batch, "size": size, "threads": threads, "total_ms": sum(r[2] for r in rows),
        "kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1])), "modules": rows[:10], "operators": operators,
    }  # fmt: skip


# --------------------------------------------------------------------------- command line


def save_run(json_path: Path, run: dict) -> list[dict]:
    """Add ``run`` to the runs kept in ``json_path``, replacing an earlier run of the same label; return them."""
    runs = json.loads(json_path.read_text())["runs"] if json_path.exists() else []
    runs = [r for r in runs if r["label"] != run["label"]] + [run]
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    return runs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.models", description=__doc__.split("\n")[0])
    p.add_argument("--label", help="the run's name in the report (default: from threads and models)")
    p.add_argument("--models", nargs="+", default=list(MODELS), help="registry names (default: the seven)")
    p.add_argument("--variants", action="store_true", help="time ILCS's switchable variants and MobileNetV2 instead")
    p.add_argument("--paths", nargs="+", default=["eager", "jit"], choices=PATHS)
    p.add_argument("--sizes", type=int, nargs="+", default=[160, 200, 300])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--threads", type=int, nargs="+", default=[os.cpu_count()], help="one run per thread count")
    p.add_argument("--rounds", type=int, default=1, help="repeat the grid, paths interleaved; median round per point")
    p.add_argument("--compile-models", nargs="*", default=["ilcs", "mobilenet_v2"], help="also timed on `compile`")
    p.add_argument("--compile-batches", type=int, nargs="*", default=[1, 16], help="batch sizes of `compile`")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--reps", type=int, default=10, help="at least this many timed calls per point")
    p.add_argument("--min-time", type=float, default=1.0, help="and at least this many seconds per point")
    p.add_argument("--profile-models", nargs="*", default=["ilcs", "mobilenet_v2"], help="where their time goes")
    p.add_argument("--profile-size", type=int, default=200)
    p.add_argument("--profile-batch", type=int, default=16)
    p.add_argument("--out", default=str(REPORT), help="the report; its runs are kept beside it as .json")
    p.add_argument("--render", action="store_true", help="only render the report from its .json")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def _label(ns: argparse.Namespace, threads: int) -> str:
    what = "ILCS variants" if ns.variants else "the seven models" if len(ns.models) == 7 else ", ".join(ns.models)
    return f"{ns.label + ', ' if ns.label else ''}{threads} thread{'s' * (threads != 1)}: {what}"


def measure(ns: argparse.Namespace, command: str, progress: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Time the grid the options ask for, each (model, path) in its own process; one run per thread count.

    With ``--rounds`` above 1 the grid is repeated whole, thread counts and paths interleaved, so a
    change of the machine's load over the run falls on every path alike; each point keeps its median round.
    ``progress`` is given the runs so far after each thread count of each round (an interrupted run keeps them).
    """
    jobs = list(VARIANTS.values()) if ns.variants else [(m, {}) for m in ns.models]
    timing = {"warmup": ns.warmup, "reps": ns.reps, "min_time": ns.min_time}
    specs = []
    for name, kwargs in jobs:
        for path in [*ns.paths, *(["compile"] if name in ns.compile_models and "compile" not in ns.paths else [])]:
            batches = ns.compile_batches if path == "compile" and ns.compile_batches else ns.batches
            specs.append({"name": name, "kwargs": kwargs, "path": path, "sizes": ns.sizes, "batches": batches})
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = [f"{x:.2f}" for x in os.getloadavg()]  # other work on the machine, for the report
    names = [] if ns.variants else [m for m in ns.profile_models if m in ns.models]
    profiles = {threads: {m: profile(m, ns.profile_size, ns.profile_batch, threads) for m in names}
                for threads in ns.threads}  # fmt: skip
    rounds: dict[tuple[int, int], list[dict]] = {}
    runs: list[dict] = []
    for r in range(ns.rounds):
        for threads in ns.threads:
            for i, spec in enumerate(specs):
                print(f"bench: round {r + 1}, {threads} thread(s), {spec['name']} {spec['kwargs'] or ''} "
                      f"{spec['path']}", file=sys.stderr, flush=True)  # fmt: skip
                rounds.setdefault((threads, i), []).append(run_in_subprocess(spec | {"threads": threads, **timing}))
            runs = [
                {
                    "label": _label(ns, t),
                    "command": command,
                    "date": date,
                    "rounds": len(rounds[(t, 0)]),
                    "load": load,
                    "machine": machine() | {"threads": t} | _runtime_versions(),
                    "results": [median_round(rounds[(t, i)]) for i in range(len(specs))],
                    "profiles": profiles[t],
                }
                for t in ns.threads
                if (t, 0) in rounds and len(rounds[(t, len(specs) - 1)]) == len(rounds[(t, 0)])
            ]
            if progress is not None:
                progress(runs)
    return runs


def _runtime_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("onnxruntime", "openvino"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def median_round(results: list[dict]) -> dict:
    """One (model, path)'s rounds as one result: each point from its median round, all rounds' img/s beside it."""
    merged = dict(results[0], peak_rss_mb=max(r["peak_rss_mb"] for r in results))
    points = []
    for i in range(len(results[0]["points"])):
        seen = sorted((r["points"][i] for r in results), key=lambda p: p["img_per_s"])
        points.append(seen[(len(seen) - 1) // 2] | {"rounds_img_per_s": [r["points"][i]["img_per_s"] for r in results]})
    merged["points"] = points
    return merged


def main(args: Sequence[str] | argparse.Namespace | None = None) -> None:
    """``python -m benchmarks.models [options]``, or ``ilcs bench --models`` (its namespace: only ``out`` is read)."""
    if isinstance(args, argparse.Namespace):
        ns = build_parser().parse_args(["--out", args.out] if getattr(args, "out", None) else [])
        command = "ilcs bench --models" + (f" --out {args.out}" if getattr(args, "out", None) else "")
    else:
        words = list(sys.argv[1:] if args is None else args)
        ns = build_parser().parse_args(words)
        command = " ".join(["python -m benchmarks.models", *words])
    if ns.worker:
        print(json.dumps(worker(**json.loads(ns.worker))))
        return
    out = Path(ns.out)
    if ns.render:
        _write(out, [])
    else:
        measure(ns, command, progress=lambda runs: _write(out, runs))
    print(f"wrote {out} and {out.with_suffix('.json')}")


def _write(out: Path, runs: list[dict]) -> None:
    """Keep ``runs`` in the report's .json (each replacing its label's earlier run) and render the report."""
    from benchmarks.speed_report import render_speed

    for run in runs:
        save_run(out.with_suffix(".json"), run)
    kept = json.loads(out.with_suffix(".json").read_text())["runs"]
    out.write_text(render_speed(kept, json_name=out.with_suffix(".json").name))


if __name__ == "__main__":
    main()
