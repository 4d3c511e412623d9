"""Throughput with 1, 2 and 3 replicas behind the compose file's nginx: ``python -m benchmarks.scale_out``.

Three ``ilcs serve`` replicas (the shipped checkpoint, the service's defaults) start on loopback ports,
and four nginx instances with ``deploy/nginx`` (``benchmarks.balancer``): none (the clients talk to one
replica directly), and nginx in front of the first 1, 2 and 3 replicas. Closed-loop clients
(``benchmarks.loopback.closed_loop``: one connection each, the next request when the last is answered,
``POST /classify`` with a NEU JPEG and the gray heatmap) measure each set-up in turn, round after
round, so the machine's drift (a shared VM, other jobs) falls on all of them alike. Every replica
shares the same cores: on a small machine the figures measure what the balancer costs, not
capacity. ``reports/scale-out.md`` gets the figures, the machine and its load.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks.balancer import Balancer, find_nginx
from benchmarks.loopback import Service, closed_loop, load_images, request_payloads
from benchmarks.machine import machine
from benchmarks.markdown import render, table

__all__ = ["main"]

DEFAULT_OUT = Path("reports/scale-out.md")


def _loadavg() -> str:
    path = Path("/proc/loadavg")
    return " / ".join(path.read_text().split()[:3]) if path.is_file() else "?"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(replicas: int, rounds: int, clients: int, requests: int, batch: int, delay_ms: float) -> dict:
    """Per set-up (``direct``, then nginx with 1..``replicas``): each round's req/s and latencies."""
    nginx = find_nginx()
    if nginx is None:
        sys.exit("nginx is not installed: apt-get install nginx")
    payloads = request_payloads(load_images())
    results: dict[str, dict[str, list]] = {}
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="scale-out-") as work:
        services = [stack.enter_context(Service(batch, delay_ms, queue_size=256)) for _ in range(replicas)]
        addresses = [f"{s.host}:{s.port}" for s in services]
        targets = {"direct": ("127.0.0.1", services[0].port)}
        for n in range(1, replicas + 1):
            port = _free_port()
            stack.enter_context(Balancer(nginx, Path(work) / f"nginx{n}", port, addresses[:n]))
            targets[f"nginx, {n} replica{'s' if n > 1 else ''}"] = ("127.0.0.1", port)
        for host, port in targets.values():  # warm every replica and connection path
            closed_loop(host, port, payloads, clients, 2 * clients * replicas)
        for r in range(rounds):
            for name, (host, port) in targets.items():
                seconds, latencies, statuses = closed_loop(host, port, payloads, clients, requests)
                errors = sum(statuses.values()) - statuses[200]
                row = results.setdefault(name, {"rps": [], "p50": [], "p95": [], "errors": []})
                row["rps"].append((requests - errors) / seconds)
                for q in (50, 95):  # NaN when nothing was answered 200
                    row[f"p{q}"].append(float(np.percentile(latencies, q)) * 1e3 if latencies else float("nan"))
                row["errors"].append(errors)
                print(f"round {r + 1}, {name}: {row['rps'][-1]:.1f} req/s, {errors} errors", flush=True)
    return results


def format_report(command: str, results: dict, info: dict, load_before: str, load_after: str, args) -> str:
    direct = statistics.median(results["direct"]["rps"])
    rows = []
    for name, row in results.items():
        median = statistics.median(row["rps"])
        rows.append([
            name,
            " / ".join(f"{v:.1f}" for v in row["rps"]),
            f"{median:.1f}",
            f"{100 * (median / direct - 1):+.0f}%",
            f"{statistics.median(row['p50']):.0f}",
            f"{statistics.median(row['p95']):.0f}",
            str(sum(row["errors"])),
        ])  # fmt: skip
    header = ["set-up", "req/s per round", "median req/s", "vs direct", "p50 ms", "p95 ms", "non-200"]
    return render(
        "scale_out.md",
        command=command,
        now=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        cpus=info["logical_cpus"],
        cpu=info["cpu"],
        cores=info["cores"],
        torch=info["torch"],
        load_before=load_before,
        load_after=load_after,
        rounds=args.rounds,
        batch=args.batch,
        delay_ms=args.delay_ms,
        clients=args.clients,
        requests=args.requests,
        table=table(header, rows),
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale_out", description=__doc__.split("\n")[0])
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--batch", type=int, default=1, help="ILCS_MAX_BATCH_SIZE of every replica")
    p.add_argument("--delay-ms", type=float, default=10.0, help="ILCS_MAX_DELAY_MS of every replica")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    load_before = _loadavg()
    start = time.monotonic()
    results = measure(args.replicas, args.rounds, args.clients, args.requests, args.batch, args.delay_ms)
    print(f"measured in {time.monotonic() - start:.0f} s", flush=True)
    command = "nice -n 15 python -m benchmarks.scale_out " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"
    )
    report = format_report(command, results, machine(), load_before, _loadavg(), args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
