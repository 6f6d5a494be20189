#!/usr/bin/env bash
# Scores `rebound classify --json` on a labelled corpus (default ../shared/corpus/sisimai) with
# ../shared/eval/score.py, checks the CRLF copies score like the LF ones, and fails when a figure
# falls below its floor in .ci/accuracy-floors. Raise the floors as accuracy improves.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-../shared/corpus/sisimai}
scorer=${SCORER:-$corpus/../../eval/score.py}
[ -f "$scorer" ] || { echo "score-corpus: scorer $scorer not found" >&2; exit 1; }
cargo build --quiet --bin rebound
bin=target/debug/rebound
out=$(mktemp); trap 'rm -f "$out"' EXIT
"$bin" classify --json "$corpus/emails" > "$out"
line=$(python3 "$scorer" "$corpus/expected.json" "$out" | tail -1)
echo "score: $line"
python3 - "$line" .ci/accuracy-floors "$out" <<'PY'
import json, sys
# CRLF copies (maildir/dos/) must get exactly the verdicts of their LF originals (maildir/bsd/).
preds = {}
for raw in open(sys.argv[3]):
    p = json.loads(raw)
    preds[p.pop("source").rsplit("emails/", 1)[-1]] = p
crlf = [k for k in preds if "/dos/" in k and k.replace("/dos/", "/bsd/") in preds]
differ = [k for k in crlf if preds[k] != preds[k.replace("/dos/", "/bsd/")]]
print(f"  CRLF copies   {len(crlf) - len(differ)}/{len(crlf)} identical to their LF originals")
got = dict(kv.split("=") for kv in sys.argv[1].split())
bad = []
for raw in open(sys.argv[2]):
    raw = raw.split("#")[0].strip()
    if not raw:
        continue
    name, op, floor = raw.split()
    value = float(got[name])
    ok = value >= float(floor) if op == ">=" else value <= float(floor)
    print(f"  {name:13} {value:7.2f} {op} {floor:>6}  {'ok' if ok else 'BELOW FLOOR'}")
    if not ok:
        bad.append(name)
if differ:
    bad.append("CRLF parity (" + ", ".join(differ[:5]) + ")")
if bad:
    sys.exit("accuracy regressed: " + ", ".join(bad))
PY
