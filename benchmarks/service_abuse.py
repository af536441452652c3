"""Large images against the service: do ordinary requests keep flowing, and memory bounded?

Try: `python benchmarks/service_abuse.py` (about a minute), or `--quick`.

Starts `digitrec serve` on 127.0.0.1, measures ordinary canvas requests alone, then again while
`--large` clients each send, one after another, a PNG of `--pixels` pixels (a small file: mostly
blank, legal under the server's pixel limit). Reported: the canvas requests' p50 and p99, the
server's peak resident memory over its idle size, and how the large requests were answered.

Targets (issue 23): with 8 such images in flight, canvas p99 under 150 ms and server memory
growth under 200 MB.
"""

from __future__ import annotations

import argparse
import io
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, format_table, write_json  # noqa: E402


def canvas_png() -> bytes:
    """A 7 drawn on a 280x280 canvas, as the drawing page sends it."""
    img = Image.new("RGB", (280, 280), "white")
    ImageDraw.Draw(img).line([(80, 55), (200, 55), (120, 235)], fill="black", width=20)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def large_png(pixels: int) -> bytes:
    """A white page of about `pixels` pixels, 1000 high, with a few strokes: compresses to KBs."""
    w = pixels // 1000
    img = Image.new("L", (w, 1000), 255)
    ImageDraw.Draw(img).line([(100, 100), (100, 900)], fill=0, width=40)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def canvas_latencies(url: str, seconds: float) -> list[float]:
    body = canvas_png()
    out = []
    with httpx.Client(timeout=60) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            r = client.post(url, content=body, headers={"content-type": "image/png"})
            out.append(time.perf_counter() - start)
            assert r.status_code == 200 and r.json()["text"] == "7", r.text
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--large", type=int, default=8, help="clients sending large images at once")
    p.add_argument("--pixels", type=int, default=39_999_000, help="pixels of each large image")
    p.add_argument("--seconds", type=float, default=20.0, help="how long each phase lasts")
    p.add_argument("--quick", action="store_true", help="5 s phases")
    p.add_argument("--json-out", type=Path, default=RESULTS_DIR / "service_abuse.json")
    args = p.parse_args()
    if args.quick:
        args.seconds = 5.0

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "digitrec", "serve", "--port", str(port), "--no-access-log"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api/v1/recognize"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        canvas_latencies(url, 1.0)  # warm-up
        idle_mb = rss_mb(server.pid)
        alone = canvas_latencies(url, args.seconds)

        big = large_png(args.pixels)
        stop = threading.Event()
        answers: Counter[int] = Counter()
        peak = [idle_mb]

        def flood() -> None:
            with httpx.Client(timeout=120) as client:
                while not stop.is_set():
                    r = client.post(url, content=big, headers={"content-type": "image/png"})
                    answers[r.status_code] += 1

        def watch() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], rss_mb(server.pid))
                time.sleep(0.05)

        threads = [threading.Thread(target=flood, daemon=True) for _ in range(args.large)]
        threads.append(threading.Thread(target=watch, daemon=True))
        for t in threads:
            t.start()
        time.sleep(1.0)  # the large requests are in flight
        loaded = canvas_latencies(url, args.seconds)
        stop.set()
        for t in threads:
            t.join(timeout=180)
    finally:
        server.terminate()
        server.wait(timeout=30)

    def ms(values: list[float], q: float) -> float:
        return 1000 * float(np.quantile(values, q))

    rows = [
        {"phase": "canvas alone", "n": len(alone), "p50": ms(alone, 0.5), "p99": ms(alone, 0.99)},
        {
            "phase": f"canvas, {args.large} large images in flight",
            "n": len(loaded),
            "p50": ms(loaded, 0.5),
            "p99": ms(loaded, 0.99),
        },
    ]
    report = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "large_png_bytes": len(big),
        "rows": rows,
        "idle_mb": idle_mb,
        "peak_mb": peak[0],
        "growth_mb": peak[0] - idle_mb,
        "large_answers": dict(answers),
        "median_canvas_ms_alone": 1000 * statistics.median(alone),
    }
    write_json(args.json_out, report)
    print(f"large image: {args.pixels:,} pixels, {len(big):,} bytes; answers {dict(answers)}")
    print(f"server memory: idle {idle_mb:.0f} MB, peak {peak[0]:.0f} MB, growth {peak[0] - idle_mb:.0f} MB")
    print(f"results: {args.json_out}")
    table = [{**r, "p50": f"{r['p50']:.1f}", "p99": f"{r['p99']:.1f}"} for r in rows]
    print(format_table(table, [("phase", "phase"), ("n", "requests"), ("p50", "p50 ms"), ("p99", "p99 ms")]))


if __name__ == "__main__":
    main()
