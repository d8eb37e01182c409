#!/usr/bin/env bash
# The GPU fast-path measurements of hf_vssl in one go (docs/performance.md#the-gpu-suite).
#
# On one GPU (made for one H200, about 9 minutes): the training-step clips/s and TFLOP/s of every
# study backbone and the aligned R(2+1)D against their targets (bf16 + channels_last_3d, batch 32,
# 16x112x112, eager and torch.compile), every pretext task's step against a plain backbone step
# (and PRP's against the step with its own modules), the end-to-end pretraining step (shards,
# decode, sample, augment) against the model step alone (CPU decode workers and torchcodec's CUDA
# decoder), the 12x12-layer CKA map against the per-pair reference, and the CKA map of a real
# backbone. Each output goes to $OUT/$TAG_<name>.txt (default docs/results/gpu_h200_*; on a lent
# machine whose $OUT folder comes back, there), and the RESULT lines, each with its ratio to its
# target, to $OUT/$TAG_summary.txt.
#
#   benchmarks/gpu_suite.sh              # needs CUDA; stops at once without it
#   benchmarks/gpu_suite.sh --dry_run    # every script in its tiny CPU mode, output to a temporary
#                                        # folder: checks that the suite runs (minutes on a CPU)
#
# Environment: PYTHON (default python3), OUT, TAG, BUDGET_S (the suite's wall-clock budget in
# seconds, default 540, 3600 for --dry_run: a step that would run past it is cut short or skipped,
# never the summary).
set -u -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DRY=0
for arg in "$@"; do
    case "$arg" in
        --dry_run) DRY=1 ;;
        *) echo "gpu_suite.sh: unknown argument $arg (only --dry_run)" >&2; exit 2 ;;
    esac
done
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if [ "$DRY" = 1 ]; then
    BUDGET_S="${BUDGET_S:-3600}"  # a smoke run on an unknown (possibly shared) CPU: be patient
    OUT="${OUT:-$(mktemp -d -t gpu_suite_dry_run.XXXXXX)}"
    TAG="${TAG:-dry_run}"
else
    if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "gpu_suite.sh: no CUDA device (torch.cuda.is_available() is False): run it on a GPU machine, or pass --dry_run for the CPU smoke run" >&2
        exit 2
    fi
    BUDGET_S="${BUDGET_S:-540}"
    OUT="${OUT:-docs/results}"
    TAG="${TAG:-gpu_h200}"
fi
mkdir -p "$OUT"
echo "gpu_suite: output in $OUT/${TAG}_*.txt (budget ${BUDGET_S}s)"

# run NAME LIMIT_S ARGS...: one benchmark, cut at LIMIT_S or at what is left of the budget.
run() {
    local name="$1" limit="$2" left
    shift 2
    left=$((BUDGET_S - SECONDS))
    if [ "$left" -lt 20 ]; then
        echo "SKIP $name: the suite's ${BUDGET_S}s budget is spent" | tee "$OUT/${TAG}_$name.txt"
        return
    fi
    [ "$limit" -gt "$left" ] && limit="$left"
    echo "== $name (at most ${limit}s): $*"
    timeout --signal=INT --kill-after=10 "$limit" "$PY" "$@" 2>&1 | tee "$OUT/${TAG}_$name.txt"
    local status="${PIPESTATUS[0]}"
    if [ "$status" = 124 ] || [ "$status" = 137 ]; then
        echo "TIMEOUT $name: cut after ${limit}s" | tee -a "$OUT/${TAG}_$name.txt"
    elif [ "$status" != 0 ]; then
        echo "FAILED $name: exit status $status" | tee -a "$OUT/${TAG}_$name.txt"
    fi
}

"$PY" -c "import torch, torchvision, transformers; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())" | tee "$OUT/${TAG}_gpu.txt"
if [ "$DRY" = 1 ]; then
    run study_backbones 900 benchmarks/backbones.py --tiny --device cpu --backbones r21d r21d-aligned --compile_for r21d-aligned
    run pretrain_step 900 benchmarks/pretrain_step.py --tiny --tasks tdl prp
    run pretrain_e2e 900 benchmarks/pretrain_e2e.py --tiny
    run cka_model_map 900 benchmarks/cka_model_map.py --device cpu --width 0.125 --clips 8 --batch 4 --frames 4 --size 32
    echo "SKIP cka: the 12x12-layer, 1024-input workload is GPU-sized (not part of the dry run)" | tee "$OUT/${TAG}_cka.txt"
else
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$OUT/${TAG}_gpu.txt"
    # Highest priority first: the R(2+1)D targets need compile; the other backbones' compiled runs go last.
    run study_backbones 200 benchmarks/backbones.py --study --device cuda --batch 32 --frames 16 --size 112 \
        --iters 10 --rounds 3 --compile_for r21d r21d-aligned
    run pretrain_step 120 benchmarks/pretrain_step.py --full --modes bf16_cl3d --warmup 2 --steps 5
    run pretrain_e2e 120 benchmarks/pretrain_e2e.py --full --videos 256 --rounds 2
    run cka 60 benchmarks/cka.py --device cuda
    run cka_model_map 40 benchmarks/cka_model_map.py --device cuda --backbone r21d --clips 1024 --frames 16 --size 112
    run study_backbones_compiled 200 benchmarks/backbones.py --study --device cuda --batch 32 --frames 16 --size 112 \
        --iters 10 --rounds 3 --backbones r3d c3d shufflenet mobilenet squeezenet
fi

{
    echo "== targets (one H200, batch 32, 16x112x112, bf16): R(2+1)D >= 1250 clips/s, aligned >= 1600;"
    echo "   R3D 1567, C3D 927, ShuffleNet 1632, MobileNetV2 732, SqueezeNet 3175 clips/s; every task >= 0.95x"
    echo "   of a plain step; end-to-end >= 0.9x of the model step alone; CKA map >= 30x the per-pair reference"
    for file in "$OUT/${TAG}"_*.txt; do
        [ "$file" = "$OUT/${TAG}_summary.txt" ] || grep -h "^RESULT\|^SKIP\|^TIMEOUT\|^FAILED" "$file"
    done
} | tee "$OUT/${TAG}_summary.txt.tmp"
mv "$OUT/${TAG}_summary.txt.tmp" "$OUT/${TAG}_summary.txt"
echo "gpu_suite: done in ${SECONDS}s; summary in $OUT/${TAG}_summary.txt"
