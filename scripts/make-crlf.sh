#!/usr/bin/env bash
# Writes CRLF copies of a chosen set of LF samples to testdata/mail/crlf/<same path>. Run once
# after changing one of these samples; the copies are committed as files (.gitattributes keeps
# git from touching their line endings). tests/testdata.rs checks that each copy is classified
# exactly like its LF original.
set -euo pipefail
cd "$(dirname "$0")/../testdata/mail"

samples=(
  dsn/postfix-user-unknown.eml
  dsn/postfix-two-recipients.eml
  dsn/postfix-yahoo-tss04-delay.eml
  dsn/postfix-delivered.eml
  dsn/o365-recipient-not-found-5110.eml
  dsn/google-workspace-user-unknown.eml
  dsn/exim-dsn-status-500.eml
  text/exim-user-unknown.eml
  text/qmail-user-unknown.eml
  i18n/pt-br-caixa-postal-cheia.eml
  auto-reply/rfc3834-sieve-vacation.eml
  auto-reply/ja-fuzai-iso2022jp.eml
  complaint/yahoo-arf-abuse.eml
  unsubscribe/please-remove-me.eml
  other/human-reply.eml
)

rm -rf crlf
for s in "${samples[@]}"; do
  mkdir -p "crlf/$(dirname "$s")"
  # Byte-wise: strip any CR already there, then end every line with CRLF.
  LC_ALL=C sed -e 's/\r$//' -e 's/$/\r/' "$s" > "crlf/$s"
done
echo "make-crlf: wrote ${#samples[@]} CRLF copies under testdata/mail/crlf/"
