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
# DeepSpeed for the ZeRO-3 tests (2 CPU processes): its build imports torch, so no build isolation
# (else pip fetches a CUDA torch into the build environment); DS_BUILD_OPS=0 compiles nothing now
# (the CPU communication op is JIT-built on the first ZeRO-3 run, ~30 s).
if ! .venv/bin/python -c "import deepspeed" 2>/dev/null; then
    DS_BUILD_OPS=0 .venv/bin/pip install --quiet --no-build-isolation "deepspeed>=0.17"
fi
