#!/usr/bin/env bash
# Issue 5: the module under valgrind memcheck (`make memcheck`).
#
# Builds the module, then runs tests/memcheck.rs, which starts redis-server under
#   valgrind --tool=memcheck --soname-synonyms=somalloc=*jemalloc* --leak-check=full
#            --errors-for-leak-kinds=definite --keep-debuginfo=yes
# (with a tiny LD_PRELOAD shim for jemalloc's sdallocx, see the comments there), drives a
# representative workload — every vector through CHECK / CHECK WITHCLAIMS / INSPECT / REVOKE,
# minted tokens for every algorithm through the keyed forms, REVOKEALL, KEYS LIST/RELOAD with good
# and bad files, CONFIG SET of every config with good and bad values, hostile tokens and wrong
# arities, MULTI and Lua, with jwtdeny.workers 0 and 2 — then SHUTDOWN NOSAVE; a second server
# runs a short workload and MODULE UNLOAD. The valgrind logs are parsed: any invalid
# read/write/free, use of uninitialised memory or definite leak with a frame in libjwtdeny.so
# fails; reports from Redis's own frames are listed but do not fail.
#
# Environment: MEMCHECK_DIR=<dir> keeps the logs there (default: a temp dir, kept on failure);
# MEMCHECK_ROUNDS=<n> repeats the workload; MEMCHECK_STRICT_UNLOAD=1 also fails on what MODULE
# UNLOAD leaves unreachable. JWTDENY_SERVER_BIN selects the server binary, as for the other tests.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || { echo "memcheck: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
command -v cc >/dev/null || { echo "memcheck: a C compiler (cc) is needed for the sdallocx shim" >&2; exit 1; }

cargo build --release
# Test a snapshot of the module just built: the run takes a while, and a rebuild meanwhile
# (sources edited) must not swap the library under valgrind or trip the harness's staleness check.
if [ -z "${JWTDENY_MODULE:-}" ]; then
	snap="$(mktemp -d)"
	trap 'rm -rf "$snap"' EXIT
	cp target/release/libjwtdeny.so "$snap/libjwtdeny.so"
	export JWTDENY_MODULE="$snap/libjwtdeny.so"
fi
cargo test --profile release-tests --test memcheck -- --ignored --nocapture --test-threads=1
