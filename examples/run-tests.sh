#!/usr/bin/env bash
# Installs the examples' dependencies (npm registry, PyPI) and runs their test suites. Each
# suite starts its own redis-server with the module loaded.
#   JWTDENY_MODULE  libjwtdeny.so to load (default: target/release/libjwtdeny.so of this repository)
# A suite is skipped, with a message, only when node or python3 is not installed at all.
# Exits non-zero if any suite fails.
set -uo pipefail

EXAMPLES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
JWTDENY_MODULE=$(realpath -m "${JWTDENY_MODULE:-$EXAMPLES_DIR/../target/release/libjwtdeny.so}")
export JWTDENY_MODULE

failed=()
note() { printf '\n== examples: %s\n' "$*"; }

run_express() {
  local dir=$EXAMPLES_DIR/express
  if ! command -v node >/dev/null; then
    note "express: skipped: node not found (install Node.js >= 18 to run it)"
    return 0
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$major" -lt 18 ]; then
    note "express: FAILED: node $(node --version) is too old, the example needs >= 18"
    return 1
  fi
  if ! command -v npm >/dev/null; then
    note "express: FAILED: node is installed but npm is not"
    return 1
  fi
  note "express: node $(node --version), npm $(npm --version)"
  cd "$dir" || return 1
  # npm ci only when node_modules is missing or older than the lockfile.
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error || { note "express: FAILED: npm ci"; return 1; }
  fi
  node --test test/
}

run_python() {
  local dir=$EXAMPLES_DIR/python
  if ! command -v python3 >/dev/null; then
    note "python: skipped: python3 not found"
    return 0
  fi
  note "python: $(python3 --version)"
  cd "$dir" || return 1
  # A venv under examples/python/.venv keeps the packages out of the system Python; where
  # venv is unavailable (Debian without python3-venv), install into the user's Python instead.
  local py=python3
  if [ -x .venv/bin/python ] || python3 -m venv .venv >/dev/null 2>&1; then
    py=$dir/.venv/bin/python
  else
    rm -rf .venv
    echo "python3 -m venv failed; installing the requirements with python3 -m pip instead"
  fi
  "$py" -m pip install -q --disable-pip-version-check -r requirements.txt ||
    { note "python: FAILED: pip install -r examples/python/requirements.txt"; return 1; }
  "$py" -m pytest -q
}

echo "examples: module $JWTDENY_MODULE"
for suite in express python; do
  if ! ( "run_$suite" ); then
    failed+=("$suite")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  note "FAILED: ${failed[*]}"
  exit 1
fi
note "all example suites passed (or were skipped as reported above)"
