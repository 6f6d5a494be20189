//! qmail and netqmail ("Hi. This is the qmail-send program at HOST."). One paragraph per
//! recipient, opened by the address in brackets and a colon:
//!
//! ```text
//! <rcpt@example.org>:
//! 192.0.2.1 does not like recipient.
//! Remote host said: 550 5.1.1 <rcpt@example.org>: User unknown
//! Giving up on 192.0.2.1.
//!
//! --- Below this line is a copy of the message.
//! ```
//!
//! The diagnostic is the paragraph (the remote reply included). "I'm not going to try again"
//! / "I've given up" are failures; "has not been delivered yet" a delay warning.

use super::super::mail::Mail;
use super::Found;
use super::notice::{Notice, first_address};
use super::text;

pub fn parse(mail: &Mail<'_>) -> Option<Found> {
    let t = &mail.text;
    static GREETING: text::Literals =
        text::Literals::new(&["This is the qmail-send program", "qmail-send program at"]);
    if !GREETING.any_in(t) {
        return None;
    }
    let notice = Notice::of(mail, t);
    let action = if t.contains("not been delivered yet") || t.contains("still trying") {
        "delayed"
    } else {
        "failed"
    };
    let mut recipients = Vec::new();
    let mut current: Option<(&str, String)> = None;
    for line in notice.text.lines() {
        crate::analysis::budget::check();
        let l = line.trim_end();
        if l.starts_with('<')
            && l.ends_with(':')
            && let Some(a) = first_address(l)
        {
            if let Some((a, d)) = current.take() {
                recipients.extend(text::recipient(a, &d, action));
            }
            current = Some((a, String::new()));
        } else if l.trim().is_empty() {
            if let Some((a, d)) = current.take() {
                recipients.extend(text::recipient(a, &d, action));
            }
        } else if let Some((_, d)) = current.as_mut() {
            d.push(' ');
            d.push_str(l.trim());
        }
    }
    if let Some((a, d)) = current.take() {
        recipients.extend(text::recipient(a, &d, action));
    }
    // Each paragraph head is the template's own statement of a failed address: kept even when
    // it is the sender's own (people mail themselves) or a role mailbox.
    notice.found_keeping("qmail", recipients, |_| true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_paragraphs() {
        let raw = "From: MAILER-DAEMON@mx.sender.example\nTo: alice@sender.example\nSubject: failure notice\n\nHi. This is the qmail-send program at mx.sender.example.\nI'm afraid I wasn't able to deliver your message to the following addresses.\nThis is a permanent error; I've given up. Sorry it didn't work out.\n\n<bob@rcpt.example>:\n192.0.2.8 does not like recipient.\nRemote host said: 552 5.2.2 <bob@rcpt.example>: Mailbox full\nGiving up on 192.0.2.8.\n\n--- Below this line is a copy of the message.\n\nFrom: alice@sender.example\nTo: bob@rcpt.example\n";
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        let f = parse(&mail).unwrap();
        assert_eq!(f.mta, "qmail");
        let r = &f.recipients[0];
        assert_eq!(r.address, "bob@rcpt.example");
        assert_eq!(r.status.as_deref(), Some("5.2.2"));
        assert_eq!(r.reply_code, Some(552));
        assert_eq!(
            r.diagnostic.as_deref(),
            Some(
                "192.0.2.8 does not like recipient. Remote host said: 552 5.2.2 <bob@rcpt.example>: Mailbox full Giving up on 192.0.2.8."
            )
        );
    }
}
