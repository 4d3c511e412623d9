"""Inference speed of the paper's seven models on this CPU: ``ilcs bench --models``.

What "lightweight" costs on a real machine: throughput (images/s) and latency per
image at batch 1, 4 and 16 and input 160 (shipped), 200 and 300 (the paper's sizes),
for each model of Table 2, on two execution paths side by side:

* ``eager``: fp32, NCHW, ``torch.no_grad``, the model as the registry builds it;
* ``jit``: channels-last, ``torch.inference_mode``, ``torch.jit.trace`` then
  ``torch.jit.freeze`` and ``optimize_for_inference`` (folds BatchNorm into the
  convolutions and fuses the activations into oneDNN kernels), the fastest CPU path
  we could build without a new dependency;
* ``cl`` (channels-last + ``inference_mode``, still eager) and ``compile``
  (``torch.compile``, inductor) on request: ``compile`` recompiles for every input
  shape, at tens of seconds each on two cores, so it is not in the default grid.

Each (model, path) runs in a fresh subprocess, so its peak resident memory
(``getrusage`` maxrss, which sees torch's own allocator, unlike ``tracemalloc``) is
its own. Each (batch, size) point is warmed up, then timed one forward call at a
time until both ``--reps`` calls and ``--min-time`` seconds are reached; the report
gives the median and the inter-quartile range and min-max of those calls.

``--profile MODEL`` prints torch.profiler's operator table and a per-module
breakdown (where the time goes); ``--variants`` times ILCS's switchable variants.
``python -m benchmarks.models`` with no arguments runs the default grid and writes
``reports/speed.md`` and ``reports/speed.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

__all__ = ["PATHS", "bench_point", "build_path", "main", "module_breakdown", "profile_table", "render_report"]

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "speed.md"
MODELS = ("resnet50", "resnet50+miam", "effnet", "effnet+miam", "mobilenet_v2", "mobilenet_v2+miam", "ilcs")
PATHS = ("eager", "cl", "jit", "compile")
DEFAULT_PATHS = ("eager", "jit")
# ILCS variants for --variants: name -> (registry name, constructor arguments). The first is what ships.
VARIANTS: dict[str, tuple[str, dict]] = {
    "ilcs": ("ilcs", {}),
    "ilcs pool_at=early": ("ilcs", {"pool_at": "early"}),
    "ilcs downsample=pool": ("ilcs", {"downsample": "pool"}),
    "ilcs miam=False": ("ilcs", {"miam": False}),
    "mobilenet_v2": ("mobilenet_v2", {}),
}


# --------------------------------------------------------------------------- measuring (in the worker)


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
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
        return frozen, x
    if path == "compile":
        return torch.compile(model, dynamic=False), x
    msg = f"unknown path {path!r}; choose one of {', '.join(PATHS)}"
    raise ValueError(msg)


def _context(path: str):
    # TorchScript graphs are traced and run under no_grad; inference_mode tensors cannot enter a frozen
    # module's profiling executor on every torch version, so jit keeps no_grad (it records no graph either way).
    return torch.no_grad() if path in ("eager", "jit") else torch.inference_mode()


def _quantiles(xs: Sequence[float]) -> tuple[float, float, float]:
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[1], q[2]


def bench_point(
    forward: Callable,
    x: torch.Tensor,
    path: str,
    warmup: int = 3,
    reps: int = 10,
    min_time: float = 1.0,
    max_reps: int = 200,
) -> dict:
    """Time ``forward(x)`` one call at a time after ``warmup`` calls; return the per-call statistics."""
    with _context(path):
        t0 = time.perf_counter()
        forward(x)  # the first call pays for tracing, freezing or compiling
        first = time.perf_counter() - t0
        for _ in range(warmup - 1):
            forward(x)
        times: list[float] = []
        deadline = time.perf_counter() + min_time
        while len(times) < reps or (time.perf_counter() < deadline and len(times) < max_reps):
            t0 = time.perf_counter()
            forward(x)
            times.append(time.perf_counter() - t0)
    q1, med, q3 = _quantiles(times)
    b = x.shape[0]
    return {
        "batch": b,
        "size": x.shape[-1],
        "reps": len(times),
        "median_s": med,
        "q1_s": q1,
        "q3_s": q3,
        "min_s": min(times),
        "max_s": max(times),
        "img_per_s": b / med,
        "first_call_s": first,
        "ms_per_img": 1e3 * med / b,
    }


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def count_gflops(model: nn.Module, size: int) -> float:
    """GFLOPs (two per multiply-add, convolutions and matmuls only) of one image, as ``model_zoo`` counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def worker(
    name: str,
    kwargs: dict,
    path: str,
    sizes: Sequence[int],
    batches: Sequence[int],
    threads: int,
    warmup: int,
    reps: int,
    min_time: float,
) -> dict:
    """Measure one (model, path) over the grid, in this process; meant to run in a fresh subprocess."""
    import warnings

    from model_zoo.registry import create_model

    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit's deprecation notices, once per call
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # the square-map check, constant here
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rss_start = _rss_mb()
    model = create_model(name, **kwargs).eval()
    params = sum(p.numel() for p in model.parameters())
    gflops = {s: count_gflops(model, s) for s in sizes}
    rss_model = _rss_mb()
    points = []
    # Smallest work first, so the running maxrss after each point is that point's peak or an earlier one's.
    for size, batch in sorted(((s, b) for s in sizes for b in batches), key=lambda sb: sb[0] ** 2 * sb[1]):
        t0 = time.perf_counter()
        forward, x = build_path(model, path, torch.randn(batch, 3, size, size))
        setup = time.perf_counter() - t0
        point = bench_point(forward, x, path, warmup=warmup, reps=reps, min_time=min_time)
        point |= {
            "setup_s": round(setup, 2),
            "peak_rss_mb": round(_maxrss_mb(), 1),
            "gflop_per_s": gflops[size] * point["img_per_s"],
        }
        points.append(point)
        print(
            f"  {name:18s} {path:7s} b={batch:2d} s={size}: {point['img_per_s']:8.1f} img/s, "
            f"{point['ms_per_img']:7.2f} ms/img",
            file=sys.stderr,
            flush=True,
        )
    return {
        "model": name,
        "kwargs": kwargs,
        "path": path,
        "threads": torch.get_num_threads(),
        "params": params,
        "gflops": gflops,
        "rss_start_mb": round(rss_start, 1),
        "rss_model_mb": round(rss_model, 1),
        "peak_rss_mb": round(_maxrss_mb(), 1),
        "points": points,
    }


def run_in_subprocess(
    name: str, kwargs: dict, path: str, args: argparse.Namespace, batches: Sequence[int] | None = None
) -> dict:
    """Run ``worker`` in a fresh interpreter (its own maxrss) and return its JSON result."""
    spec = json.dumps(
        {
            "name": name,
            "kwargs": kwargs,
            "path": path,
            "sizes": args.sizes,
            "batches": list(batches or args.batches),
            "threads": args.threads,
            "warmup": args.warmup,
            "reps": args.reps,
            "min_time": args.min_time,
        }
    )
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.models", "--worker", spec],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- where the time goes


def profile_table(model: nn.Module, x: torch.Tensor, iters: int = 10, row_limit: int = 18) -> str:
    """torch.profiler's operator table (self CPU time, descending) over ``iters`` forward passes."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        for _ in range(3):
            model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(iters):
                model(x)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=row_limit, max_name_column_width=36)


def module_breakdown(model: nn.Module, x: torch.Tensor, iters: int = 10) -> list[tuple[str, str, float]]:
    """Milliseconds per forward spent in each concept (conv+BN+act, attention, pooling, linear).

    Forward hooks time the outermost modules of the kinds below (on CPU a forward is synchronous,
    so the wall clock between a module's pre- and post-hook is its time); a module inside a timed
    one is not timed again. Returns ``(module path, kind, ms per forward)`` sorted by time.
    """
    from model_zoo.layers import MIAM, ChannelAttention, SpatialAttention
    from model_zoo.models.ilcs import ConvBnAct

    kinds = {
        ConvBnAct: "conv+bn+act",
        ChannelAttention: "channel attention",
        SpatialAttention: "spatial attention",
        MIAM: "MIAM",
        nn.MaxPool2d: "max pool",
        nn.Conv2d: "conv",
        nn.BatchNorm2d: "bn",
        nn.ReLU6: "act",
        nn.ReLU: "act",
        nn.Linear: "linear",
    }
    try:
        from torchvision.ops.misc import Conv2dNormActivation

        kinds[Conv2dNormActivation] = "conv+bn+act"
    except ImportError:  # pragma: no cover
        pass
    totals: dict[str, float] = {}
    labels: dict[str, str] = {}
    handles, stack = [], []

    def timed(name: str) -> None:
        mod = dict(model.named_modules())[name]

        def pre(*_):
            stack.append((name, time.perf_counter()))

        def post(*_):
            n, t0 = stack.pop()
            totals[n] = totals.get(n, 0.0) + time.perf_counter() - t0

        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post))

    chosen: list[str] = []
    for name, mod in model.named_modules():
        kind = next((k for t, k in kinds.items() if type(mod) is t), None)
        if kind and not any(name.startswith(c + ".") for c in chosen):
            chosen.append(name)
            labels[name] = kind
            timed(name)
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
    covered = sum(r[2] for r in rows)
    rows.append(
        (
            "(everything else: element-wise products and sums between modules, head pooling)",
            "other",
            1e3 * total / iters - covered,
        )
    )
    return sorted(rows, key=lambda r: -r[2])


def summarise_breakdown(rows: list[tuple[str, str, float]]) -> dict[str, float]:
    """Milliseconds per kind (conv+bn+act, spatial attention, ...)."""
    out: dict[str, float] = {}
    for _, kind, ms in rows:
        out[kind] = out.get(kind, 0.0) + ms
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


# --------------------------------------------------------------------------- report


def machine_info(threads: int) -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    import torchvision

    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        "interop_threads": torch.get_num_interop_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "isa": torch.backends.cpu.get_cpu_capability(),
        "load_before": os.getloadavg(),
    }


def _point(results: list[dict], model: str, path: str, size: int, batch: int) -> dict | None:
    for r in results:
        if r["model"] == model and r["path"] == path and not r["kwargs"]:
            for p in r["points"]:
                if p["size"] == size and p["batch"] == batch:
                    return p
    return None


def _fastest(points: Sequence[dict | None]) -> dict | None:
    return max((p for p in points if p), key=lambda p: p["img_per_s"], default=None)


def _best_over_eager(points: Sequence[dict | None], paths: Sequence[str]) -> str:
    eager = points[list(paths).index("eager")] if "eager" in paths else None
    best = _fastest(points)
    return "–" if not (eager and best) else f"{best['img_per_s'] / eager['img_per_s']:.2f}x"


def _spread(p: dict) -> str:
    b = p["batch"]
    return f"{b / p['q3_s']:.0f}–{b / p['q1_s']:.0f}"


def _share(rows: list[tuple[str, str, float]], keep: Callable[[str, str], bool]) -> float:
    total = sum(r[2] for r in rows)
    return 100 * sum(ms for name, kind, ms in rows if keep(name, kind)) / total if total else float("nan")


def verdict(results: list[dict], breakdowns: dict | None = None, a: str = "ilcs", b: str = "mobilenet_v2") -> list[str]:
    """Data-driven answer to "is ILCS faster than MobileNetV2 here, by how much, and why"."""
    sizes = sorted({p["size"] for r in results for p in r["points"]})
    batches = sorted({p["batch"] for r in results for p in r["points"]})
    paths = [p for p in PATHS if any(r["path"] == p for r in results)]
    eager, best = {}, {}
    for s in sizes:
        for n in batches:
            pa = [_point(results, a, p, s, n) for p in paths]
            pb = [_point(results, b, p, s, n) for p in paths]
            if "eager" in paths and pa[paths.index("eager")] and pb[paths.index("eager")]:
                eager[(s, n)] = pa[paths.index("eager")]["img_per_s"] / pb[paths.index("eager")]["img_per_s"]
            fa, fb = _fastest(pa), _fastest(pb)
            if fa and fb:
                best[(s, n)] = (fa["img_per_s"] / fb["img_per_s"], paths[pa.index(fa)], paths[pb.index(fb)])
    if not best:
        return []
    lines = [f"## Verdict: is {a} faster than {b} on this CPU?", ""]
    if eager:
        lo, hi = min(eager.values()), max(eager.values())
        k = sum(v > 1 for v in eager.values())
        lines.append(
            f"- Eager fp32: {a}/{b} throughput {lo:.2f}x to {hi:.2f}x over the {len(eager)} (input, batch) "
            f"points; {a} is faster at {k} of them."
        )
    r = [v[0] for v in best.values()]
    k = sum(v > 1 for v in r)
    lines.append(
        f"- Each model on its own fastest path: {min(r):.2f}x to {max(r):.2f}x; {a} is faster at {k} of "
        f"{len(r)} points."
    )
    for key in [(s, max(batches)) for s in sizes]:
        if key in best:
            v, pa, pb = best[key]
            lines.append(f"  - input {key[0]}, batch {key[1]}: {v:.2f}x ({a} on `{pa}`, {b} on `{pb}`).")
    met = [k for k, v in best.items() if v[0] >= 1.5]
    lines.append(
        "- The issue's goal, 1.5x at equal input and batch: "
        + (f"met at {len(met)} of {len(best)} points." if met else "**not met at any point**.")
    )
    ra = next((x for x in results if x["model"] == a and x["path"] == "eager" and not x["kwargs"]), None)
    rb = next((x for x in results if x["model"] == b and x["path"] == "eager" and not x["kwargs"]), None)
    s_ref = 200 if 200 in sizes else sizes[-1]
    if ra and rb:
        ga, gb = (float(x["gflops"].get(str(s_ref), x["gflops"].get(s_ref))) for x in (ra, rb))
        pa, pb = _point(results, a, "eager", s_ref, max(batches)), _point(results, b, "eager", s_ref, max(batches))
        lines.append(
            f"- Work is not time: at {s_ref}x{s_ref} {a} needs {ga:.2f} GFLOPs per image, {b} {gb:.2f} "
            f"({ga / gb:.2f}x), with {ra['params'] / 1e6:.2f}M against {rb['params'] / 1e6:.2f}M parameters; yet on "
            f"eager fp32 at batch {max(batches)} {a} executes {pa['gflop_per_s']:.0f} GFLOP/s and {b} "
            f"{pb['gflop_per_s']:.0f} GFLOP/s."
        )
    rows = (breakdowns or {}).get(a)
    if rows:
        attn = _share(rows, lambda n, k: k in ("spatial attention", "channel attention", "MIAM"))
        pool = _share(rows, lambda n, k: k == "max pool")
        dw = _share(rows, lambda n, k: n.endswith((".conv2", ".conv3")))
        first = _share(rows, lambda n, k: n.startswith("lcs.0."))
        lines.append(
            f"- Why ({a}, eager channels-last profile below): its attention modules take {attn:.0f}% of the forward "
            f"time and its max pools {pool:.0f}%, while holding almost none of its FLOPs: they are channel and "
            "spatial reductions, sigmoids and gate products over whole feature maps, a few operations per byte "
            f"moved, so memory-bound. The depthwise 1x3/3x1 convs take {dw:.0f}% (also memory-bound: 3 MACs per "
            f"value read). The first block, which runs at the full input resolution, takes {first:.0f}% alone."
        )
    ca = [_point(results, a, p, s_ref, max(batches)) for p in paths]
    cb = [_point(results, b, p, s_ref, max(batches)) for p in paths]
    if "eager" in paths and "compile" in paths and all(x for x in (ca[0], cb[0])):
        ia, ib = paths.index("compile"), paths.index("eager")
        if ca[ia] and cb[ia]:
            lines.append(
                f"- `torch.compile` fuses those element-wise chains into single passes over memory: at {s_ref}, "
                f"batch {max(batches)}, it speeds {a} up {ca[ia]['img_per_s'] / ca[ib]['img_per_s']:.2f}x over eager "
                f"and {b} {cb[ia]['img_per_s'] / cb[ib]['img_per_s']:.2f}x."
            )
    return lines + [""]


def render_report(
    results: list[dict],
    machine: dict,
    command: str,
    notes: Sequence[str] = (),
    extra_sections: Sequence[str] = (),
    breakdowns: dict | None = None,
) -> str:
    sizes = sorted({p["size"] for r in results for p in r["points"]})
    batches = sorted({p["batch"] for r in results for p in r["points"]})
    paths = [p for p in PATHS if any(r["path"] == p for r in results)]
    models = [m for m in MODELS if any(r["model"] == m for r in results)]
    lines = [
        "# Inference speed of the seven models on this CPU",
        "",
        f"Generated by `{command}` ({time.strftime('%Y-%m-%d %H:%M %Z')}).",
        "",
        f"- Machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs (KVM guest), ISA level "
        f"{machine['isa']}; torch {machine['torch']}, torchvision {machine['torchvision']}, "
        f"Python {machine['python']}, "
        f"oneDNN {'on' if machine['mkldnn'] else 'off'}.",
        f"- Threads: {machine['threads']} intra-op, {machine['interop_threads']} inter-op. fp32 throughout.",
        "- Each point: warm-up calls, then one forward call at a time until at least the set number of calls "
        "and seconds; throughput = batch / median call time; spread = throughput at the call-time quartiles "
        "(IQR). Inputs are random tensors of the given size (speed does not depend on the pixels).",
        "- Peak memory: maxrss of a fresh process per (model, path) over its whole grid, so it is the peak of "
        "the largest point (batch 16 at the largest size); it includes ~the `rss start` of the interpreter "
        "with torch loaded.",
        *[f"- {n}" for n in notes],
        "",
        *verdict(results, breakdowns),
        "## Throughput and latency",
        "",
        "Cells: images/s, median (its IQR) and ms per image, median. *best/eager*: the fastest path's throughput "
        "over eager's.",
        "",
    ]
    for s in sizes:
        lines += [
            f"### {s}x{s}",
            "",
            "| model | batch | " + " | ".join(f"`{p}` img/s (IQR) | `{p}` ms/img" for p in paths) + " | best/eager |",
            "| --- | ---: | " + " | ".join("---: | ---:" for _ in paths) + " | ---: |",
        ]
        for m in models:
            for b in batches:
                pts = [_point(results, m, p, s, b) for p in paths]
                cells = [
                    "– | –"
                    if p is None
                    else f"{p['img_per_s']:.1f} ({_spread(p)}){' †' if p.get('rerun') else ''} | {p['ms_per_img']:.1f}"
                    for p in pts
                ]
                lines.append(f"| {m} | {b} | " + " | ".join(cells) + f" | {_best_over_eager(pts, paths)} |")
        lines.append("")
    lines += [
        "## ILCS versus MobileNetV2: throughput ratio at the same input and batch",
        "",
        "Per path, and *best vs best*: each model on its own fastest path. The issue's goal is 1.5x.",
        "",
        "| input | batch | " + " | ".join(f"`{p}`" for p in paths) + " | best vs best |",
        "| --- | ---: | " + " | ".join("---:" for _ in paths) + " | ---: |",
    ]
    for s in sizes:
        for b in batches:
            a = [_point(results, "ilcs", p, s, b) for p in paths]
            m = [_point(results, "mobilenet_v2", p, s, b) for p in paths]
            cells = [
                "–" if not (x and y) else f"{x['img_per_s'] / y['img_per_s']:.2f}x" for x, y in zip(a, m, strict=True)
            ]
            fa, fm = _fastest(a), _fastest(m)
            best = "–" if not (fa and fm) else f"{fa['img_per_s'] / fm['img_per_s']:.2f}x"
            lines.append(f"| {s} | {b} | " + " | ".join(cells) + f" | {best} |")
    lines += [
        "",
        "## Size, work and memory",
        "",
        "| model | path | params (M) | "
        + " | ".join(f"GFLOPs @{s}" for s in sizes)
        + f" | achieved GFLOP/s (b{max(batches)} @{max(sizes)}) | rss start (MB) | peak rss (MB) |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in sizes) + " | ---: | ---: | ---: |",
    ]
    for r in results:
        if r["kwargs"]:
            continue
        big = _point(results, r["model"], r["path"], max(sizes), max(batches))
        lines.append(
            f"| {r['model']} | {r['path']} | {r['params'] / 1e6:.2f} | "
            + " | ".join(f"{float(r['gflops'].get(str(s), r['gflops'].get(s, float('nan')))):.2f}" for s in sizes)
            + f" | {big['gflop_per_s'] if big else float('nan'):.0f} | {r['rss_start_mb']:.0f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    lines += ["", *extra_sections]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.models", description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), help="registry names (default: the seven)")
    p.add_argument("--paths", nargs="+", default=list(DEFAULT_PATHS), choices=PATHS)
    p.add_argument("--sizes", type=int, nargs="+", default=[160, 200, 300])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--reps", type=int, default=10, help="at least this many timed calls per point")
    p.add_argument("--min-time", type=float, default=1.0, help="and at least this many seconds per point")
    p.add_argument("--out", default=str(REPORT), help="markdown report; the raw results go beside it as .json")
    p.add_argument("--note", action="append", default=[], help="a line for the report (e.g. what else was running)")
    p.add_argument("--profile", metavar="MODEL", nargs="+", help="print where each MODEL's time goes and exit")
    p.add_argument(
        "--compile-models",
        nargs="*",
        default=["ilcs", "mobilenet_v2"],
        help="models also timed on the torch.compile path (it compiles once per shape: slow on two cores)",
    )
    p.add_argument("--compile-batches", type=int, nargs="*", default=[1, 16], help="batch sizes of the compile path")
    p.add_argument(
        "--no-profile", dest="profile_in_report", action="store_false", help="leave the profile out of the report"
    )
    p.add_argument("--profile-size", type=int, default=200)
    p.add_argument("--profile-batch", type=int, default=16)
    p.add_argument("--variants", action="store_true", help="time ILCS's switchable variants against MobileNetV2")
    p.add_argument(
        "--update",
        action="store_true",
        help="merge into the existing --out .json: re-measured points replace the old ones and are marked",
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def profile_sections(
    names: Sequence[str], size: int, batch: int, threads: int
) -> tuple[str, dict[str, list[tuple[str, str, float]]]]:
    """Markdown: where each model's forward pass goes, by module kind, by module and by operator; and the rows."""
    from model_zoo.registry import create_model

    torch.set_num_threads(threads)
    args = argparse.Namespace(profile_size=size, profile_batch=batch, threads=threads)
    text, breakdowns = [], {}
    for name in names:
        model = create_model(name).eval().to(memory_format=torch.channels_last)
        x = torch.randn(args.profile_batch, 3, args.profile_size, args.profile_size).contiguous(
            memory_format=torch.channels_last
        )
        rows = breakdowns[name] = module_breakdown(model, x)
        total = sum(r[2] for r in rows)
        text += [
            f"### {name}: where a forward pass goes (batch {args.profile_batch}, {args.profile_size}x"
            f"{args.profile_size}, channels-last eager, {args.threads} threads): {total:.1f} ms per batch",
            "",
            "By kind of module:",
            "",
            "| kind | ms per batch | share |",
            "| --- | ---: | ---: |",
        ]
        text += [f"| {k} | {ms:.1f} | {100 * ms / total:.0f}% |" for k, ms in summarise_breakdown(rows).items()]
        text += ["", "Ten most expensive modules:", "", "| module | kind | ms per batch |", "| --- | --- | ---: |"]
        text += [f"| `{n}` | {k} | {ms:.1f} |" for n, k, ms in rows[:10]]
        text += ["", "torch.profiler, operators by self CPU time:", "", "```", profile_table(model, x), "```", ""]
    return "\n".join(text), breakdowns


def main(args: Sequence[str] | argparse.Namespace | None = None) -> None:
    """Entry point of ``python -m benchmarks.models`` and ``ilcs bench --models``.

    Args:
        args: Command-line words, or the ``ilcs bench`` namespace (only its ``out`` is used;
            everything else takes this module's defaults), or ``None`` for ``sys.argv``.
    """
    if isinstance(args, argparse.Namespace):
        ns = build_parser().parse_args([])
        if getattr(args, "out", None):
            ns.out = args.out
        command = "ilcs bench --models" + (f" --out {args.out}" if getattr(args, "out", None) else "")
    else:
        words = list(sys.argv[1:] if args is None else args)
        ns = build_parser().parse_args(words)
        command = " ".join(["python -m benchmarks.models", *words])
    if ns.worker:
        spec = json.loads(ns.worker)
        print(json.dumps(worker(**spec)))
        return
    if ns.profile:
        print(profile_sections(ns.profile, ns.profile_size, ns.profile_batch, ns.threads)[0])
        return
    machine = machine_info(ns.threads)
    jobs = [(name, kwargs) for name, kwargs in VARIANTS.values()] if ns.variants else [(m, {}) for m in ns.models]
    results = []
    for name, kwargs in jobs:
        paths = list(ns.paths)
        if name in ns.compile_models and "compile" not in paths:
            paths.append("compile")
        for path in paths:
            print(f"bench: {name} {kwargs or ''} {path}", file=sys.stderr, flush=True)
            batches = ns.compile_batches if path == "compile" and ns.compile_batches else ns.batches
            results.append(run_in_subprocess(name, kwargs, path, ns, batches=batches))
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    notes = list(ns.note)
    if ns.update and out.with_suffix(".json").exists():
        old = json.loads(out.with_suffix(".json").read_text())
        results = merge_results(old["results"], results)
        notes = (
            old.get("notes", [])
            + notes
            + [
                f"Points of `{command}` ({time.strftime('%H:%M')}) were merged into those of `{old['command']}`; "
                "cells marked † replace an earlier measurement."
            ]
        )
        command = old["command"] + "` then `" + command
    out.with_suffix(".json").write_text(
        json.dumps({"machine": machine, "command": command, "notes": notes, "results": results}, indent=1) + "\n"
    )
    if ns.variants:
        text = render_variants(results, machine, command, notes)
    else:
        names = [m for m in ("ilcs", "mobilenet_v2") if m in ns.models] if ns.profile_in_report else []
        extra, breakdowns = [], {}
        if names:
            prof, breakdowns = profile_sections(names, ns.profile_size, ns.profile_batch, ns.threads)
            extra = ["## Where the time goes", "", prof]
        text = render_report(results, machine, command, notes=notes, extra_sections=extra, breakdowns=breakdowns)
    out.write_text(text)
    print(f"wrote {out} and {out.with_suffix('.json')}")


def merge_results(old: list[dict], new: list[dict]) -> list[dict]:
    """Replace ``old``'s points by ``new``'s re-measured ones (same model, arguments, path, input and batch)."""
    merged = json.loads(json.dumps(old))
    for r in new:
        target = next(
            (o for o in merged if (o["model"], o["kwargs"], o["path"]) == (r["model"], r["kwargs"], r["path"])), None
        )
        if target is None:  # a model or path not measured before: added as it is
            merged.append(r)
            continue
        for p in r["points"]:
            kept = [q for q in target["points"] if (q["size"], q["batch"]) != (p["size"], p["batch"])]
            target["points"] = [*kept, p | {"rerun": len(kept) < len(target["points"])}]
    return merged


def render_variants(results: list[dict], machine: dict, command: str, notes: Sequence[str]) -> str:
    """Markdown: each ILCS variant's throughput per path, and its best path against MobileNetV2's best."""
    sizes = sorted({p["size"] for r in results for p in r["points"]})
    batches = sorted({p["batch"] for r in results for p in r["points"]})
    labels = {json.dumps([n, k], sort_keys=True): label for label, (n, k) in VARIANTS.items()}
    label_of = {id(r): labels.get(json.dumps([r["model"], r["kwargs"]], sort_keys=True), r["model"]) for r in results}
    grid = [(s, b) for s in sizes for b in batches]
    best: dict[str, dict[tuple[int, int], float]] = {}
    lines = [
        f"# ILCS variants versus MobileNetV2 (generated by `{command}`)",
        "",
        f"{machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}, fp32. Each variant is timed as "
        "in `reports/speed.md` (fresh process, warm-up, median of repeated calls).",
        *[f"- {n}" for n in notes],
        "",
        "## Images/s per path",
        "",
        "| variant | path | params (M) | " + " | ".join(f"b{b} @{s}" for s, b in grid) + " |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in grid) + " |",
    ]
    for r in results:
        label = label_of[id(r)]
        pts = {(p["size"], p["batch"]): p["img_per_s"] for p in r["points"]}
        for key, v in pts.items():
            best.setdefault(label, {})[key] = max(v, best.get(label, {}).get(key, 0.0))
        cells = [f"{pts[k]:.1f}" if k in pts else "–" for k in grid]
        lines.append(f"| {label} | `{r['path']}` | {r['params'] / 1e6:.2f} | " + " | ".join(cells) + " |")
    ref = best.get("mobilenet_v2", {})
    lines += [
        "",
        "## Each variant's fastest path over MobileNetV2's fastest path (the goal is 1.5x)",
        "",
        "| variant | " + " | ".join(f"b{b} @{s}" for s, b in grid) + " |",
        "| --- | " + " | ".join("---:" for _ in grid) + " |",
    ]
    for label, pts in best.items():
        if label == "mobilenet_v2":
            continue
        cells = [f"{pts[k] / ref[k]:.2f}x" if k in pts and k in ref else "–" for k in grid]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
