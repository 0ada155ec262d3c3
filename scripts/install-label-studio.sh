#!/usr/bin/env bash
# Installs Label Studio into a virtual environment of its own (LS_VENV, default .venv-label-studio).
#
# Why its own venv: label-studio pins Django, numpy, redis and boto3 at versions that differ from
# ours, so it cannot share .venv. The bridge talks to it over HTTP only, as it would in production;
# the tests start it from this venv on loopback with SQLite (skyra_stream/devstack/label_studio.py).
set -euo pipefail
PYTHON=${PYTHON:-python3}
LS_VENV=${LS_VENV:-.venv-label-studio}
LABEL_STUDIO_VERSION=${LABEL_STUDIO_VERSION:-1.23.2}
if [ -x "$LS_VENV/bin/label-studio" ] && "$LS_VENV/bin/python" -c "
import sys
from importlib.metadata import version
sys.exit(0 if version('label-studio') == '$LABEL_STUDIO_VERSION' else 1)"; then
  exit 0
fi
test -x "$LS_VENV/bin/python" || "$PYTHON" -m venv "$LS_VENV"
"$LS_VENV/bin/python" -m pip install --quiet "label-studio==$LABEL_STUDIO_VERSION"
"$LS_VENV/bin/python" -c "import label_studio"
