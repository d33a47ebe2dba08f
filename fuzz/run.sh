#!/usr/bin/env bash
# Build the fuzz targets and run each in turn; exits non-zero if any input
# crashed one, hung one (over FUZZ_TIMEOUT s) or took more memory than allowed.
#
#   run.sh smoke [TARGET...]   each for FUZZ_SECS seconds (default 8); what the
#                              committed corpus grows by is thrown away (CI)
#   run.sh long [TARGET...]    each for FUZZ_RUNS executions (default 10,000,000),
#                              new inputs added to corpus/TARGET (`make fuzz`)
#   run.sh cmin [TARGET...]    minimize corpus/TARGET to the inputs that matter
#
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets the stable compiler take
# them. FUZZ_SANITIZER=address builds with ASan; the default is none, as the
# parsers are safe Rust and ASan costs 3 to 4 times the speed and its own memory.
set -euo pipefail
cd "$(dirname "$0")"

mode=${1:-smoke}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^agent-procs-fuzz$')

export RUSTC_BOOTSTRAP=1
CARGO=${CARGO:-cargo}
flags=(--sanitizer "${FUZZ_SANITIZER:-none}" --debug-assertions)
# Hangs, memory: one input may run FUZZ_TIMEOUT s, the process may hold 512 MB
# (2 GB under ASan, whose quarantine and shadow take ~500 MB), one allocation
# may ask for 256 MB.
rss_mb=512
[ "${FUZZ_SANITIZER:-none}" = none ] || rss_mb=2048
limits=(-timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=$rss_mb -malloc_limit_mb=256 -print_final_stats=1)
# Logs of this run. log_index writes its files under $TMPDIR: a fresh directory,
# in memory where /dev/shm is (three times as fast), removed at the end.
scratch=target/scratch/$mode-$$
mkdir -p "$scratch"
shm=/dev/shm
[ -d $shm ] && [ -w $shm ] || shm=${TMPDIR:-/tmp}
TMPDIR=$(mktemp -d "$shm/agent-procs-fuzz.XXXXXX")
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT

if [ ${#targets[@]} -eq 1 ]; then
    "$CARGO" fuzz build "${flags[@]}" "${targets[0]}"
else
    "$CARGO" fuzz build "${flags[@]}"
fi

failed=()
printf '%-18s %12s %9s %8s %9s %8s\n' target runs exec/s secs rss_mb corpus > "$scratch/summary"
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log=$scratch/$t.log
    case $mode in
        smoke) dirs=("$scratch/$t" "corpus/$t"); run=(-max_total_time="${FUZZ_SECS:-8}") ;;
        long) dirs=("corpus/$t"); run=(-runs="${FUZZ_RUNS:-10000000}") ;;
        cmin)
            # One input per edge covered, the smallest: counting hits per edge
            # too would keep thousands of inputs (megabytes) per target.
            "$CARGO" fuzz cmin "${flags[@]}" "$t" "corpus/$t" -- "${limits[@]}" -use_counters=0 > "$log" 2>&1 ||
                { failed+=("$t"); tail -n 20 "$log"; }
            echo "$t: $(ls "corpus/$t" | wc -l) inputs, $(du -sb "corpus/$t" | cut -f1) bytes"
            continue ;;
        *) echo "usage: $0 smoke|long|cmin [TARGET...]" >&2; exit 64 ;;
    esac
    mkdir -p "${dirs[0]}"
    start=$(date +%s)
    if "$CARGO" fuzz run "${flags[@]}" "$t" "${dirs[@]}" -- "${limits[@]}" "${run[@]}" > "$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$t")
        grep -E -A 30 'ERROR: libFuzzer|panicked|==ERROR|SUMMARY' "$log" | head -n 60 >&2 || tail -n 40 "$log" >&2
    fi
    secs=$(( $(date +%s) - start ))
    [ "$mode" = smoke ] && rm -rf "${dirs[0]}"
    stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
    runs=$(stat number_of_executed_units)
    printf '%-18s %12s %9s %8s %9s %8s %s\n' "$t" "${runs:-?}" "$(stat average_exec_per_sec)" \
        "$secs" "$(stat peak_rss_mb)" "$(ls "corpus/$t" | wc -l)" "$status" | tee -a "$scratch/summary"
done
[ "$mode" = cmin ] || cat "$scratch/summary"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz $mode: failed: ${failed[*]} (inputs under fuzz/artifacts/; logs under fuzz/$scratch/)" >&2
    exit 1
fi
echo "fuzz $mode: ${#targets[@]} targets, 0 crashes"
