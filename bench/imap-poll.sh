#!/usr/bin/env bash
# IMAP poll speed: N corpus-like bounces in a private Dovecot, `rebound poll` end to end
# (fetch + analysis + SQLite + keyword action) against a bare `UID FETCH 1:* BODY.PEEK[]` of the
# same folder over the same plain loopback connection, then a second poll with nothing new.
#
#   bash bench/imap-poll.sh [N ...]            (default: 5000 50000)
#   CORPUS=dir bash bench/imap-poll.sh 5000    (default ../shared/corpus/sisimai/emails,
#                                               read at run time, never copied into the project)
#
# Messages are written straight into the user's Maildir (APPEND would take minutes), each with a
# distinct X-Bench-Seq header so that every one is new work for the ledger.
#
# What the data looks like, and why. A real bounce mailbox receives mail in time order, from many
# distinct recipients: a busy address collects tens of events, not thousands. The corpus is a few
# hundred messages naming a handful of example addresses (kijitora@example.jp ...), all dated
# 2008-2020, so plain copies would give the hottest addresses thousands of events with identical,
# old times, each arriving "in the past" of everything before it: that is a worst case the
# ledger must survive, not what a mailbox looks like. So, by default, copy i (0-based) gets
#   - arrival time T(i) = 2026-01-01T00:00:00Z + 10 s * i (increasing, as mail arrives): the
#     top-level Date: (inserted when missing), every Arrival-Date: and Last-Attempt-Date: (the
#     ledger's event time is Last-Attempt-Date, else Date), and the file's mtime (INTERNALDATE);
#   - UIDs in that order (the Maildir's dovecot-uidlist is written by the script);
#   - every recipient address (those the analysis reports for the corpus, wherever they occur in
#     the message) with ".b<i mod BENCH_ADDRESSES>" appended to its local part (default 500), so
#     that an address of the corpus becomes up to 500 addresses and at N = 50,000 the busiest
#     ones have tens of events. The same rewrite is applied everywhere in a copy, so its
#     analysis is the original's (all kinds and labels but one message's of 457: an Exim bounce
#     naming its recipient by bare local part, a hard bounce instead of blocked).
#   BENCH_SAME_DATES=1   the old data instead: plain copies with their original dates and
#                        addresses, under the old file names (the worst case: thousands of
#                        same-time events per address, arriving in no particular order).
#   BENCH_ADDRESSES=K    the number of variants per address (1: no variation).
#   BENCH_BIN=path       a rebound binary to measure instead of building this tree (to compare
#                        two versions back to back on the same data).
#   BENCH_WRAP="cmd"     runs the first poll under cmd, e.g. "perf record -g -o /tmp/poll.perf"
#                        or "strace -f -c -o /tmp/poll.strace" (its RSS is then the wrapper's).
#   BENCH_KEEP=dir       copies the ledger of the last size measured into dir (to inspect it).
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-5000 50000}"); read -r -a sizes <<<"${sizes[*]}"
corpus=${CORPUS:-../shared/corpus/sisimai/emails}
[ -d "$corpus" ] || { echo "bench/imap-poll.sh: no corpus at $corpus" >&2; exit 1; }
dovecot=/usr/sbin/dovecot
[ -x $dovecot ] || { echo "bench/imap-poll.sh: dovecot-imapd is not installed" >&2; exit 1; }

if [ -n "${BENCH_BIN:-}" ]; then bin=$(realpath "$BENCH_BIN")
else cargo build --release --quiet; bin=$PWD/target/release/rebound; fi
dir=$(mktemp -d /tmp/rebound-bench.XXXXXX); chmod 755 "$dir"
mkdir -p "$dir"/{run,state,mail}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if [ "$(id -u)" = 0 ]; then muid=$(id -u nobody); mgid=$(id -g nobody); extra=""
else muid=$(id -u); mgid=$(id -g)
  extra="default_internal_user = $(id -un)
default_login_user = $(id -un)
default_internal_group = $(id -gn)
service anvil {
  chroot =
}
service imap-login {
  chroot =
}"
fi
: >"$dir/users"; chmod 644 "$dir/users"
cat >"$dir/dovecot.conf" <<CONF
base_dir = $dir/run
state_dir = $dir/state
instance_name = rebound-bench-$port
protocols = imap
listen = 127.0.0.1
log_path = $dir/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
mail_fsync = never
first_valid_uid = 1
$extra
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%n $dir/users
}
userdb {
  driver = passwd-file
  args = username_format=%n $dir/users
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
}
CONF
$dovecot -c "$dir/dovecot.conf"
trap '$dovecot -c "$dir/dovecot.conf" stop 2>/dev/null || true; rm -rf "$dir"' EXIT
mapfile -t files < <(find "$corpus" -type f -name '*.eml' | sort)
recipients=$dir/recipients # the corpus's bounced recipients, as the analysis sees them
"$bin" classify --json "${files[@]}" | python3 -c '
import json, sys
print("\n".join(sorted({r["address"].lower() for l in sys.stdin for r in json.loads(l)["recipients"]})))' >"$recipients"
echo "== Dovecot on 127.0.0.1:$port, corpus $corpus (${#files[@]} files, cycled)"

bare_fetch() { # user: LOGIN, SELECT, UID FETCH 1:* BODY.PEEK[], LOGOUT, pipelined on one connection
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  printf 'a LOGIN %s pw\r\nb SELECT INBOX\r\nc UID FETCH 1:* (UID BODY.PEEK[])\r\nd LOGOUT\r\n' "$1" >&3
  cat <&3 >/dev/null; exec 3<&-
}
bare_store() { # user: LOGIN, SELECT, UID STORE 1:* +FLAGS.SILENT (BareBench), LOGOUT: what the
  # server alone spends marking every message (Maildir renames each file), as rebound's action does
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  printf 'a LOGIN %s pw\r\nb SELECT INBOX\r\nc UID STORE 1:* +FLAGS.SILENT (BareBench)\r\nd LOGOUT\r\n' "$1" >&3
  cat <&3 >/dev/null; exec 3<&-
}
secs() { python3 -c 'import sys,time; t=time.monotonic(); import subprocess; subprocess.run(sys.argv[1:], check=False, stdout=subprocess.DEVNULL); print(f"{time.monotonic()-t:.2f}")' "$@"; }

for n in "${sizes[@]}"; do
  user=bench$n
  echo "$user:{PLAIN}pw:$muid:$mgid::$dir/mail/$user::" >>"$dir/users"
  md=$dir/mail/$user/Maildir; mkdir -p "$md"/{cur,new,tmp}
  BENCH_RECIPIENTS=$recipients python3 - "$md" "$n" "${files[@]}" <<'PY'
import os, re, sys, email.utils
md, n, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
bodies = [open(f, 'rb').read() for f in files]
same = os.environ.get('BENCH_SAME_DATES') == '1'
k = max(1, int(os.environ.get('BENCH_ADDRESSES', '500')))
start, step = 1767225600, 10  # 2026-01-01T00:00:00Z, one message every 10 s
split = re.compile(rb'\r?\n\r?\n')
date_hdr = re.compile(rb'^Date:[^\n]*\n(?:[ \t][^\n]*\n)*', re.I | re.M)
dsn_dates = re.compile(rb'^(Arrival-Date|Last-Attempt-Date):[^\n]*?(\r?)\n(?:[ \t][^\n]*\n)*', re.I | re.M)
address = re.compile(rb'(?<![\w.+-])([A-Za-z0-9][\w.+-]*)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)')
recipients = set(open(os.environ['BENCH_RECIPIENTS'], 'rb').read().split())

def rewrite(body, i, t):
    date = email.utils.formatdate(t, usegmt=True).encode()
    m = split.search(body)
    head, rest = (body[:m.start()], body[m.start():]) if m else (body, b'')
    eol = b'\r\n' if b'\r\n' in head[:200] else b'\n'
    head += eol
    if date_hdr.search(head):
        head = date_hdr.sub(lambda _: b'Date: ' + date + eol, head, count=1)
    else:
        head = b'Date: ' + date + eol + head
    rest = dsn_dates.sub(lambda m: m.group(1) + b': ' + date + m.group(2) + b'\n', rest)
    body = head[:-len(eol)] + rest
    if k > 1:
        suffix = b'.b%d' % (i % k)
        body = address.sub(lambda m: m.group(1) + suffix + b'@' + m.group(2)
                           if m.group(0).lower() in recipients else m.group(0), body)
    return body

uids = []
for i in range(n):
    t = start + step * i
    body = bodies[i % len(bodies)]
    if not same:
        body = rewrite(body, i, t)
    # The old worst case keeps the old names too: Dovecot numbers them in its own order.
    name = f"1700000000.b{i}.bench" if same else f"{t}.b{i:07d}.bench"
    path = os.path.join(md, 'cur', name + ':2,')
    with open(path, 'wb') as f:
        f.write(b"X-Bench-Seq: %d\n" % i + body)
    if not same:
        os.utime(path, (t, t))
    uids.append(name)
if not same:  # UIDs in arrival order (Dovecot would otherwise number them in readdir order)
    with open(os.path.join(md, 'dovecot-uidlist'), 'w') as f:
        f.write(f"3 V{start} N{n + 1}\n")
        for uid, name in enumerate(uids, 1):
            f.write(f"{uid} :{name}\n")
PY
  [ "$(id -u)" = 0 ] && chown -R "$muid:$mgid" "$dir/mail/$user"
  sleep 1.1 # passwd-file changes are noticed once a second
  bytes=$(du -sb "$md/cur" | cut -f1)
  bare_fetch "$user" # warm-up: Dovecot builds its index and uid list
  bare=$(secs bash -c "$(declare -f bare_fetch); port=$port; bare_fetch $user")
  work=$(mktemp -d); printf 'pw\n' >"$work/pw"; chmod 600 "$work/pw"
  cat >"$work/rebound.toml" <<TOML
[database]
path = "$work/rebound.db"
[[mailbox]]
name = "bench"
host = "127.0.0.1"
port = $port
tls = "none"
username = "$user"
auth = { method = "password_file", path = "$work/pw" }
TOML
  read -r _ cu0 cn0 cs0 ci0 cw0 _ </proc/stat
  RUST_LOG=warn,rebound::ingest::writer=debug /usr/bin/time -f "%e %M %U %S" -o "$work/time1" \
    ${BENCH_WRAP:-} "$bin" poll --config "$work/rebound.toml" >"$work/out1" 2>"$work/log1"
  read -r _ cu1 cn1 cs1 ci1 cw1 _ </proc/stat
  busy=$(( (cu1 + cn1 + cs1) - (cu0 + cn0 + cs0) )); idle=$(( (ci1 + cw1) - (ci0 + cw0) ))
  /usr/bin/time -f "%e %M %U %S" -o "$work/time2" "$bin" poll --config "$work/rebound.toml" >"$work/out2"
  read -r t1 m1 u1 s1 <"$work/time1"; read -r t2 m2 _ _ <"$work/time2"
  store=$(secs bash -c "$(declare -f bare_store); port=$port; bare_store $user")
  echo "== N=$n ($((bytes / 1024 / 1024)) MB)"
  echo "   bare UID FETCH 1:* BODY.PEEK[]   ${bare} s"
  echo "   rebound poll (all new)           ${t1} s  ($(python3 -c "print(f'{$t1/max($bare,0.01):.2f}')")x bare, peak RSS $((m1 / 1024)) MB, CPU ${u1} s user + ${s1} s sys)"
  echo "   rebound poll (nothing new)       ${t2} s  (peak RSS $((m2 / 1024)) MB)"
  echo "   $(cat "$work/out1")"
  # Added lines (the ones above keep their wording, so figures compare from build to build).
  ledger=$(cat "$work"/rebound.db* | wc -c)
  python3 - "$n" "$t1" "$u1" "$s1" "$ledger" "$work/log1" "$busy" "$idle" "$(nproc)" "$bare" "$store" <<'PY'
import re, sys
n, t, u, s, ledger, log = int(sys.argv[1]), *map(float, sys.argv[2:6]), sys.argv[6]
busy, idle, nproc = int(sys.argv[7]), int(sys.argv[8]), int(sys.argv[9])
bare, store = float(sys.argv[10]), float(sys.argv[11])
print(f"   bare UID STORE 1:* +FLAGS (kw)   {store:.2f} s  (the server's own cost of an action on every message; "
      f"fetch + store {bare + store:.2f} s, rebound poll {t / max(bare + store, 0.01):.2f}x that)")
text = re.sub(r'\x1b\[[0-9;]*m', '', open(log, errors='replace').read())
field = lambda line, k: int(re.search(k + r'=(\d+)', line).group(1))
print(f"   throughput                       {n / max(t, 0.001):,.0f} msg/s end to end, "
      f"CPU {(u + s) * 1e6 / n:.0f} us/msg (user+sys)")
print(f"   machine CPU during the poll      {busy / 100:.2f} s busy, {idle / 100:.2f} s idle "
      f"(all processes, Dovecot included; {nproc} cores)")
print(f"   ledger on disk                   {ledger / 1024 / 1024:.1f} MB, {ledger / n:,.0f} bytes/message")
for line in text.splitlines():
    if 'writer done' in line:
        print(f"   writer                           {field(line, 'write_us_per_message')} us/msg writing "
              f"({field(line, 'messages')} messages)")
for line in text.splitlines():
    if 'writer progress' in line:
        a, b = field(line, 'from'), field(line, 'to')
        print(f"   messages {a:>7,}-{b:<7,}        {field(line, 'wall_us_per_message')} us/msg wall, "
              f"{field(line, 'write_us_per_message')} us/msg writing")
PY
  if [ -n "${BENCH_KEEP:-}" ]; then cp "$work"/rebound.db* "$BENCH_KEEP"/ 2>/dev/null; fi
  rm -rf "$work"
done
