#!/usr/bin/env bash
# Ingest speed: messages per second from files into the ledger (analysis + SQLite), with a
# corpus repeated N times. Each copy gets a distinct header line so that its bytes (and so its
# sha256) differ: every message is new work, not a duplicate.
#
#   bash bench/ingest.sh [CORPUS_DIR] [COPIES]     (default ../shared/corpus/sisimai/emails, 10)
#   BENCH_BIN=path bash bench/ingest.sh            (measure another rebound binary)
#
# Prints the ingest run's own figure, then a second run over the same files (all duplicates:
# the cost of a rescan), and the analysis alone (`classify`) for comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-../shared/corpus/sisimai/emails}
copies=${2:-10}
[ -d "$corpus" ] || { echo "bench/ingest.sh: no corpus at $corpus" >&2; exit 1; }

if [ -n "${BENCH_BIN:-}" ]; then bin=$(realpath "$BENCH_BIN")   # another build, to compare
else cargo build --release --quiet; bin=target/release/rebound; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for n in $(seq 1 "$copies"); do
  mkdir -p "$work/mail/$n"
  i=0
  find "$corpus" -type f | sort | while read -r f; do
    i=$((i + 1))
    { printf 'X-Bench-Copy: %s\n' "$n"; cat "$f"; } > "$work/mail/$n/$i.eml"
  done
done
total=$(find "$work/mail" -type f | wc -l)
echo "== $total messages ($copies copies of $corpus), $(du -sh "$work/mail" | cut -f1)"
echo "== ingest into an empty ledger"
/usr/bin/time -f "%e %U %S %M" -o "$work/time" "$bin" ingest --db "$work/bench.db" "$work/mail" | sed -n 1,2p
read -r e u s m <"$work/time"
echo "   (CPU ${u} s user + ${s} s sys, peak RSS $((m / 1024)) MB)"
echo "== ingest again (all duplicates)"
"$bin" ingest --db "$work/bench.db" "$work/mail" | sed -n 1p
echo "== analysis alone (classify --json > /dev/null)"
start=$(date +%s.%N)
"$bin" classify --json "$work/mail" > /dev/null || true
end=$(date +%s.%N)
echo "$total messages in $(echo "$end - $start" | bc) s ($(echo "$total / ($end - $start)" | bc) msg/s)"
echo "== ledger size: $(du -h "$work/bench.db" | cut -f1)"
