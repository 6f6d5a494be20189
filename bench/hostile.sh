#!/usr/bin/env bash
# What one crafted message can cost: notices listing N addresses in the shapes of real MTAs
# (Postfix, qmail, Exim, Sendmail, a DSN with N recipient blocks, a bare list, a generic text),
# a 7 MB single-line notice and a deeply nested MIME message, each analysed alone by
# `rebound classify --json`. Prints per message: size, wall and CPU time, peak RSS, and what came
# out (kind, recipients kept, recipients omitted over the cap).
#
#   bash bench/hostile.sh [N ...]        (default: 100000 200000)
#   BENCH_BIN=path bash bench/hostile.sh (another build, to compare)
#
# What bounds the cost (see src/analysis/budget.rs and MAX_ANALYSED_BYTES): every path is
# linear, only the first MiB of a message is analysed, at most 10,000 recipients are kept (the
# rest counted), and a message still over its time budget comes back `unparsed`.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-100000 200000}"); read -r -a sizes <<<"${sizes[*]}"
if [ -n "${BENCH_BIN:-}" ]; then bin=$(realpath "$BENCH_BIN")
else cargo build --release --quiet; bin=$PWD/target/release/rebound; fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

python3 - "$work" "${sizes[@]}" <<'PY'
import os, sys
work, sizes = sys.argv[1], [int(n) for n in sys.argv[2:]]
head = lambda subject, frm="MAILER-DAEMON@mx.example.net": (
    f"From: {frm}\nTo: news@example.com\nSubject: {subject}\n"
    "Date: Tue, 01 Dec 2026 10:00:00 +0000\nMessage-ID: <hostile@mx.example.net>\n")
shapes = {
    "postfix": lambda n: head("Undelivered Mail Returned to Sender") + "\nThis is the mail system at host mx.example.net.\n\n"
        "I'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients.\n\n"
        + "".join(f"<u{i}@example.org>: host mx.example.org[192.0.2.1] said: 550 5.1.1 User unknown (in reply to RCPT TO command)\n" for i in range(n)),
    "qmail": lambda n: head("failure notice") + "\nHi. This is the qmail-send program at mx.example.net.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        + "".join(f"<u{i}@example.org>:\n192.0.2.1 does not like recipient.\nRemote host said: 550 5.1.1 unknown\nGiving up on 192.0.2.1.\n\n" for i in range(n)),
    "exim": lambda n: head("Mail delivery failed: returning message to sender", "Mail Delivery System <Mailer-Daemon@mx.example.net>")
        + "\nThis message was created automatically by mail delivery software.\n\n"
        "A message that you sent could not be delivered to one or more of its\nrecipients. This is a permanent error. The following address(es) failed:\n\n"
        + "".join(f"  u{i}@example.org\n    host mx.example.org [192.0.2.1]\n    SMTP error from remote mail server after RCPT TO:<u{i}@example.org>:\n    550 5.1.1 unknown\n" for i in range(n)),
    "sendmail": lambda n: head("Returned mail: see transcript for details") + "\nThe original message was received at Tue, 1 Dec 2026 10:00:00 GMT\n\n"
        "   ----- The following addresses had permanent fatal errors -----\n"
        + "".join(f"<u{i}@example.org>\n    (reason: 550 5.1.1 User unknown)\n" for i in range(n))
        + "\n   ----- Transcript of session follows -----\n"
        + "".join(f"... while talking to mx.example.org.:\n>>> RCPT To:<u{i}@example.org>\n<<< 550 5.1.1 User unknown\n" for i in range(n)),
    "dsn": lambda n: head("Delivery Status Notification") + "MIME-Version: 1.0\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\nfailed\n"
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n"
        + "".join(f"Final-Recipient: rfc822; u{i}@example.org\nAction: failed\nStatus: 5.1.1\n\n" for i in range(n)) + "--B--\n",
    "list": lambda n: head("Undeliverable") + "\nYour message could not be delivered.\n"
        "The following recipients did not receive this message:\n" + "".join(f"<u{i}@example.org>\n" for i in range(n)),
    "generic": lambda n: head("failure notice") + "\nThe following addresses failed:\n\n"
        + "".join(f"user{i}@example.org\n    550 5.1.1 unknown\n\n" for i in range(n)),
}
for n in sizes:
    for name, make in shapes.items():
        open(os.path.join(work, f"{name}-{n}.eml"), "w").write(make(n))
# One 7 MB line of addresses and words, no line break; and MIME nested 2,000 deep.
line = " ".join(f"<u{i}@example.org> 550 5.1.1 unknown;" for i in range(200000))[: 7 << 20]
open(os.path.join(work, "one-line-7mb.eml"), "w").write(head("Undelivered Mail Returned to Sender") + "\n" + line + "\n")
nested = head("Delivery Status Notification") + "MIME-Version: 1.0\n"
for d in range(2000):
    nested += f"Content-Type: multipart/mixed; boundary=\"b{d}\"\n\n--b{d}\n"
nested += "Content-Type: text/plain\n\n<deep@example.org>: 550 5.1.1 User unknown\n"
for d in reversed(range(2000)):
    nested += f"--b{d}--\n"
open(os.path.join(work, "nested-2000.eml"), "w").write(nested)
PY

printf '%-22s %8s %8s %8s %8s  %s\n' message MB wall_s cpu_s rss_MB "result"
for f in "$work"/*.eml; do
  /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$bin" classify --json "$f" >"$work/out" 2>/dev/null || true
  read -r e u s m <"$work/time"
  result=$(python3 -c '
import json, sys
try:
    a = json.loads(open(sys.argv[1]).readline())
except Exception as e:
    print("no output:", e); sys.exit()
print(a["kind"], "recipients=%d" % len(a.get("recipients", [])),
      "omitted=%s" % a.get("omitted_recipients", 0), (a.get("error") or "")[:60])' "$work/out")
  printf '%-22s %8.1f %8s %8.2f %8d  %s\n' "$(basename "$f" .eml)" "$(($(stat -c %s "$f") / 1000))e-3" "$e" \
    "$(python3 -c "print($u + $s)")" "$((m / 1024))" "$result"
done
