#!/usr/bin/env bash
# Sets everything up and runs the test suite. This is the command .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh test
exec .venv/bin/python -m pytest "$@"
