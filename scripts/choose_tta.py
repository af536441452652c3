"""Choose the test-time-augmentation views on held-out training digits, never on the test set.

Try: `python scripts/choose_tta.py runs/best0/model.safetensors runs/best1/model.safetensors`
after `digitrec train --preset best --holdout 5000 --seed S --out runs/bestS` (S = 0, 1).

The checkpoints must come from runs with `--holdout`, as `best`'s choices were made: the same
held-out digits are split off here (the split does not depend on the training seed), each
candidate set of views is scored on them, and the table shows held-out accuracy per candidate.
The winner goes into `digitrec.reports.evaluation.TTA_VIEWS` by hand.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from digitrec.data.mnist import load_mnist
from digitrec.nn.checkpoint import load_checkpoint
from digitrec.reports.evaluation import predict_proba
from digitrec.training.config import TrainConfig
from digitrec.training.run import _split_holdout

SHIFTS = [(0.0, 1.0, (dx, dy)) for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1))]
ROTATIONS = [(angle, 1.0, (0.0, 0.0)) for angle in (-6.0, 6.0)]
SCALES = [(0.0, scale, (0.0, 0.0)) for scale in (0.92, 1.08)]
IDENTITY = [(0.0, 1.0, (0.0, 0.0))]
CANDIDATES = {
    "none": IDENTITY,
    "shifts": IDENTITY + SHIFTS,
    "rotations": IDENTITY + ROTATIONS,
    "scales": IDENTITY + SCALES,
    "shifts+rotations": IDENTITY + SHIFTS + ROTATIONS,
    "all": IDENTITY + SHIFTS + ROTATIONS + SCALES,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--data-dir")
    args = p.parse_args()
    ckpts = [load_checkpoint(c) for c in args.checkpoints]
    holdout = TrainConfig.from_dict(ckpts[0].metadata["training"]["config"]).holdout
    if not holdout:
        raise SystemExit("these checkpoints were trained without a holdout: nothing to choose on")
    train = load_mnist("train", args.data_dir, progress=False)
    _, val = _split_holdout(train.images, train.labels, holdout)
    cache: dict[tuple, np.ndarray] = {}  # view -> summed probabilities over the checkpoints
    for views in CANDIDATES.values():
        for view in views:
            if view not in cache:
                cache[view] = sum(
                    predict_proba(c.model, val.images, tta=True, views=(view,), bf16=True, channels_last=True)
                    for c in ckpts
                )
    print(f"held-out digits: {len(val.labels)}, checkpoints: {len(ckpts)}")
    print(f"{'views':>18} {'n':>3} {'errors':>6} {'accuracy':>9}")
    for name, views in CANDIDATES.items():
        probs = sum(cache[v] for v in views)
        errors = int((probs.argmax(1) != val.labels.numpy()).sum())
        print(f"{name:>18} {len(views):>3} {errors:>6} {1 - errors / len(val.labels):>9.4f}")


if __name__ == "__main__":
    main()
