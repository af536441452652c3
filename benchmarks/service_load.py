"""Load on the HTTP service: requests/s, latency, errors and server memory under concurrency.

Try: `python benchmarks/service_load.py --quick` (about 10 s), then
`python benchmarks/service_load.py` (20,000 requests: the memory check).

Starts `digitrec serve` on 127.0.0.1 (a free port) as a subprocess, then this process drives it
from one asyncio thread over keep-alive connections, at concurrency 1, 8 and 32, posting 280x280
canvas PNGs of MNIST test digits (synthetic.render_canvas; drawn digits when MNIST is absent).
Reports requests/s, p50/p99 latency, errors, how many answers read the right digit, and the
server's resident memory (VmRSS of it and its workers) after warm-up and at the end.

The reference, measured first in the same run: the same recognitions in this process, one
thread, stage by stage as Recognizer.recognize runs them (decode, ink signal + no-digit check,
segment, predict, JSON). Requests/s are also given as a ratio to "CPUs / recognize time",
what a server with free HTTP could do; the server's own Server-Timing header splits a
request's latency into recognition and the rest (HTTP, framework, queueing). The driver
shares the machine's cores with the server. Prints a table last; writes JSON (--json-out).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: find common.py
from common import RESULTS_DIR, format_table, write_json  # noqa: E402
from digitrec.data import synthetic

CONCURRENCY = (1, 8, 32)
FULL_REQUESTS = 20_000  # in all, spread over the concurrency levels: the memory check
QUICK_REQUESTS = 600
WARMUP = 100  # requests before the "before" memory reading: imports, caches, thread pools
IMAGES = 64  # distinct canvas PNGs, posted round-robin
PATH = "/api/v1/recognize"
START_TIMEOUT_S = 60
WORKERS = min(os.cpu_count() or 1, 8)  # recognition processes: recognition holds the GIL much of the time
TARGET = {"concurrency": 8, "rps": 300.0, "p99_ms": 50.0, "errors": 0, "memory_growth_mb": 50.0}


# ---- inputs ---------------------------------------------------------------------------------------


def canvas_pngs(n: int, data_dir: str | None) -> tuple[list[bytes], list[str], str]:
    """`n` canvas PNGs with their labels, and where they came from."""
    from digitrec.errors import DigitrecError

    rng = np.random.default_rng(0)
    try:
        from digitrec.data.mnist import load_mnist

        test = load_mnist("test", data_dir, download=False, progress=False)
        idx = rng.choice(len(test.labels), n, replace=False)
        arrays = [synthetic.render_canvas(test.images[i], rng, "black_on_white") for i in idx]
        labels, source = [str(int(test.labels[i])) for i in idx], "MNIST test digits via synthetic.render_canvas"
    except DigitrecError:
        arrays, labels = [], []
        for i in range(n):
            d = i % 10
            arrays.append(synthetic.render_canvas(synthetic.draw_digit(d, rng), rng, "black_on_white"))
            labels.append(str(d))
        source = "synthetic.draw_digit (MNIST not found)"
    return [synthetic.encode(a, "PNG") for a in arrays], labels, source


# ---- the server -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, workers: int, model: str | None) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "digitrec.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
    ]
    if model:
        cmd += ["--model", model]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {proc.stderr.read()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the server did not answer /healthz within {START_TIMEOUT_S} s")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def _tree(pid: int) -> list[int]:
    """A process and its descendants (the recognition processes)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants, MiB."""
    total = 0
    for p in _tree(pid):
        try:
            total += next(
                int(line.split()[1])
                for line in Path(f"/proc/{p}/status").read_text().splitlines()
                if line.startswith("VmRSS:")
            )
        except (OSError, StopIteration):
            continue
    return total / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants: unlike wall time, hardly
    affected by other work on a shared machine."""
    total = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


# ---- driving it -----------------------------------------------------------------------------------


async def _post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, dict, bytes]:
    """One HTTP/1.1 request on a keep-alive connection: (status, headers, body)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return int(lines[0].split()[1]), headers, body


def _server_ms(headers: dict, name: str) -> float:
    """A duration from the Server-Timing header (`queue;dur=0.05, recognize;dur=8.10`)."""
    match = re.search(rf"{name};dur=([0-9.]+)", headers.get("server-timing", ""))
    return float(match.group(1)) if match else float("nan")


async def _drive(port: int, pngs: list[bytes], labels: list[str], concurrency: int, requests: int) -> dict[str, Any]:
    requests_bytes = [
        (
            f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: image/png\r\n"
            f"Content-Length: {len(b)}\r\n\r\n"
        ).encode()
        + b
        for b in pngs
    ]
    latencies: list[float] = []
    recognize_ms: list[float] = []
    errors: list[str] = []
    correct = 0
    counter = iter(range(requests))

    async def connection() -> None:
        nonlocal correct
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # asyncio sets TCP_NODELAY
        for i in counter:  # shared: each request goes to whichever connection is free
            k = i % len(pngs)
            start = time.perf_counter()
            try:
                status, headers, body = await _post(reader, writer, requests_bytes[k])
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                errors.append(f"{type(e).__name__}: {e}")
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            latencies.append(time.perf_counter() - start)
            recognize_ms.append(_server_ms(headers, "recognize"))
            if status != 200:
                errors.append(f"HTTP {status}: {body[:200]!r}")
            elif json.loads(body)["text"] == labels[k]:
                correct += 1
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    lat = sorted(latencies) or [float("nan")]
    return {
        "concurrency": concurrency,
        "requests": requests,
        "seconds": wall,
        "rps": requests / wall,
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "server_recognize_p50_ms": statistics.median(recognize_ms) if recognize_ms else float("nan"),
        "errors": len(errors),
        "error_examples": errors[:3],
        "correct": correct / requests,
    }


def drive(port: int, pngs: list[bytes], labels: list[str], concurrency: int, requests: int) -> dict[str, Any]:
    """`requests` POSTs over `concurrency` keep-alive connections from one asyncio thread (a light
    driver: it shares the cores with the server)."""
    return asyncio.run(_drive(port, pngs, labels, concurrency, requests))


# ---- where the time goes --------------------------------------------------------------------------


def breakdown(pngs: list[bytes], model: str | None, repeats: int) -> dict[str, float]:
    """Median ms per stage of one request's work, in this process, one thread."""
    from digitrec.image.decode import load_image
    from digitrec.image.presence import looks_like_digit
    from digitrec.image.segmentation import segment, stats_and_inkmap
    from digitrec.recognition.recognizer import Recognizer

    recognizer = Recognizer.load(model, threads=1)
    stages: dict[str, list[float]] = {
        "decode": [],
        "ink signal + no-digit check": [],
        "segment": [],
        "predict": [],
        "to_dict + JSON": [],
        "recognize (all)": [],
    }
    for r in range(repeats):
        data = pngs[r % len(pngs)]
        t0 = time.perf_counter()
        image = load_image(data)
        t1 = time.perf_counter()
        stats, inkmap = stats_and_inkmap(image)
        looks_like_digit(stats)
        t2 = time.perf_counter()
        crops = segment(image, inkmap=inkmap)
        t3 = time.perf_counter()
        recognizer.predict_proba(np.stack([c.image for c in crops]))
        t4 = time.perf_counter()
        result = recognizer.recognize(data)
        t5 = time.perf_counter()
        json.dumps(result.to_dict())
        t6 = time.perf_counter()
        for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t6 - t5, t5 - t4)):
            stages[key].append(dt)
    return {k: 1000 * statistics.median(v) for k, v in stages.items()}


# ---- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK_REQUESTS} requests in all")
    p.add_argument("--requests", type=int, help=f"requests in all, over the levels (default {FULL_REQUESTS})")
    p.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)), help="levels, comma-separated")
    p.add_argument("--workers", type=int, default=WORKERS, help=f"recognition processes (default {WORKERS})")
    p.add_argument("--model", help="model file to serve (default: the shipped one)")
    p.add_argument("--data-dir", help="MNIST folder (default: $DIGITREC_DATA, then the cache)")
    p.add_argument("--json-out", type=Path, default=RESULTS_DIR / "service_load.json")
    args = p.parse_args(argv)

    total = args.requests or (QUICK_REQUESTS if args.quick else FULL_REQUESTS)
    levels = [int(c) for c in args.concurrency.split(",")]
    pngs, labels, source = canvas_pngs(IMAGES, args.data_dir)
    # The reference, before the server starts: the same work in this process, one thread.
    stages = breakdown(pngs, args.model, 30 if args.quick else 200)
    ceiling = (os.cpu_count() or 1) * 1000 / stages["recognize (all)"]
    port = free_port()
    print(
        f"serving on 127.0.0.1:{port} with {args.workers} worker(s); {total} requests over concurrency "
        f"{levels}; {len(pngs)} canvas PNGs ({source}); {os.cpu_count()} CPUs shared by server and driver"
    )
    server = start_server(port, args.workers, args.model)
    try:
        drive(port, pngs, labels, 4, WARMUP)
        before = rss_mb(server.pid)
        rows = []
        for c in levels:
            server_cpu, driver_cpu = cpu_seconds(server.pid), time.process_time()
            row = drive(port, pngs, labels, c, total // len(levels))
            row["server_cpu_ms"] = 1000 * (cpu_seconds(server.pid) - server_cpu) / row["requests"]
            row["driver_cpu_ms"] = 1000 * (time.process_time() - driver_cpu) / row["requests"]
            row["rss_mb"] = rss_mb(server.pid)
            row["of_ceiling"] = row["rps"] / ceiling
            rows.append(row)
            print(
                f"  concurrency {c:>2}: {row['rps']:.0f} req/s, p50 {row['p50_ms']:.1f} ms, "
                f"p99 {row['p99_ms']:.1f} ms, {row['errors']} errors",
                flush=True,
            )
        after = rss_mb(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()

    cpu_ms = statistics.median(r["server_cpu_ms"] for r in rows)
    capacity = (os.cpu_count() or 1) * 1000 / cpu_ms
    c1 = next((r for r in rows if r["concurrency"] == 1), None)
    if c1:  # what a request costs beyond the recognition, measured by the server itself
        stages["server: recognize in the worker thread (c=1)"] = c1["server_recognize_p50_ms"]
        stages["HTTP + framework + queue (c=1 latency - that)"] = c1["p50_ms"] - c1["server_recognize_p50_ms"]
    at = next((r for r in rows if r["concurrency"] == TARGET["concurrency"]), None)
    growth = after - before
    verdict = {
        "rps": at is not None and at["rps"] >= TARGET["rps"],
        "p99_ms": at is not None and at["p99_ms"] < TARGET["p99_ms"],
        "errors": sum(r["errors"] for r in rows) == TARGET["errors"],
        "memory_growth_mb": growth < TARGET["memory_growth_mb"],
    }
    write_json(
        args.json_out,
        {
            "benchmark": "service_load",
            "quick": args.quick,
            "requests": total,
            "workers": args.workers,
            "images": source,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "reference_rps_ceiling": ceiling,
            "server_cpu_ms_per_request": cpu_ms,
            "capacity_rps_on_idle_cpus": capacity,
            "rows": rows,
            "rss_mb_before": before,
            "rss_mb_after": after,
            "memory_growth_mb": growth,
            "stages_ms": stages,
            "target": TARGET,
            "meets_target": verdict,
        },
    )

    print("\nwhere one request's time goes (ms, medians; the first five in this process, one thread):")
    for k, v in stages.items():
        print(f"  {k:<48} {v:6.2f}")
    print(
        f"reference: {os.cpu_count()} CPUs x 1 / recognize = {ceiling:.0f} req/s if HTTP cost nothing and "
        "the driver used no CPU"
    )
    print(
        f"server CPU per request: {cpu_ms:.2f} ms (median over the levels), so {os.cpu_count()} idle CPUs "
        f"serve at most {capacity:.0f} req/s with the driver elsewhere"
    )
    print(
        f"\nserver memory: {before:.0f} MiB after warm-up -> {after:.0f} MiB after {total} requests "
        f"({growth:+.1f} MiB; target < {TARGET['memory_growth_mb']:.0f})"
    )
    print(
        f"target at concurrency {TARGET['concurrency']}: >= {TARGET['rps']:.0f} req/s, p99 < {TARGET['p99_ms']:.0f} ms, "
        f"0 errors, memory growth < {TARGET['memory_growth_mb']:.0f} MiB: "
        + ", ".join(f"{k} {'ok' if ok else 'MISSED'}" for k, ok in verdict.items())
    )
    print(f"results: {args.json_out}\n")
    table = [
        {
            "c": r["concurrency"],
            "n": r["requests"],
            "rps": f"{r['rps']:.0f}",
            "ratio": f"{r['of_ceiling']:.2f}",
            "p50": f"{r['p50_ms']:.1f}",
            "p99": f"{r['p99_ms']:.1f}",
            "err": r["errors"],
            "correct": f"{100 * r['correct']:.1f}%",
            "rss": f"{r['rss_mb']:.0f}",
            "scpu": f"{r['server_cpu_ms']:.1f}",
            "dcpu": f"{r['driver_cpu_ms']:.1f}",
        }
        for r in rows
    ]
    print(
        format_table(
            table,
            [
                ("c", "concurrency"),
                ("n", "requests"),
                ("rps", "req/s"),
                ("ratio", "of reference"),
                ("p50", "p50 ms"),
                ("p99", "p99 ms"),
                ("err", "errors"),
                ("correct", "read right"),
                ("scpu", "server CPU ms/req"),
                ("dcpu", "driver CPU ms/req"),
                ("rss", "server RSS MiB"),
            ],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
