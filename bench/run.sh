#!/usr/bin/env bash
# jwtdeny benchmark (issue 4): builds, starts its own redis-server, measures, prints tables.
#   bench/run.sh            full run (a few minutes on 2 cores)
#   bench/run.sh --quick    small counts (smoke run)
#   bench/run.sh --save     also write bench/results.md
#   bench/run.sh --help     every option; see bench/README.md
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/run.py "$@"
