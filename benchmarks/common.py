"""Shared helpers for the benchmarks: a matrix-product reference rate, FLOP counting, medians,
tables and JSON output. Each benchmark measures its reference in the same run, on the same
machine, and reports ratios.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
GPU_MATMUL_SIZE = 8192
MATMUL_SIZE = 2048
MATMUL_REPEATS = 5


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_flops(dtype_name: str = "float32", device: str = "cpu", size: int = MATMUL_SIZE) -> float:
    """FLOP/s of a large square matrix product in torch on this machine, now (median of runs)."""
    import torch

    dtype = getattr(torch, dtype_name)
    cuda = device.startswith("cuda")
    if cuda:
        size = GPU_MATMUL_SIZE  # a CPU-sized product would time the kernel launch, not the GPU
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))

    def product() -> None:
        a @ b
        if cuda:
            torch.cuda.synchronize()

    product()  # warm-up
    return 2 * size**3 / median_time(product, MATMUL_REPEATS)


def forward_flops(model, input_shape: Sequence[int] = (1, 1, 28, 28)) -> int:
    """Multiply-adds x 2 of one forward pass through the model's Conv2d and Linear layers."""
    import torch
    from torch import nn

    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += 2 * output.numel() * k
        elif isinstance(module, nn.Linear):
            total += 2 * output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(*input_shape))
    model.train(was_training)
    for h in handles:
        h.remove()
    return total // input_shape[0]


def format_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """Columns are (key, header); values are printed as given (format them first)."""
    widths = [max(len(h), *(len(str(r.get(k, ""))) for r in rows)) for k, h in columns]
    line = "  ".join(h.rjust(w) for (_, h), w in zip(columns, widths))
    out = [line, "-" * len(line)]
    for r in rows:
        out.append("  ".join(str(r.get(k, "")).rjust(w) for (k, _), w in zip(columns, widths)))
    return "\n".join(out)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
