#!/usr/bin/env bash
# Writes requirements.lock: every runtime dependency of pyproject.toml, pinned, for Python 3.11 on Linux x86_64,
# with the openvino extra: the backend ILCS_BACKEND=auto picks on a CPU (reports/speed.md), so the CPU image has it.
# torch and torchvision are left out (the Dockerfile installs them first, from TORCH_INDEX_URL: the CPU or the
# CUDA build), and so are the CUDA libraries and triton that only PyPI's CUDA torch brings.
# Run after changing pyproject.toml's dependencies:   deploy/lock.sh   (needs uv: pip install uv)
set -euo pipefail
cd "$(dirname "$0")/.."
compile=(uv pip compile pyproject.toml --extra openvino --python-version 3.11 --python-platform x86_64-manylinux_2_28 --quiet
         --annotation-style line --custom-compile-command "deploy/lock.sh")
# First pass: find the packages that come with PyPI's CUDA torch, to leave them out too.
cuda=$("${compile[@]}" --no-header | sed -nE 's/^((nvidia|cuda)-[a-z0-9-]+|triton)==.*/\1/p')
exclude=(--no-emit-package torch --no-emit-package torchvision)
for name in $cuda; do exclude+=(--no-emit-package "$name"); done
"${compile[@]}" "${exclude[@]}" -o requirements.lock
