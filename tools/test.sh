#!/usr/bin/env bash
# Sets everything up and runs the test suite. This is the command .ci/run runs.
# Besides .venv it creates (once) the Python 3.10 Lava environment that the Loihi tests run in.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh test
.venv/bin/snnc env lava >/dev/null
exec .venv/bin/python -m pytest "$@"
