"""Robustness side by side: clean accuracy, the MNIST-C corruption mean, the worst corruption and
the training time of several models, e.g. the shipped default and one trained with the robust preset.

Try: `python benchmarks/robustness.py --quick`, or
`python benchmarks/robustness.py --models robust=runs/robust/model.safetensors`.

The shipped default model is the reference, measured in the same run on the same corrupted
sets: the table gives each model's corruption mean against it (percentage points). Corrupted
sets are generated once and cached (see `digitrec.data.corruption_cache`), so a second run only evaluates.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, format_table, write_json  # noqa: E402

REFERENCE = "default"
QUICK_DIGITS = 1000  # --quick: the first this many test digits


def model_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--models",
        nargs="+",
        type=model_arg,
        default=[],
        metavar="NAME=PATH",
        help=f"models to compare (.safetensors or .onnx); {REFERENCE!r} defaults to the shipped checkpoint",
    )
    p.add_argument("--quick", action="store_true", help=f"only the first {QUICK_DIGITS} test digits")
    p.add_argument("--severity", type=int, help="one level 1-5 for all corruptions (default: MNIST-C's levels)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir")
    p.add_argument("--cache-dir", help="where the corrupted sets are kept (default: digitrec's cache)")
    p.add_argument("--json-out", type=Path, default=RESULTS_DIR / "robustness.json")
    args = p.parse_args()

    from digitrec.recognition.backends import shipped_model_path
    from digitrec.reports.robustness import run_robustness

    models = {REFERENCE: shipped_model_path("checkpoint"), **dict(args.models)}
    results = {}
    for name, path in models.items():
        start = time.perf_counter()
        report = run_robustness(
            [path],
            severity=args.severity,
            seed=args.seed,
            data_dir=args.data_dir,
            cache_dir=args.cache_dir,
            limit=QUICK_DIGITS if args.quick else None,
            progress=False,
        ).report
        results[name] = report
        print(
            f"{name}: clean {100 * report['clean_accuracy']:.2f}%, corruption mean "
            f"{100 * report['mean_accuracy']:.2f}% ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )

    reference = results[REFERENCE]["mean_accuracy"]
    rows = []
    for name, r in results.items():
        train_s = r["models"][0]["training_seconds"]
        rows.append(
            {
                "model": name,
                "clean": f"{100 * r['clean_accuracy']:.2f}",
                "mean": f"{100 * r['mean_accuracy']:.2f}",
                "vs": f"{100 * (r['mean_accuracy'] - reference):+.2f}",
                "worst": f"{r['worst']['name']} {100 * r['worst']['accuracy']:.2f}",
                "train": f"{train_s:.0f}" if train_s is not None else "n/a",
            }
        )
    write_json(
        args.json_out,
        {
            "args": {k: str(v) for k, v in vars(args).items()},
            "reference": REFERENCE,
            "models": {
                name: {
                    "path": str(models[name]),
                    "clean_accuracy": r["clean_accuracy"],
                    "mean_accuracy": r["mean_accuracy"],
                    "worst": r["worst"],
                    "training_seconds": r["models"][0]["training_seconds"],
                    "corruptions": {c["name"]: c["accuracy"] for c in r["corruptions"]},
                }
                for name, r in results.items()
            },
            "n": results[REFERENCE]["n"],
            "seed": args.seed,
            "severity": results[REFERENCE]["severity"],
        },
    )
    per_corruption = [
        {
            "corruption": c["name"],
            "severity": c["severity"],
            **{name: f"{100 * r['corruptions'][i]['accuracy']:.2f}" for name, r in results.items()},
        }
        for i, c in enumerate(results[REFERENCE]["corruptions"])
    ]
    print(
        "\n"
        + format_table(
            per_corruption,
            [("corruption", "corruption"), ("severity", "severity"), *((name, f"{name} %") for name in results)],
        )
    )
    print(
        f"\n{results[REFERENCE]['n']} test digits, seed {args.seed}, severity {results[REFERENCE]['severity']}; "
        f"results: {args.json_out}"
    )
    print(
        format_table(
            rows,
            [
                ("model", "model"),
                ("clean", "clean %"),
                ("mean", "corruption mean %"),
                ("vs", f"vs {REFERENCE} (pp)"),
                ("worst", "worst corruption %"),
                ("train", "training s"),
            ],
        )
    )


if __name__ == "__main__":
    main()
