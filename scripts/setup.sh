#!/usr/bin/env bash
# One-step set-up of hf_vssl on a fresh Debian/Ubuntu machine (idempotent, safe to re-run):
#   1. FFmpeg's shared libraries (torchcodec, the decoder behind datasets.Video, needs them);
#   2. a virtual environment in .venv (override with HF_VSSL_VENV=/path);
#   3. torch + torchvision (TORCH_SPEC, default the pinned CPU-runnable release), then
#      hf_vssl itself, editable, with the `demo`, `study` and `dev` extras.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${HF_VSSL_VENV:-.venv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
PYTHON="${PYTHON:-python3}"

have_ffmpeg_libs() { ldconfig -p 2>/dev/null | grep -q 'libavcodec\.so'; }
if ! have_ffmpeg_libs; then
  echo "[setup] installing FFmpeg shared libraries with apt-get"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ffmpeg >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

# torch first and on its own: pip takes it from local wheels where the machine has them,
# and nothing later may replace it with another build.
if ! "$VENV/bin/python" - "$TORCH_SPEC" <<'PY' 2>/dev/null
import sys
import torch, torchvision
wanted = dict(item.split("==") for item in sys.argv[1].split())
have = {"torch": torch.__version__.split("+")[0], "torchvision": torchvision.__version__.split("+")[0]}
sys.exit(0 if all(have.get(k) == v for k, v in wanted.items()) else 1)
PY
then
  echo "[setup] installing $TORCH_SPEC"
  # shellcheck disable=SC2086
  "${PIP[@]}" install $TORCH_SPEC
fi

echo "[setup] installing hf_vssl[demo,study,dev]"
"${PIP[@]}" install -e ".[demo,study,dev]"
echo "[setup] done: $("$VENV/bin/python" -c 'import hf_vssl, torch; print("hf_vssl", hf_vssl.__version__, "torch", torch.__version__)')"
