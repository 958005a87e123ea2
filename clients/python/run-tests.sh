#!/usr/bin/env bash
# Tests of the jwtdeny Python package as a user gets it: build the wheel, install it into a
# fresh venv, and run test-app/package_checks.py there against a real redis-server, plus
# mypy --strict on the package and on a file using the installed wheel. A file missing from the
# wheel fails them.
#
#   bash clients/python/run-tests.sh [dir]   # dir: where the venv goes (default: a temp dir)
#   JWTDENY_MODULE  the module (default target/release/libjwtdeny.so)
#   JWTDENY_KEEP_APP=1  prepare the venv and print VENV_PY=<python> APP=<dir> without running
#                     the tests (tests/cluster/run.sh reuses them for the cluster suite)
#
# The test dependencies (redis-py, pytest, FastAPI, httpx, Flask, mypy, setuptools, PyJWT and
# cryptography for DPoP proofs) live in
# clients/python/.venv (pip, once); the fresh venv sees them through a .pth file, while the
# wheel itself is installed with --no-deps --no-index.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export JWTDENY_MODULE="$(realpath -m "${JWTDENY_MODULE:-$REPO/target/release/libjwtdeny.so}")"
export JWTDENY_TEST_KEYS_FILE="$REPO/tests/vectors/jwks.json"
export JWTDENY_TEST_HS256_FILE="$REPO/tests/vectors/private/shared-hs256.key"
export JWTDENY_TEST_KID=shared-hs256

DEPS="$HERE/.venv"
PKGS=("redis>=5" "pytest>=8" "fastapi>=0.110" "httpx" "flask>=3" "mypy>=1.8" "setuptools>=64" "wheel" "pyjwt>=2" "cryptography")
if ! [ -x "$DEPS/bin/python" ] || ! "$DEPS/bin/python" -c 'import redis, pytest, fastapi, httpx, flask, mypy, setuptools, jwt, cryptography' 2>/dev/null; then
	python3 -m venv "$DEPS" || { echo "run-tests.sh: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
	"$DEPS/bin/python" -m pip install -q --disable-pip-version-check "${PKGS[@]}"
fi

if [ -n "${1:-}" ]; then
	WORK="$1"; mkdir -p "$WORK"
else
	WORK="$(mktemp -d "${TMPDIR:-/tmp}/jwtdeny-pip.XXXXXX")"
	[ -n "${JWTDENY_KEEP_APP:-}" ] || trap 'rm -rf "$WORK"' EXIT
fi
rm -rf "$WORK/dist" "$WORK/venv" "$WORK/app" "$HERE/build"
"$DEPS/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation -w "$WORK/dist" "$HERE"
rm -rf "$HERE/build" "$HERE"/src/*.egg-info
wheel="$(ls "$WORK"/dist/jwtdeny-*.whl)"
python3 -m venv --without-pip "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' >"$WORK/purelib"
"$DEPS/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' >"$(cat "$WORK/purelib")/_jwtdeny_test_deps.pth"
"$DEPS/bin/python" -m pip --python "$VPY" install -q --disable-pip-version-check --no-deps --no-index "$wheel"
cp -r "$HERE/test-app" "$WORK/app"
echo "VENV_PY=$VPY"
echo "APP=$WORK/app"
[ -z "${JWTDENY_KEEP_APP:-}" ] || exit 0

status=0
echo "== jwtdeny wheel: $(basename "$wheel") ($("$VPY" -c "import zipfile, sys; print(len(zipfile.ZipFile(sys.argv[1]).namelist()))" "$wheel") files), $("$VPY" --version)"
(cd "$WORK/app" && "$VPY" -m pytest -q -p no:cacheprovider package_checks.py) || status=1
echo "== mypy --strict: the package source, and a file using the installed wheel"
(cd "$HERE" && "$DEPS/bin/python" -m mypy --config-file test-app/mypy.ini --cache-dir "$DEPS/.mypy-cache-src" src/jwtdeny) || status=1
(cd "$WORK/app" && "$VPY" -m mypy --config-file mypy.ini --cache-dir "$DEPS/.mypy-cache-app" usage.py) || status=1
exit $status
