#!/usr/bin/env bash
# The GPU checks of issue 10 on one CUDA device, in about 5 minutes (each step has its own time limit, and every
# benchmark writes its JSON after each configuration, so a step cut short still leaves its results).
#
#   bash benchmarks/gpu_checks.sh OUT_DIR        (from anywhere; needs `pip install -e .` and a CUDA device)
#   DRY_RUN=1 bash benchmarks/gpu_checks.sh OUT_DIR   (the same steps on the CPU, small: checks the code paths)
#
# OUT_DIR receives: nvidia-smi.csv, throughput_cuda.json|log (resnet18 and vgg16_bn at 8 x 80 slices of 224 px:
# fp32 vs bf16 training and inference, peak GPU memory, FLOP/s and share of the device peak, the memory options
# slice_chunk/checkpoint for the 24 GB check, channels_last), throughput_compile_cuda.json|log (torch.compile),
# data_path_cuda.json|log (compact cache vs the reference-style loader, restored and sliced on the GPU).
set -uo pipefail
OUT=${1:?usage: bash benchmarks/gpu_checks.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
SCALE=1  # time limits are for the GPU machine; a dry run on a small CPU gets far longer ones
if [ -n "${DRY_RUN:-}" ]; then
    SCALE=30
    DEV=(--device cpu --quick)
    TP=(--in_process --peak_name "NVIDIA H200")
else
    python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')" || exit 1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.csv" 2>&1
    DEV=(--device cuda)
    TP=()
fi
start=$SECONDS
step() {  # step SECONDS NAME COMMAND...: run with a time limit, log, and report
    local limit=$1 name=$2
    shift 2
    timeout --signal=INT --kill-after=10 "$((limit * SCALE))" "$@" > "$OUT/$name.log" 2>&1
    echo "$name: exit $? after $((SECONDS - start)) s"
    tail -n 25 "$OUT/$name.log"
}
step 150 throughput_cuda python benchmarks/throughput.py "${DEV[@]}" ${TP[@]+"${TP[@]}"} --out "$OUT/throughput_cuda.json"
step 75 data_path_cuda python benchmarks/data_path.py "${DEV[@]}" --scans 16 --workers 8 --batch_size 8 \
    --workdir "$OUT/.data_path_work" --out "$OUT/data_path_cuda.json"
rm -rf "$OUT/.data_path_work"
step 100 throughput_compile_cuda python benchmarks/throughput.py "${DEV[@]}" ${TP[@]+"${TP[@]}"} --compile_only \
    --out "$OUT/throughput_compile_cuda.json"
echo "all GPU checks done in $((SECONDS - start)) s; results in $OUT"
