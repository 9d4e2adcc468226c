#!/usr/bin/env bash
# The GPU benchmark in one call (see benchmarks/gpu.py): prints the device,
# then one JSON line per measurement (MAML second/first order at 84x84x3 with
# the projected 60,000-step time, the classify step, the R2CNN and Cascade
# steps at 800 px, the data-parallel ResNet-50 bfloat16 step at 224 px).
#
#   bash benchmarks/gpu.sh                 # on a machine with jax[cuda12]
#   bash benchmarks/gpu.sh --cpu_smoke     # tiny shapes on the CPU
#
# Runs from the repository root with $PYTHON, else .venv/bin/python if there
# is one, else python3.
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [[ " $* " != *" --cpu_smoke "* ]] && command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
export PYTHONUNBUFFERED=1
# XLA takes GPU memory as it needs it, so a failed section cannot starve the next.
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
exec "$PYTHON" -m benchmarks.gpu "$@"
