#!/usr/bin/env bash
# The README's test command: the whole pytest suite inside the environment.
# Extra arguments go to pytest (e.g. env/test.sh -k log_example_gen).
set -euo pipefail
exec "$(cd "$(dirname "$0")" && pwd)/run.sh" python -m pytest "$@"
