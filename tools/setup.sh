#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment in .venv and installs snnc into it.
# Usage: bash tools/setup.sh [EXTRAS]   e.g. bash tools/setup.sh test
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || {
  echo "setup: snnc needs Python 3.11; set PYTHON to a python3.11 interpreter" >&2; exit 2; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
extras="${1:-}"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
