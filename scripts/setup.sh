#!/usr/bin/env bash
# Creates .venv/ at the repository root and installs lco (editable) with its dev extras.
# torch is installed first at the pinned CPU version so that resolving the other
# dependencies never pulls a multi-GB CUDA build onto a CPU-only machine.
# GPU users: set LCO_TORCH_SPEC (e.g. LCO_TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128")
# or install torch into .venv yourself first; an already-installed torch is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    # shellcheck disable=SC2086
    .venv/bin/pip install --quiet ${LCO_TORCH_SPEC:-torch==2.13.0}
fi
.venv/bin/pip install --quiet -e ".[dev]"
