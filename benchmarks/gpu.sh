#!/usr/bin/env bash
# Checks and times digitrec's CUDA path in one call, for when a GPU machine is lent.
#
# Try (here, once, to give the GPU machine the data; .data/ is git-ignored):
#   mkdir -p .data/mnist && cp ../shared/mnist/*.gz .data/mnist/
# then on the GPU machine, from the repository root, with the data folder carried along:
#   bash benchmarks/gpu.sh [DATA_DIR] [OUT_DIR]
# Step 4 alone, on the CPU (two processes of one thread; NPROC=N for another count): the path the
# script takes on several GPUs, testable on any machine:
#   bash benchmarks/gpu.sh --cpu [DATA_DIR] [OUT_DIR]
#
# It needs only a python3 that has torch (with CUDA), numpy, scipy, Pillow, safetensors, tqdm and
# matplotlib; it does not install anything (such machines reach no package registry). Steps:
#   1. the GPU is visible to torch, and a matrix product gives the right answer on it;
#   2. `digitrec train --preset fast` runs end to end on the GPU (train() picks CUDA by itself) and
#      its checkpoint evaluates on the CPU to the accuracy training reported: the two devices agree;
#   3. benchmarks/train_speed.py times the reference, fast and default presets on the GPU (1 seed);
#   4. on a machine with N >= 2 GPUs (torch.cuda.device_count()), data-parallel training on all of
#      them, one process per GPU (torchrun, DistributedDataParallel, NCCL): `torchrun -m digitrec
#      train --preset fast` end to end (it must reach 99%), then `benchmarks/train_speed.py --ddp N`
#      times the fast and default presets in 1 process and in N, with the same global batch, and
#      the scaling efficiency (speed-up / N) is printed last. One GPU: the step says it is skipped.
# Everything it writes goes to OUT_DIR (default: $OUT if set, else benchmarks/results/gpu).
set -euo pipefail

CPU=0
if [ "${1:-}" = "--cpu" ]; then
    CPU=1
    shift
fi
DATA_DIR=${1:-${DIGITREC_DATA:-.data/mnist}}
OUT_DIR=${2:-${OUT:-benchmarks/results/gpu}}
PYTHON=${PYTHON:-python3}
SEEDS=${SEEDS:-1}
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 DIGITREC_DATA="$DATA_DIR"
[ -f "$DATA_DIR/t10k-images-idx3-ubyte.gz" ] || [ -f "$DATA_DIR/t10k-images-idx3-ubyte" ] || {
    echo "gpu.sh: no MNIST in $DATA_DIR (see the comment at the top of this script)" >&2; exit 2; }

# Step 4: data-parallel training on $2 processes of device $1 (cpu: one thread each), presets $3.
data_parallel() {
    local device=$1 nproc=$2 presets=$3
    local threads=()
    if [ "$device" = cpu ]; then threads=(--threads 1); fi
    echo "== 4. data-parallel training: $nproc processes on $device"
    "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$nproc" -m digitrec train --preset fast \
        "${threads[@]}" --out "$OUT_DIR/fast_ddp" --json > "$OUT_DIR/fast_ddp_train.txt"
    "$PYTHON" - "$OUT_DIR" "$nproc" <<'EOF'
import json, sys
out, nproc = sys.argv[1], int(sys.argv[2])
summary = json.load(open(f"{out}/fast_ddp/summary.json"))
print(f"fast preset on {nproc} processes: test accuracy {summary['test_accuracy']:.4f}, "
      f"training {summary['train_seconds']:.1f}s")
assert summary["completed"] and summary["test_accuracy"] >= 0.99, "the data-parallel fast preset missed 99%"
EOF
    # shellcheck disable=SC2086  # $presets: one word per preset
    "$PYTHON" benchmarks/train_speed.py --device "$device" --ddp "$nproc" --presets $presets --seeds "$SEEDS" \
        "${threads[@]}" --data-dir "$DATA_DIR" --json-out "$OUT_DIR/train_speed_ddp.json" | tee "$OUT_DIR/train_speed_ddp.txt"
    "$PYTHON" - "$OUT_DIR/train_speed_ddp.json" <<'EOF'
import json, sys
for r in json.load(open(sys.argv[1]))["summary"]:
    if r["processes"] > 1:
        t99 = "" if r["t99_speedup"] is None else f", time to 99% {r['t99_speedup']:.2f}x"
        print(f"scaling, {r['preset']}: {r['processes']} {r['device']} processes train {r['speedup']:.2f}x as many "
              f"images per second as one (efficiency {100 * r['efficiency']:.0f}%){t99}")
EOF
}

if [ "$CPU" = 1 ]; then
    data_parallel cpu "${NPROC:-2}" fast
    exit 0
fi

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
trained = json.load(open(f"{out}/fast/summary.json"))
evaluated = json.load(open(f"{out}/fast_eval.json"))
gpu, cpu = trained["test_accuracy"], evaluated["accuracy"]
print(f"fast preset on the GPU: {gpu:.4f} (bf16, GPU) vs {cpu:.4f} (fp32, CPU); command wall {end - start:.1f}s")
assert abs(gpu - cpu) < 0.002, "GPU-trained weights evaluate differently on the CPU"
EOF

echo "== 3. training speed on the GPU"
"$PYTHON" benchmarks/train_speed.py --device cuda --presets reference fast default --seeds "$SEEDS" \
    --reference-epochs 5 --data-dir "$DATA_DIR" --json-out "$OUT_DIR/train_speed_gpu.json" | tee "$OUT_DIR/train_speed_gpu.txt"

GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -ge 2 ]; then
    data_parallel cuda "$GPUS" "fast default"
else
    echo "== 4. data-parallel training: skipped, this machine has $GPUS GPU (it takes 2 or more)"
fi
