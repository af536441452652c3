"""Inference: latency, throughput, size, accuracy and FLOP efficiency of every way to run a model.

Try: `python benchmarks/inference.py --quick` (a smoke run), then `python benchmarks/inference.py`.

For the shipped default model and the PyTorch examples' network (`torch-example`), in one run on
this machine: torch eager float32, torch's faster CPU settings (traced + frozen; channels-last +
bfloat16 autocast; torch.compile with --compile), onnxruntime float32 and int8. Every runtime goes
through the same `Recognizer` (normalisation, internal batching, softmax), so only the backend
differs. Throughput repetitions are interleaved across runtimes so that load from other
processes hits them alike; figures are medians. The reference rate is a float32 matrix product
measured among the batch-1024 repetitions. Prints a table last; writes JSON (--json-out).

torch.compile works here but is opt-in (--compile): about 15 s of compiling per input shape, and
on this 2-core machine it ran 1.7x eager at batch 1024, below traced + frozen (3.6x). On a
machine busy with other work, also try `--threads 1`: torch's thread pool suffers most from it.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: find common.py
from common import RESULTS_DIR, format_table, forward_flops, write_json  # noqa: E402

BATCHES = (1, 64, 1024)
FULL = {"latency_calls": 1000, "repeats": 7, "rep_seconds": 0.25, "png_calls": 300, "warmup": 20, "max_seconds": 30}
QUICK = {"latency_calls": 50, "repeats": 2, "rep_seconds": 0.02, "png_calls": 10, "warmup": 2, "max_seconds": 5}
# On a machine shared with other work, torch's OpenMP threads can wait a scheduler slice at every
# layer (~100 ms per image instead of ~1 ms); `max_seconds` caps each latency series then, and
# the number of calls made is reported beside it.
QUICK_IMAGES = 1024  # --quick measures accuracy on this many test digits only
TORCH_EXAMPLE_RUN = Path("runs/bench/torch-example")  # where a missing torch-example gets trained
MATMUL_SIZE = 1024  # the reference: a float32 (1024 x 1024) @ (1024 x 1024) product in torch
PNG_SIZE = 280  # the drawing page's canvas
TARGET_ORT_SPEEDUP = 2.0  # onnxruntime float32 vs torch eager, default model, batch 1024
TARGET_PNG_MS = 2.0  # one PNG through Recognizer.recognize (bytes -> digits), median
TARGET_INT8_SIZE = 0.30
TARGET_INT8_DROP_PP = 0.1


@dataclass
class Runtime:
    model: str  # "default" | "torch-example"
    name: str  # "torch eager fp32", ...
    recognizer: Any  # digitrec.Recognizer
    file: Path
    trained: bool
    result: dict[str, Any] = dataclasses.field(default_factory=dict)


def torch_recognizer(
    ckpt_path: Path, *, jit: bool = False, bf16: bool = False, channels_last: bool = False, compile: bool = False
):
    """A Recognizer on the checkpoint's model, run with the given torch CPU settings."""
    import torch

    from digitrec.nn.checkpoint import load_checkpoint
    from digitrec.recognition.backends import Backend
    from digitrec.recognition.recognizer import BATCH_SIZE, Recognizer

    ckpt = load_checkpoint(ckpt_path)
    model = copy.deepcopy(ckpt.model).eval()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    if jit:  # trace, then freeze: folds batch norm into the convolutions, drops Python overhead
        with torch.no_grad():
            example = torch.zeros(BATCH_SIZE, 1, 28, 28).contiguous(memory_format=layout)
            model = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, example)))
    if compile:
        model = torch.compile(model, dynamic=False)

    def run(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).contiguous(memory_format=layout)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(t).float().numpy()

    backend = Backend(run=run, fixed_batch=None, metadata=ckpt.metadata, info={"backend": "torch"})
    return Recognizer(backend, Path(ckpt_path))


def torch_example_checkpoint(given: Path | None, quick: bool, folder: Path, data_dir: Path | None) -> tuple[Path, bool]:
    """(checkpoint, trained): the given one, the one trained earlier, a fresh one-epoch training
    run, or (with --quick) an untrained model whose accuracy is not reported."""
    if given is not None:
        return given, True
    trained = TORCH_EXAMPLE_RUN / "model.safetensors"
    if trained.is_file():
        return trained, True
    if quick:
        import torch

        from digitrec.nn.checkpoint import save_checkpoint
        from digitrec.nn.models.registry import create_model

        torch.manual_seed(0)
        path = folder / "torch-example-untrained.safetensors"
        save_checkpoint(path, create_model("torch-example"))
        return path, False
    print(f"training torch-example for 1 epoch into {TORCH_EXAMPLE_RUN} (pass --torch-example CKPT to skip)")
    cmd = [
        sys.executable,
        "-m",
        "digitrec.cli",
        "train",
        "--preset",
        "reference",
        "--epochs",
        "1",
        "--out",
        str(TORCH_EXAMPLE_RUN),
    ] + (["--data-dir", str(data_dir)] if data_dir else [])
    subprocess.run(cmd, check=True)
    return trained, True


def test_data(data_dir: Path | None, quick: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(test images, labels or None, calibration images): MNIST if found, else made-up digits."""
    from digitrec.errors import DigitrecError

    try:
        from digitrec.data.mnist import load_mnist

        test = load_mnist("test", data_dir, download=False, progress=False)
        train = load_mnist("train", data_dir, download=False, progress=False).images
        pick = np.random.default_rng(0).choice(len(train), 1000, replace=False)
        return test.images, test.labels, train[pick]
    except DigitrecError as e:
        if not quick:
            raise SystemExit(f"benchmarks/inference.py: {e} (set DIGITREC_DATA or pass --data-dir)") from None
        from digitrec.data.synthetic import draw_digit

        rng = np.random.default_rng(0)
        images = np.stack([draw_digit(i % 10, rng) for i in range(1024)])
        return images, None, images[:200]


def png_file(folder: Path, digit: np.ndarray) -> Path:
    """A 280x280 drawing-canvas PNG of `digit`, as the web page uploads."""
    from digitrec.data.synthetic import encode, render_canvas

    path = folder / "digit.png"
    canvas = render_canvas(digit, np.random.default_rng(0), "black_on_white")
    assert canvas.shape[:2] == (PNG_SIZE, PNG_SIZE)
    path.write_bytes(encode(canvas))
    return path


def png_end_to_end(recognizer, path: Path) -> Any:
    """One PNG file the way the service and the CLI read it: `recognizer.recognize(bytes)`
    (decode, "no digit" check, segmentation, MNIST-format preprocessing, prediction). Without a
    recognizer, the same steps up to the network (torch-free): the digit crops."""
    data = path.read_bytes()
    if recognizer is not None:
        return recognizer.recognize(data)
    from digitrec.image.decode import load_image
    from digitrec.image.presence import looks_like_digit
    from digitrec.image.segmentation import segment, stats_and_inkmap

    image = load_image(data)
    stats, inkmap = stats_and_inkmap(image)
    return segment(image, inkmap=inkmap) if looks_like_digit(stats) else []


def time_calls(fn: Callable[[], Any], calls: int, max_seconds: float = math.inf) -> list[float]:
    """Seconds per call for `calls` calls, or fewer if they take longer than `max_seconds`."""
    times: list[float] = []
    deadline = time.perf_counter() + max_seconds
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if start > deadline:
            break
    return times


def interleaved_rates(tasks: dict[Any, tuple[Callable[[], Any], float]], settings: dict) -> dict[Any, float]:
    """Median units/s of each task, `(fn, units per call)`: repetitions go round all tasks in
    turn, so that load from other processes falls on them alike."""
    calls = {}
    for key, (fn, _) in tasks.items():  # warm up, and size each repetition to about rep_seconds
        first = min(time_calls(fn, 2))
        calls[key] = max(1, math.ceil(settings["rep_seconds"] / max(first, 1e-6)))
    rates: dict[Any, list[float]] = {key: [] for key in tasks}
    for _ in range(settings["repeats"]):
        for key, (fn, units) in tasks.items():
            start = time.perf_counter()
            for _ in range(calls[key]):
                fn()
            rates[key].append(calls[key] * units / (time.perf_counter() - start))
    return {key: statistics.median(r) for key, r in rates.items()}


def measure_throughput(runtimes: list[Runtime], images: np.ndarray, settings: dict) -> float:
    """Images/s of every runtime at each batch size; returns the float32 matrix-product FLOP/s,
    measured among the batch-1024 repetitions so that it sees the same load."""
    import torch

    a, b = torch.randn(MATMUL_SIZE, MATMUL_SIZE), torch.randn(MATMUL_SIZE, MATMUL_SIZE)
    matmul = 0.0
    for batch in BATCHES:
        x = images[:batch]
        tasks: dict[Any, tuple[Callable[[], Any], float]] = {
            i: (lambda rt=rt, x=x: rt.recognizer.predict_proba(x), batch) for i, rt in enumerate(runtimes)
        }
        if batch == max(BATCHES):
            tasks["matmul"] = (lambda: a @ b, 2 * MATMUL_SIZE**3)
        rates = interleaved_rates(tasks, settings)
        for i, rt in enumerate(runtimes):
            rt.result[f"images_per_s_b{batch}"] = rates[i]
        matmul = rates.get("matmul", matmul)
    return matmul


def measure(rt: Runtime, images: np.ndarray, labels: np.ndarray | None, png: Path, flops: int, settings: dict) -> None:
    one = images[:1]
    time_calls(lambda: rt.recognizer.predict_proba(one), settings["warmup"])
    cap = settings["max_seconds"]
    lat = np.array(time_calls(lambda: rt.recognizer.predict_proba(one), settings["latency_calls"], cap)) * 1e6
    # The whole path, alternating with the same path without the model, so both see the same load.
    time_calls(lambda: png_end_to_end(rt.recognizer, png), settings["warmup"], cap)
    png_full, png_only = [], []
    deadline = time.perf_counter() + cap
    while len(png_full) < settings["png_calls"] and time.perf_counter() < deadline:
        png_only += time_calls(lambda: png_end_to_end(None, png), 1)
        png_full += time_calls(lambda: png_end_to_end(rt.recognizer, png), 1)
    accuracy = None
    if labels is not None and rt.trained:
        accuracy = float((rt.recognizer.predict_proba(images).argmax(1) == labels).mean())
    rt.result |= {
        "model": rt.model,
        "runtime": rt.name,
        "file": str(rt.file),
        "file_bytes": rt.file.stat().st_size,
        "accuracy": accuracy,
        "latency_us_p50": float(np.percentile(lat, 50)),
        "latency_us_p99": float(np.percentile(lat, 99)),
        "latency_calls": len(lat),
        "png_end_to_end_ms": statistics.median(png_full) * 1e3,
        "png_calls": len(png_full),
        "png_without_model_ms": statistics.median(png_only) * 1e3,
        "flops_per_image": flops,
    }


def runtimes_for(
    model: str, ckpt: Path, onnx_f32: Path, onnx_int8: Path, trained: bool, compile: bool, threads: int | None
) -> list[Runtime]:
    from digitrec.recognition.recognizer import Recognizer

    out = [
        Runtime(model, "torch eager fp32", Recognizer.load(ckpt, threads=threads), ckpt, trained),
        Runtime(model, "torch jit-frozen fp32", torch_recognizer(ckpt, jit=True), ckpt, trained),
        Runtime(model, "torch ch-last bf16", torch_recognizer(ckpt, bf16=True, channels_last=True), ckpt, trained),
    ]
    if compile:  # minutes of compiling per input shape on a small CPU: opt-in
        out.append(Runtime(model, "torch compile fp32", torch_recognizer(ckpt, compile=True), ckpt, trained))
    return out + [
        Runtime(model, "onnxruntime fp32", Recognizer.load(onnx_f32, threads=threads), onnx_f32, trained),
        Runtime(model, "onnxruntime int8", Recognizer.load(onnx_int8, threads=threads), onnx_int8, trained),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run: few calls, untrained torch-example")
    parser.add_argument(
        "--torch-example", type=Path, help="a torch-example checkpoint (default: train one for 1 epoch)"
    )
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to compile)")
    parser.add_argument("--threads", type=int, help="CPU threads for every runtime (default: each one's own choice)")
    parser.add_argument("--data-dir", type=Path, help="MNIST folder (default: $DIGITREC_DATA, then the cache)")
    parser.add_argument("--json-out", type=Path, default=RESULTS_DIR / "inference.json")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL

    import onnxruntime
    import torch

    from digitrec.export import export_checkpoint
    from digitrec.nn.models.registry import create_model
    from digitrec.recognition.backends import shipped_model_path

    if args.threads:
        torch.set_num_threads(args.threads)  # the torch runtimes built here, and the matmul reference
    images, labels, calibration = test_data(args.data_dir, args.quick)
    if args.quick:
        images, labels = images[:QUICK_IMAGES], None if labels is None else labels[:QUICK_IMAGES]
    with tempfile.TemporaryDirectory(prefix="digitrec-bench-") as tmp:
        folder = Path(tmp)
        png = png_file(folder, images[0])
        te_ckpt, te_trained = torch_example_checkpoint(args.torch_example, args.quick, folder, args.data_dir)
        print("exporting torch-example to ONNX (float32 + int8)")
        te_report = export_checkpoint(
            te_ckpt,
            folder / "torch-example.onnx",
            int8=True,
            test_images=images,
            test_labels=labels,
            calibration_images=calibration,
        )
        runtimes = runtimes_for(
            "default",
            shipped_model_path("checkpoint"),
            shipped_model_path("onnx"),
            shipped_model_path("int8"),
            True,
            args.compile,
            args.threads,
        )
        runtimes += runtimes_for(
            "torch-example",
            te_ckpt,
            Path(te_report.float32.path),
            Path(te_report.int8.path),
            te_trained,
            args.compile,
            args.threads,
        )
        flops = {name: forward_flops(create_model(name)) for name in ("default", "torch-example")}
        for rt in runtimes:
            print(f"measuring {rt.model} / {rt.name}")
            measure(rt, images, labels, png, flops[rt.model], settings)
        print("measuring throughput and the matrix-product reference (repetitions interleaved)")
        matmul = measure_throughput(runtimes, images, settings)

    rows = []
    for rt in runtimes:
        r = rt.result
        r["flops_per_s_b1024"] = r["flops_per_image"] * r["images_per_s_b1024"]
        r["fraction_of_matmul"] = r["flops_per_s_b1024"] / matmul
        rows.append(r)
    targets = check_targets(rows)
    payload = {
        "quick": args.quick,
        "threads": args.threads or "default",
        "matmul_float32_flops_per_s": matmul,
        "rows": rows,
        "targets": targets,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
        },
        "settings": settings,
        "summary": summary(rows),
    }
    write_json(args.json_out, payload)
    print(f"\nwrote {args.json_out}")
    print(
        f"float32 matrix product (torch, threads: {torch.get_num_threads()}): {matmul / 1e9:.1f} GFLOP/s; "
        f"FLOPs per image: default {flops['default'] / 1e6:.2f} M, torch-example {flops['torch-example'] / 1e6:.2f} M"
    )
    print(
        f"PNG ms: one {PNG_SIZE}x{PNG_SIZE} canvas PNG through Recognizer.recognize (decode, no-digit check, "
        "segmentation, preprocessing, prediction; median); 'w/o model': the same without predicting"
    )
    print(format_table([table_row(r, settings) for r in rows], COLUMNS))
    for line in payload["summary"]:
        print(line)
    for t in targets:
        print(f"target {t['name']}: {t['measured']} -> {'met' if t['met'] else 'NOT met'}")
    return 0


COLUMNS = [
    ("model", "model"),
    ("runtime", "runtime"),
    ("size", "size KB"),
    ("acc", "test acc"),
    ("p50", "p50 us"),
    ("p99", "p99 us"),
    ("b1", "img/s b1"),
    ("b64", "img/s b64"),
    ("b1024", "img/s b1024"),
    ("gflops", "GFLOP/s"),
    ("frac", "of matmul"),
    ("png", "PNG ms"),
    ("png0", "w/o model"),
]


def table_row(r: dict[str, Any], settings: dict) -> dict[str, str]:
    """One row of the table; a latency measured over fewer calls than asked shows the count."""
    return {
        "model": r["model"],
        "runtime": r["runtime"],
        "size": f"{r['file_bytes'] / 1000:.0f}",
        "acc": "n/a" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%",
        "p50": f"{r['latency_us_p50']:.0f}",
        "p99": f"{r['latency_us_p99']:.0f}"
        + ("" if r["latency_calls"] >= settings["latency_calls"] else f" ({r['latency_calls']} calls)"),
        "b1": f"{r['images_per_s_b1']:.0f}",
        "b64": f"{r['images_per_s_b64']:.0f}",
        "b1024": f"{r['images_per_s_b1024']:.0f}",
        "gflops": f"{r['flops_per_s_b1024'] / 1e9:.2f}",
        "frac": f"{100 * r['fraction_of_matmul']:.1f}%",
        "png": f"{r['png_end_to_end_ms']:.2f}",
        "png0": f"{r['png_without_model_ms']:.2f}",
    }


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """Per model: the fastest torch setting at batch 1024, and onnxruntime against it."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = {r["runtime"]: r for r in rows if r["model"] == model}
        best = max((r for name, r in mine.items() if name.startswith("torch")), key=lambda r: r["images_per_s_b1024"])
        eager = mine["torch eager fp32"]["images_per_s_b1024"]
        ort = {k: mine[f"onnxruntime {k}"]["images_per_s_b1024"] for k in ("fp32", "int8")}
        lines.append(
            f"{model}: best torch at batch 1024 is {best['runtime']} ({best['images_per_s_b1024'] / eager:.2f}x "
            f"eager); onnxruntime fp32 {ort['fp32'] / eager:.2f}x eager, {ort['fp32'] / best['images_per_s_b1024']:.2f}x "
            f"best torch; int8 {ort['int8'] / ort['fp32']:.2f}x fp32"
        )
    return lines


def check_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(r["model"], r["runtime"]): r for r in rows}
    eager, f32, q = (by["default", n] for n in ("torch eager fp32", "onnxruntime fp32", "onnxruntime int8"))
    speedup = f32["images_per_s_b1024"] / eager["images_per_s_b1024"]
    size = q["file_bytes"] / f32["file_bytes"]
    out = [
        {
            "name": f"onnxruntime fp32 >= {TARGET_ORT_SPEEDUP}x torch eager at batch 1024 (default)",
            "measured": f"{speedup:.2f}x",
            "value": speedup,
            "met": speedup >= TARGET_ORT_SPEEDUP,
        },
        {
            "name": f"one PNG end to end < {TARGET_PNG_MS} ms median (default, onnxruntime fp32)",
            "measured": f"{f32['png_end_to_end_ms']:.2f} ms",
            "value": f32["png_end_to_end_ms"],
            "met": f32["png_end_to_end_ms"] < TARGET_PNG_MS,
        },
        {
            "name": f"int8 size <= {TARGET_INT8_SIZE:.0%} of float32 (default)",
            "measured": f"{size:.1%}",
            "value": size,
            "met": size <= TARGET_INT8_SIZE,
        },
    ]
    if f32["accuracy"] is not None and q["accuracy"] is not None:
        drop = 100 * (f32["accuracy"] - q["accuracy"])
        out.append(
            {
                "name": f"int8 accuracy drop <= {TARGET_INT8_DROP_PP} pp (default)",
                "measured": f"{drop:+.2f} pp",
                "value": drop,
                "met": drop <= TARGET_INT8_DROP_PP,
            }
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
