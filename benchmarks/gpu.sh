#!/usr/bin/env bash
# Checks and times digitrec's CUDA path in one call, for when a GPU machine is lent.
#
# Try (here, once, to give the GPU machine the data; .data/ is git-ignored):
#   mkdir -p .data/mnist && cp ../shared/mnist/*.gz .data/mnist/
# then on the GPU machine, from the repository root, with the data folder carried along:
#   bash benchmarks/gpu.sh [DATA_DIR] [OUT_DIR]
#
# It needs only a python3 that has torch (with CUDA), numpy, scipy, Pillow, safetensors, tqdm and
# matplotlib; it does not install anything (such machines reach no package registry). Steps:
#   1. the GPU is visible to torch, and a matrix product gives the right answer on it;
#   2. `digitrec train --preset fast` runs end to end on the GPU (train() picks CUDA by itself) and
#      its checkpoint evaluates on the CPU to the accuracy training reported: the two devices agree;
#   3. benchmarks/train_speed.py times the reference, fast and default presets on the GPU (1 seed).
# Everything it writes goes to OUT_DIR (default: $OUT if set, else benchmarks/results/gpu).
set -euo pipefail

DATA_DIR=${1:-${DIGITREC_DATA:-.data/mnist}}
OUT_DIR=${2:-${OUT:-benchmarks/results/gpu}}
PYTHON=${PYTHON:-python3}
SEEDS=${SEEDS:-1}
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 DIGITREC_DATA="$DATA_DIR"
[ -f "$DATA_DIR/t10k-images-idx3-ubyte.gz" ] || [ -f "$DATA_DIR/t10k-images-idx3-ubyte" ] || {
    echo "gpu.sh: no MNIST in $DATA_DIR (see the comment at the top of this script)" >&2; exit 2; }

echo "== 1. the GPU"
"$PYTHON" - <<'EOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit("gpu.sh: torch sees no CUDA device")
a = torch.randn(512, 512, device="cuda")
err = (a @ a).cpu().sub(a.cpu() @ a.cpu()).abs().max().item()
print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, matmul max diff vs CPU {err:.2e}")
assert err < 1e-2, "the GPU's matrix product disagrees with the CPU's"
EOF

echo "== 2. train on the GPU, evaluate on the CPU"
start=$(date +%s.%N)
"$PYTHON" -m digitrec train --preset fast --out "$OUT_DIR/fast" --json > "$OUT_DIR/fast_train.json"
end=$(date +%s.%N)
CUDA_VISIBLE_DEVICES= "$PYTHON" -m digitrec evaluate "$OUT_DIR/fast/model.safetensors" --out "$OUT_DIR/fast/report" \
    --json > "$OUT_DIR/fast_eval.json"
"$PYTHON" - "$OUT_DIR" "$start" "$end" <<'EOF'
import json, sys
out, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
trained = json.load(open(f"{out}/fast_train.json"))
evaluated = json.load(open(f"{out}/fast_eval.json"))
gpu, cpu = trained["metrics"]["test_accuracy"], evaluated["accuracy"]
print(f"fast preset on the GPU: {gpu:.4f} (bf16, GPU) vs {cpu:.4f} (fp32, CPU); command wall {end - start:.1f}s")
assert abs(gpu - cpu) < 0.002, "GPU-trained weights evaluate differently on the CPU"
EOF

echo "== 3. training speed on the GPU"
"$PYTHON" benchmarks/train_speed.py --device cuda --presets reference fast default --seeds "$SEEDS" \
    --reference-epochs 5 --data-dir "$DATA_DIR" --json-out "$OUT_DIR/train_speed_gpu.json" | tee "$OUT_DIR/train_speed_gpu.txt"
