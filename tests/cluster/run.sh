#!/usr/bin/env bash
# Redis Cluster tests for jwtdeny (issue 6), and the unit tests of the client key helpers.
#
#   bash tests/cluster/run.sh            # from anywhere; exits non-zero on any failure
#   bash tests/cluster/run.sh -k failover   # extra arguments go to the cluster pytest run
#
# Needs redis-server and redis-cli (7.0+), python3, node (18+) and npm; installs the rest:
# redis-py, pytest, PyJWT and cryptography (with plain pip, or into tests/cluster/.venv when
# plain pip is refused), and node-redis (npm, into tests/cluster/node/node_modules).
# The module is $JWTDENY_MODULE, default target/release/libjwtdeny.so (built if missing).
# Every test starts its servers on free loopback ports and stops them, on failure too.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export JWTDENY_MODULE="${JWTDENY_MODULE:-$REPO/target/release/libjwtdeny.so}"

say() { printf '== %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
apt_install() {
	command -v apt-get >/dev/null || return 1
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# -- tools ---------------------------------------------------------------------------------
for t in redis-server redis-cli python3; do
	command -v "$t" >/dev/null || { echo "run.sh: $t not found (make deps installs it)" >&2; exit 1; }
done
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	say "installing node and npm"
	apt_install nodejs npm || { echo "run.sh: node and npm are needed (install nodejs and npm)" >&2; exit 1; }
fi

if [ ! -f "$JWTDENY_MODULE" ]; then
	say "building the module"
	(cd "$REPO" && cargo build --release)
fi

# -- python packages -----------------------------------------------------------------------
PKGS=("redis>=5" "pytest>=7" "pyjwt>=2" "cryptography")
has_pkgs() { "$1" -c 'import redis, pytest, jwt, cryptography' 2>/dev/null; }
VENV="$HERE/.venv"
if [ -x "$VENV/bin/python" ] && has_pkgs "$VENV/bin/python"; then
	PY="$VENV/bin/python"
elif has_pkgs python3 && python3 -c 'import redis, sys; sys.exit(int(redis.__version__.split(".")[0]) < 5)'; then
	PY=python3
elif python3 -m pip install -q --disable-pip-version-check "${PKGS[@]}" 2>/dev/null && has_pkgs python3; then
	PY=python3
else
	say "plain pip refused: installing into $VENV"
	if ! python3 -m venv "$VENV" 2>/dev/null; then
		rm -rf "$VENV"
		apt_install python3-venv && python3 -m venv "$VENV"
	fi
	"$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PKGS[@]}"
	PY="$VENV/bin/python"
fi

# -- node-redis ----------------------------------------------------------------------------
# node-redis 6 (package.json, package-lock.json) needs Node.js 20; on an older Node the same
# tests run with node-redis 5, whose createCluster API they use is the same.
if [ ! -f "$HERE/node/node_modules/redis/package.json" ]; then
	say "installing node-redis"
	if [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ]; then
		(cd "$HERE/node" && npm ci --no-audit --no-fund --loglevel=error)
	else
		(cd "$HERE/node" && npm install --no-save --no-package-lock --no-audit --no-fund --loglevel=error "redis@^5.12")
	fi
fi

# -- leftovers -----------------------------------------------------------------------------
# conftest.py appends each server's pid to $PIDS and puts the servers' dirs under $SCRATCH;
# if pytest itself dies, those servers are stopped and the dirs removed here.
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/jwtdeny-cluster-run.XXXXXX")"
PIDS="$SCRATCH/pids"
: >"$PIDS"
export JWTDENY_CLUSTER_PIDS="$PIDS" JWTDENY_CLUSTER_DIR="$SCRATCH"
cleanup() {
	while read -r pid; do
		comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
		if [ -n "$pid" ] && { [ "$comm" = redis-server ] || [ "$comm" = valkey-server ]; }; then
			kill -9 "$pid" 2>/dev/null || true
		fi
	done <"$PIDS"
	if [ -n "${JWTDENY_KEEP_LOGS:-}" ]; then echo "server dirs kept in $SCRATCH"; else rm -rf "$SCRATCH"; fi
}
trap cleanup EXIT

# -- run -----------------------------------------------------------------------------------
status=0
start=$SECONDS
say "client helpers: python ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"
(cd "$REPO/clients/python" && "$PY" -m pytest -q -p no:cacheprovider) || status=1
say "client helpers: node ($(node --version))"
node --test "$REPO/clients/node/test/" || status=1
# The jwtdeny npm package and wheel, installed as a user would into fresh projects under
# $SCRATCH: their standalone tests here, then test_packages.py runs them on the cluster.
say "packages: jwtdeny (npm pack, pip wheel) installed into fresh projects, standalone"
bash "$REPO/clients/node/run-tests.sh" "$SCRATCH/npm" || status=1
bash "$REPO/clients/python/run-tests.sh" "$SCRATCH/pip" || status=1
export JWTDENY_PKG_NODE_APP="$SCRATCH/npm/app" JWTDENY_PKG_PY="$SCRATCH/pip/venv/bin/python" JWTDENY_PKG_PY_APP="$SCRATCH/pip/app"
say "cluster: $("${JWTDENY_SERVER_BIN:-redis-server}" --version | cut -d' ' -f1-3), redis-py $("$PY" -c 'import redis; print(redis.__version__)'), node-redis $(node -p "require('$HERE/node/node_modules/redis/package.json').version")"
(cd "$HERE" && "$PY" -m pytest "$@") || status=1
say "tests/cluster/run.sh: $([ $status -eq 0 ] && echo passed || echo FAILED) in $((SECONDS - start))s"
exit $status
