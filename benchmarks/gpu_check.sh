#!/usr/bin/env bash
# One prepared check for a lent GPU machine, from the repo root:  bash benchmarks/gpu_check.sh
#
# Within about 8 minutes it
#   1. installs the CUDA build of torch 2.13 (skipped when a CUDA torch is already there),
#   2. writes the demo data at 256 px,
#   3. measures augmentation images/s beside step images/s (the compute ceiling) and the loop,
#   4. trains 2 epochs of the demo at 256 px and prints images/s against that ceiling and the
#      peak GPU memory,
#   5. trains the same 2 epochs on 2 ranks under torchrun when two GPUs are visible,
#   6. loads the last checkpoint on the CPU (no GPU visible) and reconstructs with it.
# It ends with one PASS/FAIL line per step and exits non-zero when any step failed.
#
# The same steps run tiny on a CPU (how this script is tested where no GPU is lent):
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_SIZE=64 GPU_CHECK_WIDTH=8 GPU_CHECK_DEPTH=3 \
#   GPU_CHECK_NTRAIN=6 GPU_CHECK_RANKS=2 bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

DEVICE=${GPU_CHECK_DEVICE:-cuda}
SIZE=${GPU_CHECK_SIZE:-256}
WIDTH=${GPU_CHECK_WIDTH:-32}
DEPTH=${GPU_CHECK_DEPTH:-4}
NTRAIN=${GPU_CHECK_NTRAIN:-100}          # normal training images per demo category (6 categories)
BATCH=${GPU_CHECK_BATCH:-32}             # per GPU; the 2-rank run uses twice this (--batch-size is global)
WORK=${GPU_CHECK_WORK:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
PY=${PYTHON:-python}
declare -a RESULTS=()

step() { echo; echo "=== $1   [$(date +%T), ${SECONDS}s elapsed]"; }
record() { RESULTS+=("$1 $2"); [ "$1" = PASS ] || echo "!!! $2 failed"; }

step "1/6 torch with CUDA"
if [ "$DEVICE" = cuda ]; then
  has_cuda_torch() { $PY -c "import sys, torch; sys.exit(0 if torch.version.cuda and torch.cuda.is_available() else 1)" 2>/dev/null; }
  if has_cuda_torch; then
    echo "a CUDA build of torch is already installed: install skipped"
  else
    for cu in cu128 cu126 cu129 cu130; do
      echo "pip install torch==2.13.0 from the $cu index"
      timeout 200 $PY -m pip install -q "torch==2.13.0" --index-url "https://download.pytorch.org/whl/$cu" && has_cuda_torch && break
    done
  fi
  if ! has_cuda_torch; then
    echo "FAILED: no CUDA build of torch 2.13 could be installed, or torch sees no GPU; nothing else to check"
    exit 2
  fi
fi
if ! $PY -c "import albumentations, kornia, sklearn, tqdm, core.training.loop" 2>/dev/null; then
  echo "installing the other requirements (torch left as it is)"
  grep -v '^torch==' requirements.txt > "$WORK/requirements-no-torch.txt"
  timeout 240 $PY -m pip install -q -r "$WORK/requirements-no-torch.txt" || true
fi
$PY - <<'EOF' || { echo "FAILED: torch or the project does not import"; exit 2; }
import torch, core.training.loop
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s)",
      *(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())), sep="; ")
EOF
GPUS=$($PY -c "import torch; print(torch.cuda.device_count())")
RANKS=${GPU_CHECK_RANKS:-$(( GPUS >= 2 ? 2 : 1 ))}
record PASS "torch ($GPUS GPUs visible)"

step "2/6 demo data at ${SIZE} px"
if timeout 120 $PY -m core demo-data --out "$WORK/demo" --size "$SIZE" --n-train "$NTRAIN"; then
  record PASS "demo data"
else
  record FAIL "demo data"; echo "nothing to train on"; exit 1
fi

MODEL=(--image-size "$SIZE" --base-width "$WIDTH" --depth "$DEPTH" --device "$DEVICE")

step "3/6 augmentation vs step images/s (bench_train.py)"
if timeout 150 $PY benchmarks/bench_train.py --data "$WORK/demo" "${MODEL[@]}" --batch-size "$BATCH" \
     --rounds 2 --workers 0,4 --augment-images 1024 | tee "$WORK/bench.txt"; then
  record PASS "bench_train"
else
  record FAIL "bench_train"
fi
CEILING=$(sed -n 's/^step (batch in memory, the compute ceiling): \([0-9.]*\) images\/s.*/\1/p' "$WORK/bench.txt")

report() {  # $1 = run folder: images/s per epoch against the ceiling, peak memory
  $PY - "$1" "${CEILING:-0}" <<'EOF'
import sys
from core.runs.folder import Run
run, ceiling = Run(sys.argv[1]), float(sys.argv[2])
for m in run.metrics():
    share = f" = {100 * m['images_per_s'] / ceiling:.0f}% of the one-device step ceiling {ceiling:.0f}" if ceiling else ""
    peak = f", peak GPU memory {m['gpu_peak_mib']:.0f} MiB" if "gpu_peak_mib" in m else ""
    print(f"  epoch {m['epoch']}: {m['images_per_s']:.0f} images/s{share}{peak}, "
          f"{m.get('world_size', 1)} process(es), train_loss {m['train_loss']:.4f}, {m['seconds']:.1f}s")
EOF
}

step "4/6 two epochs of the demo at ${SIZE} px on one device"
if timeout 150 $PY -m core train --data "$WORK/demo" --run "$WORK/runs/one" --epochs 2 "${MODEL[@]}" \
     --batch-size "$BATCH" --quiet; then
  report "$WORK/runs/one"; record PASS "train, 1 device"
else
  record FAIL "train, 1 device"
fi

step "5/6 two epochs on $RANKS ranks (torchrun)"
if [ "$RANKS" -ge 2 ]; then
  if timeout 150 $PY -m torch.distributed.run --standalone --nproc_per_node "$RANKS" -m core train \
       --data "$WORK/demo" --run-dir "$WORK/runs/ranks" --epochs 2 "${MODEL[@]}" \
       --batch-size $(( BATCH * RANKS )) --quiet; then
    report "$WORK/runs/ranks"; record PASS "train, $RANKS ranks"
  else
    record FAIL "train, $RANKS ranks"
  fi
else
  echo "one GPU visible: skipped"; record PASS "train, several ranks (skipped: one GPU)"
fi

step "6/6 the checkpoint loads on a CPU"
if CUDA_VISIBLE_DEVICES="" timeout 60 $PY - "$WORK/runs/one" "$SIZE" <<'EOF'
import sys
import torch
from core.runs.checkpoint import open_checkpoint
from core.runs.folder import Run
run, size = Run(sys.argv[1]), int(sys.argv[2])
epoch = run.epochs()[-1]
model = open_checkpoint(run, epoch).model("cpu").eval()
with torch.no_grad():
    out = model(torch.rand(2, 3, size, size))
assert out.shape == (2, 3, size, size) and torch.isfinite(out).all(), "reconstruction is not finite"
print(f"epoch {epoch} of {run.path} rebuilt on the CPU (torch sees CUDA: {torch.cuda.is_available()}); "
      f"reconstruction {tuple(out.shape)} finite")
EOF
then record PASS "checkpoint on the CPU"; else record FAIL "checkpoint on the CPU"; fi

echo; echo "=== summary ($SECONDS s; work folder $WORK)"
status=0
for line in "${RESULTS[@]}"; do echo "  $line"; [[ $line == PASS* ]] || status=1; done
exit $status
