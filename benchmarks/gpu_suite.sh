#!/usr/bin/env bash
# The GPU benchmarks of hf_vssl in one call (for a lent GPU machine without hf_vssl installed).
# Writes each benchmark's output to $OUT (or ./gpu_results) and prints the RESULT lines.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-gpu_results}"; mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
PY="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import torch, torchvision, transformers; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"
"$PY" benchmarks/backbones.py --device cuda --batch 32 --frames 16 --size 112 --iters 5 --rounds 3 2>&1 | tee "$OUT/backbones.txt"
"$PY" benchmarks/pretrain_step.py --full --steps 5 2>&1 | tee "$OUT/pretrain_step.txt"
"$PY" benchmarks/cka_model_map.py --device cuda --backbone r21d --clips 1024 --frames 16 --size 112 2>&1 | tee "$OUT/cka_model_map.txt"
grep -h "^RESULT" "$OUT"/*.txt
