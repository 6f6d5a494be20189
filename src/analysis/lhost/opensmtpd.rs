//! OpenSMTPD. "This is the MAILER-DAEMON, please DO NOT REPLY to this e-mail." followed by one
//! line per recipient, at column 0, under an indented explanation:
//!
//! ```text
//!     An error has occurred while attempting to deliver a message for
//!     the following list of recipients:
//!
//! rcpt@example.org: 550 5.1.1 <rcpt@example.org>: User unknown
//!
//!     Below is a copy of the original message:
//! ```
//!
//! "A message is delayed for more than N ... for the following list of recipients" is a
//! delay warning.

use super::super::mail::Mail;
use super::Found;
use super::notice::Notice;
use super::text;

pub fn parse(mail: &Mail<'_>) -> Option<Found> {
    let t = &mail.text;
    static GREETING: text::Literals =
        text::Literals::new(&["This is the MAILER-DAEMON, please DO NOT REPLY"]);
    if !GREETING.any_in(t) {
        return None;
    }
    let start = t.find("following list of recipients")?;
    let notice = Notice::of(mail, t);
    let body = &t[start..];
    let body = &body[..body.find("Below is a copy").unwrap_or(body.len())];
    let action = if t[..start].contains("is delayed") {
        "delayed"
    } else {
        "failed"
    };
    let recipients = body
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with([' ', '\t']))
        .filter_map(|l| {
            let (addr, diag) = l.split_once(": ")?;
            text::recipient(addr, diag, action)
        })
        .collect();
    notice.found("opensmtpd", recipients)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_recipient_lines() {
        let raw = "From: Mailer Daemon <MAILER-DAEMON@mx.sender.example>\nTo: alice@sender.example\nSubject: Delivery status notification: error\n\n    Hi!\n\n    This is the MAILER-DAEMON, please DO NOT REPLY to this e-mail.\n\n    An error has occurred while attempting to deliver a message for\n    the following list of recipients:\n\nbob@rcpt.example: 550 5.1.1 <bob@rcpt.example>: Recipient address rejected: User unknown\n\n    Below is a copy of the original message:\n\nFrom: alice@sender.example\n";
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        let f = parse(&mail).unwrap();
        assert_eq!(f.mta, "opensmtpd");
        let r = &f.recipients[0];
        assert_eq!(r.address, "bob@rcpt.example");
        assert_eq!(r.status.as_deref(), Some("5.1.1"));
        assert_eq!(r.reply_code, Some(550));
        assert_eq!(
            r.diagnostic.as_deref(),
            Some("550 5.1.1 <bob@rcpt.example>: Recipient address rejected: User unknown")
        );
    }
}
