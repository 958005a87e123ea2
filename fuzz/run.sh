#!/usr/bin/env bash
# Fuzzes jwtdeny's token path and JWKS loader with cargo-fuzz (libFuzzer).
#
#   fuzz/run.sh <seconds> [target ...]     each target (default: token jwks) for <seconds>
#
# Environment: FUZZ_SANITIZER (default none; "address" for ASan), FUZZ_RUNS (stop a target after
# this many executions instead of, or before, <seconds>), FUZZ_JOBS (parallel fuzzing processes
# per target, default 1), FUZZ_MAX_LEN (longest input, default 4096 bytes).
#
# Inputs: fuzz/seeds/<target> (committed seeds made from tests/vectors), fuzz/regressions/<target>
# (inputs that once failed: kept forever, also checked by `cargo test --test props`), and the
# growing fuzz/corpus/<target> (not committed). A failing input lands in fuzz/artifacts/<target>/;
# the script then prints how to minimize it, and exits non-zero.
#
# cargo-fuzz passes -Z flags to rustc, which the stable toolchain accepts with RUSTC_BOOTSTRAP=1.
# The code under test is safe Rust, so by default no sanitizer (several times faster); rustc's
# debug assertions and overflow checks stay on, as cargo-fuzz sets them.
set -euo pipefail

usage() { echo "usage: fuzz/run.sh <seconds> [token|jwks ...]" >&2; exit 2; }
[[ $# -ge 1 && $1 =~ ^[0-9]+$ && $1 -gt 0 ]] || usage
seconds=$1
shift
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(token jwks)

cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-none}
jobs=${FUZZ_JOBS:-1}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: installing cargo-fuzz from crates.io" >&2
    cargo install cargo-fuzz --locked
fi

for t in "${targets[@]}"; do
    [[ -f fuzz_targets/$t.rs ]] || { echo "fuzz/run.sh: no target $t" >&2; exit 2; }
    cargo fuzz build -s "$sanitizer" "$t"
done

mkdir -p logs
status=0
summary=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t" "seeds/$t" "regressions/$t"
    log="logs/$t.log"
    args=(-max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="artifacts/$t/"
          -dict="dicts/$t.dict" -max_len="${FUZZ_MAX_LEN:-4096}")
    [[ -n ${FUZZ_RUNS:-} ]] && args+=(-runs="$FUZZ_RUNS")
    if [[ $jobs -gt 1 ]]; then
        args+=(-fork="$jobs")
    fi
    echo "== fuzz $t for ${seconds}s ($sanitizer sanitizer, $jobs job(s)); log in fuzz/$log"
    started=$(date +%s)
    if cargo fuzz run -s "$sanitizer" "$t" "corpus/$t" "seeds/$t" "regressions/$t" -- "${args[@]}" \
        >"$log" 2>&1; then
        result="no failure"
    else
        result="FAILED"
        status=1
        grep -E "panicked at|ERROR: libFuzzer|SUMMARY" "$log" | head -5 >&2 || true
        for a in "artifacts/$t"/crash-* "artifacts/$t"/timeout-* "artifacts/$t"/oom-*; do
            [[ -e $a ]] || continue
            echo "fuzz/run.sh: failing input fuzz/$a; minimize it with" >&2
            echo "  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz tmin -s $sanitizer $t $a)" >&2
            echo "  then keep it as fuzz/regressions/$t/<name>" >&2
        done
    fi
    elapsed=$(( $(date +%s) - started ))
    # With -fork the children report; sum their last "#N" progress lines instead.
    execs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)
    if [[ -z $execs ]]; then
        execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
    fi
    corpus=$(find "corpus/$t" -type f | wc -l)
    summary+=("$t: ${execs:-?} executions in ${elapsed}s, corpus $corpus inputs, $result")
done

echo
echo "== fuzz summary ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
printf '%s\n' "${summary[@]}"
exit $status
