#!/usr/bin/env bash
# Set up a fresh Debian 12 machine with Python 3.11: system packages, a virtualenv in .venv, the project.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# libusb for Open3D; chromium for the viewer's browser test and headless screenshots
APT_PACKAGES=(libusb-1.0-0 libgl1 libgomp1 chromium)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "[setup] installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv"
    "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first and pinned: an unpinned torch pulls several GB of CUDA wheels (../shared/NOTES.md).
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev]"
# Outputs of the official models for the equivalence tests: each official package goes into a throwaway folder
# (never into .venv); cached in .references/, so re-running costs nothing. Offline, those tests skip.
python scripts/build_references.py || echo "[setup] WARNING: some reference outputs were not built; their equivalence tests will skip"
echo "[setup] done: $(python -c 'import torch, open3d, cv2, numpy; print("torch", torch.__version__, "open3d", open3d.__version__, "cv2", cv2.__version__, "numpy", numpy.__version__)')"
