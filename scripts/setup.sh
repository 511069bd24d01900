#!/usr/bin/env bash
# Install everything ghibli-lora needs on a fresh Debian/Ubuntu machine into ./.venv (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(redis-server tesseract-ocr libmagic1 curl chromium)
missing=()
for package in "${apt_packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The CPU wheel; an unpinned torch would pull gigabytes of CUDA.
python -m pip install -q torch==2.13.0
python -m pip install -q -e '.[dev]'
# simple_image_download 0.5 pins python-magic-bin (no Linux build): its real needs are in [crawler].
python -m pip install -q --no-deps simple_image_download==0.5
# The filter's text-detection model ships in this wheel; its own needs (opencv-python …) are not wanted.
python -m pip install -q --no-deps rapidocr_onnxruntime==1.4.4
