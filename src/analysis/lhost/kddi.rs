//! KDDI / au one net (`dion.ne.jp`) bounces.
//!
//! A `multipart/mixed` notice from `no-reply@...dion.ne.jp`, subject "メールエラー通知", whose
//! Japanese text is followed by an English one: `Your mail sent on: <date>`, then
//! `Could not be delivered to: <address>` and the reason on the next line(s), e.g. "As their
//! mailbox is full."

use super::super::mail::Mail;
use super::super::verdict::Recipient;
use super::super::{original, recipient_address};
use super::Found;
use super::text;

const MARKER: &str = "Could not be delivered to:";

pub fn parse(mail: &Mail<'_>) -> Option<Found> {
    let from = mail.from_address_str().unwrap_or_default();
    if !from.ends_with(".dion.ne.jp") && !from.ends_with("@dion.ne.jp") {
        return None;
    }
    let mut recipients: Vec<Recipient> = Vec::new();
    let mut lines = mail.text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((_, rest)) = line.split_once(MARKER) else {
            continue;
        };
        let Some(address) = recipient_address(rest) else {
            continue;
        };
        let mut reason: Vec<&str> = Vec::new();
        while let Some(next) = lines.peek() {
            if next.trim().is_empty() || next.contains(MARKER) {
                break;
            }
            reason.push(next.trim());
            lines.next();
        }
        recipients.extend(text::recipient(&address, &reason.join(" "), "failed"));
    }
    if recipients.is_empty() {
        return None;
    }
    Some(Found {
        mta: "kddi",
        recipients,
        original: original::from_parts(mail),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_english_part() {
        let raw = "From: no-reply@a0000.dion.ne.jp\n\
                   To: alice@example.jp\n\
                   Subject: mail error\n\n\
                   Your mail sent on: Mon, 2 Nov 2026 10:00:00 +0900\n\
                   \x20    Could not be delivered to: <bob@a0000.dion.ne.jp>\n\
                   \x20    As their mailbox is full.\n";
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        let f = parse(&mail).unwrap();
        let r = &f.recipients[0];
        assert_eq!(r.address, "bob@a0000.dion.ne.jp");
        assert_eq!(r.diagnostic.as_deref(), Some("As their mailbox is full."));
        assert_eq!(r.status, None);
        assert_eq!(r.reply_code, None);
    }
}
