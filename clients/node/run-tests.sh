#!/usr/bin/env bash
# Tests of the jwtdeny npm package as a user gets it: `npm pack` this directory, install the
# tarball into a fresh project, and run test-app/test there against a real redis-server (and
# `tsc --noEmit` on a TypeScript file using it). A file missing from the package fails them.
#
#   bash clients/node/run-tests.sh [dir]   # dir: where the project goes (default: a temp dir,
#                                          # removed at the end); prints its path as APP=<path>
#   JWTDENY_MODULE  the module (default target/release/libjwtdeny.so)
#   JWTDENY_KEEP_APP=1  prepare the project and print APP=<path> without running the tests
#                     (tests/cluster/run.sh reuses it for the cluster suite)
#
# The test dependencies (express, fastify, ioredis, node-redis, typescript) live in
# test-app/node_modules (npm ci, once) and are linked into the project, not reinstalled.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export JWTDENY_MODULE="$(realpath -m "${JWTDENY_MODULE:-$REPO/target/release/libjwtdeny.so}")"
export JWTDENY_TEST_KEYS_FILE="$REPO/tests/vectors/jwks.json"
export JWTDENY_TEST_HS256_FILE="$REPO/tests/vectors/private/shared-hs256.key"
export JWTDENY_TEST_KID=shared-hs256
NPM_QUIET=(--no-audit --no-fund --loglevel=error)

deps="$HERE/test-app"
if [ ! -f "$deps/node_modules/.package-lock.json" ] || [ "$deps/package-lock.json" -nt "$deps/node_modules/.package-lock.json" ]; then
	(cd "$deps" && npm ci "${NPM_QUIET[@]}")
fi

if [ -n "${1:-}" ]; then
	WORK="$1"; mkdir -p "$WORK"
else
	WORK="$(mktemp -d "${TMPDIR:-/tmp}/jwtdeny-npm.XXXXXX")"
	[ -n "${JWTDENY_KEEP_APP:-}" ] || trap 'rm -rf "$WORK"' EXIT
fi
tarball="$(cd "$WORK" && npm pack --silent "$HERE" | tail -n1)"
APP="$WORK/app"
rm -rf "$APP"; mkdir -p "$APP"
cp -r "$deps/test" "$deps/types" "$deps/tsconfig.json" "$deps/tsconfig.dts.json" "$APP/"
printf '{ "name": "jwtdeny-user-app", "private": true }\n' >"$APP/package.json"
(cd "$APP" && npm install --offline "${NPM_QUIET[@]}" "$WORK/$tarball")
# The test dependencies, linked: node and tsc follow a link to its real path, so they resolve
# their own dependencies in test-app, while jwtdeny resolves nothing outside its own files.
for d in "$deps"/node_modules/* "$deps"/node_modules/.bin; do
	name="$(basename "$d")"
	[ "$name" = jwtdeny ] || [ -e "$APP/node_modules/$name" ] || ln -s "$d" "$APP/node_modules/$name"
done
echo "APP=$APP"
[ -z "${JWTDENY_KEEP_APP:-}" ] || exit 0

status=0
echo "== jwtdeny npm package: $tarball ($(tar -tzf "$WORK/$tarball" | wc -l) files), node $(node --version)"
(cd "$APP" && node --test test/) || status=1
echo "== tsc --noEmit (typescript $(node -p "require('$deps/node_modules/typescript/package.json').version")): index.d.ts alone, then types/usage.ts using it"
# index.d.ts is checked on its own, strict and with no @types at all (it needs none); the usage
# file then skips the libraries' .d.ts files, which is most of tsc's time.
(cd "$APP" && node_modules/.bin/tsc -p tsconfig.dts.json && node_modules/.bin/tsc -p tsconfig.json) || status=1
exit $status
