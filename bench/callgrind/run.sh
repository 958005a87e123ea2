#!/usr/bin/env bash
# Counts the instructions CHECK costs inside redis-server with valgrind's callgrind, for two
# builds of the module side by side: deterministic where bench/run.sh's timings are noisy.
#
#   bench/callgrind/run.sh <module.so> <cached|cached-sid|uncached> [python]
#
# Prints the inclusive instruction count of the module's command callback over the batch
# (drive.py). python (default python3) needs redis-py and PyJWT: tests/cluster/.venv/bin/python
# has both once tests/cluster/run.sh has run.
set -euo pipefail
so=$(realpath "$1"); mode=$2; py=${3:-python3}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
  --loadmodule "$so" keys-file "$repo/tests/vectors/jwks.json" >"$dir/valgrind.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.2; done
"$py" "$here/drive.py" "$port" "$mode"
redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
wait "$pid" || true
callgrind_annotate --inclusive=yes "$dir/cg.out" 2>/dev/null |
  grep -E 'RedisModule_OnLoad::__do_command|PROGRAM TOTALS' | sed 's/ ???:/ /'
