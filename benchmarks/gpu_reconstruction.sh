#!/usr/bin/env bash
# Long trainings for issue 22 on a lent GPU (docs/reconstruction.md, "Trained longer"): the default
# recipe with all skips and without, on two sets at 64 px in fp32, 40 epochs, all four at once;
# then pixel, ssim, feature, ssimz (patchz and rawknn once) at epochs 5, 10, 20, 30, 40.
# First, here: python benchmarks/carry64.py ../shared/realdata .gpu/rd64/realdata (and realdata_more),
# then run it with carry [".gpu", ".whl"] (.whl: the wheels docs/gpus.md names). Runs tiny on a CPU:
#   DEV=cpu EPOCHS=2 EVAL_EPOCHS=1 DATA_ROOT=<folder with two demo sets> bash benchmarks/gpu_reconstruction.sh
# env: DEV, EPOCHS, EVAL_EPOCHS, DATA_ROOT (holding realdata/ and realdata_more/), TLIM (s per training)
set -u
export NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}; DEV=${DEV:-cuda}; EPOCHS=${EPOCHS:-40}; EVAL_EPOCHS=${EVAL_EPOCHS:-5 10 20 30 40}
ROOT=${DATA_ROOT:-.gpu/rd64}; W=${PROBE_WORK:-/tmp/probe}; O=${OUT:-/tmp/probe_out}; TLIM=${TLIM:-240}
mkdir -p "$W" "$O"
for set in realdata realdata_more; do for skips in all none; do
  ( timeout "$TLIM" $PY -m core train --data "$ROOT/$set" --run "$W/$set-$skips" --epochs "$EPOCHS" \
      --image-size 64 --skips "$skips" --device "$DEV" --precision fp32 --channels-last off \
      --threads 3 --no-follow --quiet > "$W/$set-$skips.train.log" 2>&1; echo "train $set-$skips rc=$?" ) &
done; done; wait
for r in "$W"/*-all "$W"/*-none; do tail -n 3 "$r.train.log"; done
for r in "$W"/*-all "$W"/*-none; do
  n=$(basename "$r")
  last=$(ls "$r" | sed -n 's/^epoch_0*\([0-9][0-9]*\)\.pt$/\1/p' | sort -n | tail -1)
  ( first=1
    for e in $(echo $EVAL_EPOCHS $last | tr ' ' '\n' | sort -nu); do
      [ -f "$r/epoch_$(printf %03d "$e").pt" ] || continue
      m=pixel,ssim,feature,ssimz; [ $first = 1 ] && m=$m,patchz; first=0
      timeout 200 $PY -m core evaluate --run "$r" --epoch "$e" --method "$m" --fast --device "$DEV" \
          --threads 3 --json "$O/$n-e$e.json" > "$W/$n-e$e.eval.log" 2>&1 || echo "eval $n $e failed: $(tail -n 2 $W/$n-e$e.eval.log)"
    done ) &
done; wait
$PY benchmarks/gpu_reconstruction_summary.py "$O" "$W" | tee "$O/summary.txt"
