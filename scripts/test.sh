#!/usr/bin/env bash
# Runs every test of rebound on a fresh Debian machine: installs what the tests need (Dovecot
# for the IMAP integration tests, OpenSSL for their certificates, systemd-analyze for the
# shipped units), then `cargo test`.
# Fails loudly when something cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cargo >/dev/null || { echo "test.sh: cargo is missing (install Rust 1.95)" >&2; exit 1; }
[ -x /usr/sbin/dovecot ] || command -v dovecot >/dev/null || need+=(dovecot-imapd)
command -v openssl >/dev/null || need+=(openssl)
# systemd-analyze checks the unit files in contrib/systemd/ (nothing is started).
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
  echo "test.sh: installing ${need[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
case "$(/usr/sbin/dovecot --version 2>/dev/null || dovecot --version)" in
  2.3.*) ;;
  *) echo "test.sh: the IMAP tests need Dovecot 2.3 (found: $(dovecot --version 2>&1))" >&2; exit 1 ;;
esac

cargo test "$@"
