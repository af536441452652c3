"""Training speed: wall time until 99% (and 99.5%) test accuracy for each preset, side by side
with the PyTorch example's recipe (the `reference` preset), measured in the same invocation.

Try: `python benchmarks/train_speed.py --quick` (a smoke run of about a minute), or the full run
`python benchmarks/train_speed.py --presets reference fast default --seeds 3`.

Data-parallel scaling: `python benchmarks/train_speed.py --ddp 2` trains each preset (default:
`fast`) in 1 process and in 2 processes launched by torchrun (DistributedDataParallel, the same
global batch, `--threads` per process, 1 by default), and reports throughput, time to 99%, the
speed-up and the scaling efficiency (speed-up / processes). With `--device cuda`, one process per
GPU (benchmarks/gpu.sh runs it on every GPU of a machine).

Each (preset, seed) trains in its own process so its peak memory is its own. The clock starts
before the data is loaded and evaluation on the 10,000 test images at regular points counts.
Achieved FLOP/s is 3x the forward FLOPs per image (forward + backward) times images per second,
as a fraction of a large matrix product's rate measured in this run.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, format_table, forward_flops, matmul_flops, write_json  # noqa: E402

TARGETS = (0.99, 0.995, 0.996)  # 99.6%: the `default` preset's target
QUICK_LIMIT = 10_000  # training images in --quick


def worker(
    preset: str,
    seed: int,
    evals_per_epoch: int,
    epochs: int | None,
    limit: int | None,
    data_dir: str | None,
    device: str = "cpu",
    threads: int | None = None,
) -> dict | None:
    """One training run, timed from before the data is loaded; returns its measurements. Launched
    by torchrun, every process trains (DistributedDataParallel) and rank 0 evaluates and returns
    the measurements (the others None)."""
    import torch

    from digitrec.data.mnist import load_mnist
    from digitrec.nn.models.registry import create_model
    from digitrec.nn.predict import accuracy, predict_logits
    from digitrec.training.config import make_config
    from digitrec.training.distributed import process_group
    from digitrec.training.loop import Data, fit

    if threads:
        torch.set_num_threads(threads)
    config = make_config(preset, seed=seed, epochs=epochs)
    # Library start-up is not training: the first optimizer imports torch._dynamo (2-5 s here),
    # which belongs with `import torch` above, outside the clock, for every preset alike.
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    start = time.perf_counter()  # distributed: joining the other processes counts
    with process_group(device) as world:
        if world is not None:
            device = str(world.device)  # this process's GPU
        train_split = load_mnist("train", data_dir, progress=False)
        test_split = load_mnist("test", data_dir, progress=False)
        n = limit or len(train_split.images)
        train = Data(torch.from_numpy(train_split.images[:n]), torch.from_numpy(train_split.labels[:n]).long())
        test_images, test_labels = torch.from_numpy(test_split.images), torch.from_numpy(test_split.labels).long()
        torch.manual_seed(config.seed)
        model = create_model(config.model, **config.model_options).to(device)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        steps_per_epoch = -(-n // config.batch_size)
        total_steps = steps_per_epoch * config.epochs
        every = max(1, steps_per_epoch // evals_per_epoch)
        points, eval_seconds = [], 0.0

        def on_step(step: int, eval_model) -> None:  # rank 0's alone, distributed
            nonlocal eval_seconds
            if step % every and step != total_steps:
                return
            t = time.perf_counter()
            logits = predict_logits(eval_model, test_images, bf16=config.bf16, channels_last=config.channels_last)
            eval_seconds += time.perf_counter() - t
            points.append(
                {"seconds": time.perf_counter() - start, "step": step, "accuracy": accuracy(logits, test_labels)}
            )

        fit_start = time.perf_counter()
        fit(model, train, config, on_step=on_step, progress=False, world=world)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
        loop_seconds = time.perf_counter() - fit_start - eval_seconds
        processes = 1 if world is None else world.size
        if world is not None and not world.is_main:
            return None
    train_seconds = wall - eval_seconds
    images = n * config.epochs
    reached = {f"{t:.3f}": next((p["seconds"] for p in points if p["accuracy"] >= t), None) for t in TARGETS}
    return {
        "preset": preset,
        "seed": seed,
        "model": config.model,
        "epochs": config.epochs,
        "train_images": n,
        "wall_seconds": wall,
        "eval_seconds": eval_seconds,
        "final_accuracy": points[-1]["accuracy"],
        "time_to": reached,
        "images_per_second": images / train_seconds,
        # The training loop alone: without start-up (joining the processes, data, model) and evaluation.
        "loop_images_per_second": images / loop_seconds,
        "startup_seconds": fit_start - start,
        "train_flops_per_image": 3
        * forward_flops(copy.deepcopy(model).cpu().float().to(memory_format=torch.contiguous_format)),
        "bf16": config.bf16,
        "points": points,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None,
        "threads": torch.get_num_threads(),
        "device": device,
        "processes": processes,
        "global_batch": config.batch_size,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_worker(args: argparse.Namespace, preset: str, seed: int, processes: int = 1) -> dict:
    launch = [sys.executable]
    if processes > 1:  # torchrun, one host: its agent passes rank 0's JSON line through
        launch += ["-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
        launch += ["--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    cmd = [*launch, __file__, "--worker", preset, str(seed), "--evals-per-epoch", str(args.evals_per_epoch)]
    epochs = args.reference_epochs if preset == "reference" and args.reference_epochs else args.epochs
    if epochs:
        cmd += ["--epochs", str(epochs)]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    cmd += ["--device", args.device]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{preset} seed {seed} on {processes} processes failed:\n{done.stderr[-8000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict], rate: dict[str, float], reference: str) -> list[dict]:
    def med(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    rows = []
    by_preset: dict[str, list[dict]] = {}
    for r in runs:
        by_preset.setdefault(r["preset"], []).append(r)
    ref_t99 = med([r["time_to"]["0.990"] for r in by_preset.get(reference, [])])
    for preset, rs in by_preset.items():
        t99 = med([r["time_to"]["0.990"] for r in rs])
        t995 = med([r["time_to"]["0.995"] for r in rs])
        t996 = med([r["time_to"]["0.996"] for r in rs])
        ips = med([r["images_per_second"] for r in rs])
        flops = ips * rs[0]["train_flops_per_image"]
        peak = rate["bfloat16"] if rs[0]["bf16"] else rate["float32"]
        rows.append(
            {
                "preset": preset,
                "model": rs[0]["model"],
                "epochs": rs[0]["epochs"],
                "seeds": len(rs),
                "t99_s": t99,
                "t99_vs_reference": (t99 / ref_t99) if t99 and ref_t99 else None,
                "reached_99": sum(r["time_to"]["0.990"] is not None for r in rs),
                "t995_s": t995,
                "reached_995": sum(r["time_to"]["0.995"] is not None for r in rs),
                "t996_s": t996,
                "reached_996": sum(r["time_to"]["0.996"] is not None for r in rs),
                "final_accuracy": med([r["final_accuracy"] for r in rs]),
                "wall_s": med([r["wall_seconds"] for r in rs]),
                "images_per_second": ips,
                "gflops": flops / 1e9,
                "flops_fraction": flops / peak,
                "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                "peak_gpu_mb": max((r.get("peak_gpu_mb") or 0) for r in rs) or None,
            }
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", help="default: reference fast default (with --ddp: fast)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, help="override every preset's epochs")
    p.add_argument(
        "--reference-epochs",
        type=int,
        help="stop the reference after N epochs: its step schedule is per epoch, so its time to "
        "99%% is unchanged while N covers it (it reaches 99%% in its 4th epoch)",
    )
    p.add_argument("--limit", type=int, help="train on the first N images only")
    p.add_argument("--evals-per-epoch", type=int, default=4, help="test-set evaluations per epoch")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: fast and reference (--ddp: fast), 1 seed, 1 epoch, 10k images"
    )
    p.add_argument("--data-dir")
    p.add_argument("--device", default="cpu", help="cpu or cuda (see benchmarks/gpu.sh)")
    p.add_argument(
        "--ddp",
        type=int,
        metavar="N",
        help="data-parallel scaling: each preset in 1 process and in N (torchrun, DistributedDataParallel)",
    )
    p.add_argument(
        "--threads", type=int, help="torch's threads in each process (default: torch's choice; with --ddp: 1)"
    )
    p.add_argument("--json-out", type=Path, help="default: results/train_speed.json (with --ddp: train_speed_ddp.json)")
    p.add_argument("--worker", nargs=2, metavar=("PRESET", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        result = worker(
            args.worker[0],
            int(args.worker[1]),
            args.evals_per_epoch,
            args.epochs,
            args.limit,
            args.data_dir,
            args.device,
            args.threads,
        )
        if result is not None:  # rank 0 speaks for a distributed run
            print(json.dumps(result))
        return
    if args.ddp is not None and args.ddp < 2:
        p.error("--ddp N compares 1 process with N: N must be at least 2")
    if args.quick:
        args.presets = args.presets or (["fast"] if args.ddp else ["reference", "fast"])
        args.seeds, args.epochs, args.limit = 1, 1, QUICK_LIMIT
        args.evals_per_epoch = 2
    if args.ddp:
        args.presets = args.presets or ["fast"]
        args.threads = args.threads or 1
        args.json_out = args.json_out or RESULTS_DIR / "train_speed_ddp.json"
        return scaling(args)
    args.presets = args.presets or ["reference", "fast", "default"]
    args.json_out = args.json_out or RESULTS_DIR / "train_speed.json"
    rate = {"float32": matmul_flops("float32", args.device), "bfloat16": matmul_flops("bfloat16", args.device)}
    print(
        f"matrix product: float32 {rate['float32'] / 1e9:.0f} GFLOP/s, bfloat16 {rate['bfloat16'] / 1e9:.0f} GFLOP/s",
        flush=True,
    )
    runs = []
    for seed in range(args.seeds):
        for preset in args.presets:
            r = run_worker(args, preset, seed)
            t99 = r["time_to"]["0.990"]
            print(
                f"{preset:<10} seed {seed}: final {r['final_accuracy']:.4f}, 99% at "
                f"{'-' if t99 is None else f'{t99:.1f}s'}, wall {r['wall_seconds']:.1f}s",
                flush=True,
            )
            runs.append(r)
    rows = summarise(runs, rate, reference="reference")
    write_json(
        args.json_out,
        {
            "matmul_flops": rate,
            "args": {k: v for k, v in vars(args).items() if k != "json_out"},
            "summary": rows,
            "runs": runs,
        },
    )

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    table = [
        {
            "preset": r["preset"],
            "model": r["model"],
            "epochs": r["epochs"],
            "seeds": r["seeds"],
            "t99": fmt(r["t99_s"], ".1f") + f" ({r['reached_99']}/{r['seeds']})",
            "ratio": fmt(r["t99_vs_reference"], ".3f"),
            "t995": fmt(r["t995_s"], ".1f") + f" ({r['reached_995']}/{r['seeds']})",
            "t996": fmt(r["t996_s"], ".1f") + f" ({r['reached_996']}/{r['seeds']})",
            "final": fmt(100 * r["final_accuracy"], ".2f"),
            "wall": fmt(r["wall_s"], ".1f"),
            "ips": fmt(r["images_per_second"], ".0f"),
            "flops": fmt(100 * r["flops_fraction"], ".1f"),
            "mem": fmt(r["peak_rss_mb"], ".0f"),
        }
        for r in rows
    ]
    print(f"\nresults: {args.json_out}  (medians over seeds; times include data loading and evaluation)")
    print(
        format_table(
            table,
            [
                ("preset", "preset"),
                ("model", "model"),
                ("epochs", "epochs"),
                ("seeds", "seeds"),
                ("t99", "to 99% s (runs)"),
                ("ratio", "vs reference"),
                ("t995", "to 99.5% s (runs)"),
                ("t996", "to 99.6% s (runs)"),
                ("final", "final %"),
                ("wall", "wall s"),
                ("ips", "img/s"),
                ("flops", "% matmul"),
                ("mem", "peak MB"),
            ],
        )
    )


def scaling(args: argparse.Namespace) -> None:
    """Each preset and seed in 1 process and in `args.ddp`, the same global batch and threads per
    process; the table and JSON report throughput, time to 99%, speed-up and efficiency."""
    import torch

    if args.device.startswith("cuda") and torch.cuda.device_count() < args.ddp:
        raise SystemExit(f"--ddp {args.ddp} on cuda needs {args.ddp} GPUs; torch sees {torch.cuda.device_count()}")
    runs = []
    for seed in range(args.seeds):
        for preset in args.presets:
            for processes in (1, args.ddp):
                r = run_worker(args, preset, seed, processes)
                t99 = r["time_to"]["0.990"]
                print(
                    f"{preset:<8} seed {seed}, {processes} process{'es' if processes > 1 else ''} x {r['threads']} "
                    f"threads: final {r['final_accuracy']:.4f}, 99% at {'-' if t99 is None else f'{t99:.1f}s'}, "
                    f"{r['loop_images_per_second']:.0f} img/s in the loop, wall {r['wall_seconds']:.1f}s",
                    flush=True,
                )
                runs.append(r)

    def med(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    rows = []
    for preset in args.presets:
        single = None
        for processes in (1, args.ddp):
            rs = [r for r in runs if r["preset"] == preset and r["processes"] == processes]
            ips = med([r["loop_images_per_second"] for r in rs])
            row = {
                "preset": preset,
                "processes": processes,
                "threads_per_process": rs[0]["threads"],
                "global_batch": rs[0]["global_batch"],
                "device": rs[0]["device"].split(":")[0],
                "seeds": len(rs),
                "loop_images_per_second": ips,
                "images_per_second": med([r["images_per_second"] for r in rs]),
                "startup_s": med([r["startup_seconds"] for r in rs]),
                "t99_s": med([r["time_to"]["0.990"] for r in rs]),
                "reached_99": sum(r["time_to"]["0.990"] is not None for r in rs),
                "final_accuracy": med([r["final_accuracy"] for r in rs]),
                "wall_s": med([r["wall_seconds"] for r in rs]),
            }
            single = single or row
            row["speedup"] = ips / single["loop_images_per_second"]
            row["efficiency"] = row["speedup"] / processes
            row["t99_speedup"] = single["t99_s"] / row["t99_s"] if single["t99_s"] and row["t99_s"] else None
            rows.append(row)
    write_json(
        args.json_out,
        {"args": {k: v for k, v in vars(args).items() if k != "json_out"}, "summary": rows, "runs": runs},
    )

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    table = [
        {
            "preset": r["preset"],
            "device": r["device"],
            "procs": r["processes"],
            "threads": r["threads_per_process"],
            "batch": r["global_batch"],
            "ips": fmt(r["loop_images_per_second"], ".0f"),
            "start": fmt(r["startup_s"], ".1f"),
            "speedup": fmt(r["speedup"], ".2f"),
            "eff": fmt(100 * r["efficiency"], ".0f"),
            "t99": fmt(r["t99_s"], ".1f") + f" ({r['reached_99']}/{r['seeds']})",
            "t99x": fmt(r["t99_speedup"], ".2f"),
            "final": fmt(100 * r["final_accuracy"], ".2f"),
            "wall": fmt(r["wall_s"], ".1f"),
        }
        for r in rows
    ]
    print(
        f"\nresults: {args.json_out}  (medians over seeds; img/s: images per second of the whole job in the "
        "training loop, evaluation excluded; start: joining the processes, loading the data, building the model; "
        "times to 99% and wall include both)"
    )
    print(
        format_table(
            table,
            [
                ("preset", "preset"),
                ("device", "device"),
                ("procs", "processes"),
                ("threads", "threads each"),
                ("batch", "global batch"),
                ("ips", "img/s"),
                ("speedup", "speed-up"),
                ("eff", "efficiency %"),
                ("start", "start s"),
                ("t99", "to 99% s (runs)"),
                ("t99x", "to 99% speed-up"),
                ("final", "final %"),
                ("wall", "wall s"),
            ],
        )
    )


if __name__ == "__main__":
    main()
