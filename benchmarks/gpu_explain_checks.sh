#!/usr/bin/env bash
# The GPU runs of issues 8 and 11 on one CUDA device with >= 16 CPU cores (each step has a time limit; the
# ground-truth benchmark appends a row per finished cell, so a step cut short keeps its results). Steps:
#   all        the ground-truth matrix (benchmarks/explain_groundtruth.py), seeds 1-2, every method;
#   default    the same for seeds 3-4 with the default methods (attention, smoothgrad) only;
#   large      the matrix with the "large" profile (80 subjects, 25 epochs), seeds 0-2, four methods;
#   detection  the detection curve (test AUC against atrophy strength, train.json as shipped), seeds 0-2;
#   determinism  two seeded trainings per setting, deterministic false/true, with and without amp.
# The steps run side by side; the results are packed into OUT_DIR/results.tgz at the end.
#
#   bash benchmarks/gpu_explain_checks.sh OUT_DIR                   (every step, about 8 minutes on an H200)
#   STEPS="default detection" bash benchmarks/gpu_explain_checks.sh OUT_DIR
set -uo pipefail
OUT=${1:?usage: bash benchmarks/gpu_explain_checks.sh OUT_DIR}
LIMIT=${LIMIT:-450}
STEPS=${STEPS:-all default large detection determinism}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export AXIAL_MONAI_CACHE=${AXIAL_MONAI_CACHE:-$(mktemp -d)}
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.csv" 2>&1
GT=(timeout --signal=INT --kill-after=15 "$LIMIT" python benchmarks/explain_groundtruth.py --device cuda --threads 1)
step() {  # step NAME COMMAND...: run in the background, output in OUT/NAME.log
    local name=$1
    shift
    case " $STEPS " in *" $name "*) mkdir -p "$OUT/$name"; "$@" > "$OUT/$name.log" 2>&1 & ;; esac
}
step all "${GT[@]}" --seeds 1,2 --workers 6 --work /tmp/gt-all --out "$OUT/all"
step default "${GT[@]}" --seeds 3,4 --methods attention,smoothgrad --raw-methods smoothgrad --workers 3 \
    --work /tmp/gt-default --out "$OUT/default"
step large "${GT[@]}" --profile large --seeds 0,1,2 --methods attention,gradcam,gradient,smoothgrad \
    --raw-methods smoothgrad --workers 6 --work /tmp/gt-large --out "$OUT/large"
step detection "${GT[@]}" --skip-matrix --detection --detection-seeds 0,1,2 --workers 5 --work /tmp/gt-det \
    --out "$OUT/detection"
step determinism timeout --signal=INT "$LIMIT" python benchmarks/gpu_determinism.py --device cuda --amp \
    --work /tmp/det --out "$OUT/determinism/determinism.json"
wait
for name in $STEPS; do echo "== $name"; grep -v "it/s\]\|subject/s\]" "$OUT/$name.log" | tail -n 12; done
tar czf "$OUT/results.tgz" -C "$OUT" --exclude results.tgz .
