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
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-5000 50000}"); read -r -a sizes <<<"${sizes[*]}"
corpus=${CORPUS:-../shared/corpus/sisimai/emails}
[ -d "$corpus" ] || { echo "bench/imap-poll.sh: no corpus at $corpus" >&2; exit 1; }
dovecot=/usr/sbin/dovecot
[ -x $dovecot ] || { echo "bench/imap-poll.sh: dovecot-imapd is not installed" >&2; exit 1; }

cargo build --release --quiet
bin=$PWD/target/release/rebound
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
echo "== Dovecot on 127.0.0.1:$port, corpus $corpus (${#files[@]} files, cycled)"

bare_fetch() { # user: LOGIN, SELECT, UID FETCH 1:* BODY.PEEK[], LOGOUT, pipelined on one connection
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  printf 'a LOGIN %s pw\r\nb SELECT INBOX\r\nc UID FETCH 1:* (UID BODY.PEEK[])\r\nd LOGOUT\r\n' "$1" >&3
  cat <&3 >/dev/null; exec 3<&-
}
secs() { python3 -c 'import sys,time; t=time.monotonic(); import subprocess; subprocess.run(sys.argv[1:], check=False, stdout=subprocess.DEVNULL); print(f"{time.monotonic()-t:.2f}")' "$@"; }

for n in "${sizes[@]}"; do
  user=bench$n
  echo "$user:{PLAIN}pw:$muid:$mgid::$dir/mail/$user::" >>"$dir/users"
  md=$dir/mail/$user/Maildir; mkdir -p "$md"/{cur,new,tmp}
  python3 - "$md/cur" "$n" "${files[@]}" <<'PY'
import sys, os
dest, n, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
bodies = [open(f, 'rb').read() for f in files]
for i in range(n):
    with open(os.path.join(dest, f"1700000000.b{i}.bench:2,"), 'wb') as f:
        f.write(b"X-Bench-Seq: %d\n" % i + bodies[i % len(bodies)])
PY
  [ "$(id -u)" = 0 ] && chown -R "$muid:$mgid" "$dir/mail/$user"
  sleep 1.1 # passwd-file changes are noticed once a second
  bytes=$(du -sb "$md/cur" | cut -f1)
  bare_fetch "$user" # warm-up: Dovecot builds its index and uid list
  bare=$(secs bash -c "$(declare -f bare_fetch); port=$port; bare_fetch $user")
  work=$(mktemp -d); printf 'pw\n' >"$work/pw"
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
  /usr/bin/time -f "%e %M" -o "$work/time1" "$bin" poll --config "$work/rebound.toml" >"$work/out1"
  /usr/bin/time -f "%e %M" -o "$work/time2" "$bin" poll --config "$work/rebound.toml" >"$work/out2"
  read -r t1 m1 <"$work/time1"; read -r t2 m2 <"$work/time2"
  echo "== N=$n ($((bytes / 1024 / 1024)) MB)"
  echo "   bare UID FETCH 1:* BODY.PEEK[]   ${bare} s"
  echo "   rebound poll (all new)           ${t1} s  ($(python3 -c "print(f'{$t1/max($bare,0.01):.2f}')")x bare, peak RSS $((m1 / 1024)) MB)"
  echo "   rebound poll (nothing new)       ${t2} s  (peak RSS $((m2 / 1024)) MB)"
  echo "   $(cat "$work/out1")"
  rm -rf "$work"
done
