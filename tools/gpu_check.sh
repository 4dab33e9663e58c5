#!/usr/bin/env bash
# On a fresh CUDA machine, from the repository root: installs hsmlbench beside the machine's own
# torch and Triton (never replacing them), then runs `hsmlbench gpu-check` (at most 8 minutes)
# into OUT (default gpu-check/). Exit codes: those of `hsmlbench gpu-check` (0 all steps passed,
# 3 a step failed or ran out of time, 6 no CUDA device), or 2 when the machine has no torch.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu-check}
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "gpu_check.sh: no torch in $PYTHON; install the machine's CUDA build of torch first" >&2
    exit 2
fi
# Pin what the machine has, so that no dependency drags in another torch or Triton; tox's
# constraints.txt (the CPU build, for CI) is deliberately not used here.
KEEP=$(mktemp)
"$PYTHON" - > "$KEEP" <<'PY'
from importlib import metadata
for name in ("torch", "triton", "pytorch-triton"):
    try:
        print(f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        pass
PY
echo "gpu_check.sh: keeping $(tr '\n' ' ' < "$KEEP")"
unset PIP_CONSTRAINT
"$PYTHON" -m pip install --quiet -c "$KEEP" -e . pytest pytest-benchmark || exit 2
"$PYTHON" -m pip install --quiet -c "$KEEP" triton 2>/dev/null || true  # if the image has none
exec "$PYTHON" -m hsmlbench.cli gpu-check --out "$OUT"
