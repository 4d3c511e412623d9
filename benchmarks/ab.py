"""This tree's service against another revision's, at saturation, in alternating rounds: ``python -m benchmarks.ab``.

Both services start once (``ilcs serve`` on loopback, each from its own source tree: the
baseline is ``git archive``'d into a temporary folder), with their own default settings but
the same batch limits. Then, round after round, the same closed-loop client of
``benchmarks.load`` (one HTTP/1.1 connection per client, ``POST /classify`` with a NEU
JPEG and the default gray heatmap) loads one service, then the other, the order alternating,
so a change of the machine's load over the run falls on both alike. The idle service sits
between its rounds. ``reports/service-ab.md`` gets each round and the ratio of medians.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import numpy as np

from benchmarks.loopback import Level, Service, load_images, request_payloads, run_level
from benchmarks.machine import machine
from benchmarks.markdown import table

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "reports" / "service-ab.md"
GOAL = 1.5  # issue 17: at least 1.5x the requests/s of the service before it


def export_revision(revision: str, into: Path) -> Path:
    """The tracked files of ``revision`` (a branch, tag or commit of this repository) under ``into``."""
    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", default="main", help="git revision of the service to compare against")
    p.add_argument("--rounds", type=int, default=4, help="saturation runs of each service, alternating")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--requests", type=int, default=800, help="requests per run")
    p.add_argument("--batch", type=int, default=16, help="ILCS_MAX_BATCH_SIZE of both")
    p.add_argument("--delay-ms", type=float, default=5.0, help="ILCS_MAX_DELAY_MS of both")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    ns = p.parse_args(argv)
    command = "python -m benchmarks.ab " + " ".join(sys.argv[1:] if argv is None else argv)
    revision = subprocess.run(["git", "rev-parse", "--short", ns.baseline], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    payloads = request_payloads(load_images())
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").is_file() else ["?"] * 3
    queue = max(256, 8 * ns.clients)
    levels: dict[str, list[Level]] = {"baseline": [], "this tree": []}
    with tempfile.TemporaryDirectory(prefix="ilcs-ab-") as tmp:
        base_tree = export_revision(ns.baseline, Path(tmp))
        trees = {"baseline": base_tree, "this tree": ROOT}
        services = {name: Service(ns.batch, ns.delay_ms, queue, PYTHONPATH=str(tree), cwd=tree)
                    for name, tree in trees.items()}  # fmt: skip
        started = []
        try:
            for svc in services.values():
                started.append(svc.__enter__())
            for svc in services.values():
                run_level(svc, payloads, clients=min(4, ns.clients), requests=50)  # warm both servers' paths
            for r in range(ns.rounds):
                order = list(services) if r % 2 == 0 else list(reversed(services))
                for name in order:
                    level = run_level(services[name], payloads, ns.clients, ns.requests)
                    levels[name].append(level)
                    print(f"round {r + 1} {name}: {level.throughput:.1f} req/s, p50 {level.percentile_ms(50):.0f} ms, "
                          f"errors {level.errors}", flush=True)  # fmt: skip
        finally:
            for svc in started:
                svc.__exit__()
    info = {"command": command, "baseline": f"{ns.baseline} ({revision})", "head": head.strip(), "load": load}
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report(info, levels, ns))
    print(f"wrote {out}")


def report(info: dict, levels: dict[str, list[Level]], ns: argparse.Namespace) -> str:
    """The rounds side by side, the ratio of the medians, and the goal."""
    base, new = (np.median([lv.throughput for lv in levels[k]]) for k in ("baseline", "this tree"))
    ratio = new / base
    m = machine()
    rows = [
        (r + 1, *(f"{lv.throughput:.1f}" for lv in (b, n)), *(f"{lv.percentile_ms(50):.0f}" for lv in (b, n)),
         f"{b.errors + n.errors}")
        for r, (b, n) in enumerate(zip(levels["baseline"], levels["this tree"], strict=True))
    ]  # fmt: skip
    verdict = "met" if ratio >= GOAL else "**missed**"
    head = (
        f"Generated by `{info['command']}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC (`benchmarks/ab.py`): this "
        f"tree ({info['head']}) against `{info['baseline']}`, on {m['cpu']}, {m['cores']}. Load average when the run "
        f"began: {' / '.join(info['load'])} (1 / 5 / 15 min); other work shared the machine, which the alternating "
        "rounds spread over both services alike."
    )
    setup = (
        f"Each run: {ns.clients} closed-loop clients, {ns.requests} `POST /classify` requests (NEU JPEGs, the "
        f"default gray heatmap), both services with their default settings but `ILCS_MAX_BATCH_SIZE={ns.batch}` and "
        f"`ILCS_MAX_DELAY_MS={ns.delay_ms}`, the same client, rounds alternating which service goes first."
    )
    header = ["round", "baseline req/s", "this tree req/s", "baseline p50 ms", "this tree p50 ms", "errors"]
    result = f"Median: **{new:.1f} against {base:.1f} requests/s, {ratio:.2f}x**; the goal of at least {GOAL}x is "
    lines = ["# Service throughput: this tree against the service before it", "", head, "", setup, "",
             table(header, rows), "", result + f"{verdict}.", ""]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
