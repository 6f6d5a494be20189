//! DragonFly Mail Agent (dma). A plain-text notice that opens with "This is the DragonFly Mail
//! Agent vX at HOST." and names one recipient per bounce:
//!
//! ```text
//! There was an error delivering your mail to <rcpt@example.org>.
//!
//! mx.example.org [192.0.2.1] did not like our RCPT TO:
//! 550 5.1.1 <rcpt@example.org>: Recipient address rejected: User unknown
//!
//! Message headers follow.
//! ```
//!
//! The diagnostic is every line between the recipient line and the returned headers.

use super::super::mail::Mail;
use super::Found;
use super::notice::{Notice, first_address};
use super::text;

const MARKER: &str = "This is the DragonFly Mail Agent";
const RECIPIENT: &str = "There was an error delivering your mail to";

pub fn parse(mail: &Mail<'_>) -> Option<Found> {
    static MARKER_IN: text::Literals = text::Literals::new(&[MARKER]);
    if !MARKER_IN.any_in(&mail.text) {
        return None;
    }
    let start = mail.text.find(RECIPIENT)?;
    let body = &mail.text[start..];
    let end = ["\nMessage headers follow.", "\nOriginal message follows."]
        .iter()
        .filter_map(|m| body.find(m))
        .min()
        .unwrap_or(body.len());
    let block = &body[..end];
    let (first, rest) = block.split_once('\n').unwrap_or((block, ""));
    let address = first_address(first)?;
    let notice = Notice::of(mail, &mail.text);
    let r = text::recipient(address, rest, "failed")?;
    notice.found("dragonfly", vec![r])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_recipient_and_the_remote_reply() {
        let raw = b"From: MAILER-DAEMON <>\nTo: alice@sender.example\nSubject: Mail delivery failed\n\nThis is the DragonFly Mail Agent v0.13 at df.sender.example.\n\nThere was an error delivering your mail to <bob@rcpt.example>.\n\nmx.rcpt.example [192.0.2.7] did not like our RCPT TO:\n552 5.2.2 <bob@rcpt.example>: Recipient address rejected: Mailbox full\n\nMessage headers follow.\n\nFrom: <alice@sender.example>\nTo: <bob@rcpt.example>\nSubject: hi\n";
        let mail = Mail::parse(raw).unwrap();
        let f = parse(&mail).unwrap();
        assert_eq!(f.mta, "dragonfly");
        assert_eq!(f.recipients.len(), 1);
        let r = &f.recipients[0];
        assert_eq!(r.address, "bob@rcpt.example");
        assert_eq!(r.status.as_deref(), Some("5.2.2"));
        assert_eq!(r.reply_code, Some(552));
        assert_eq!(
            r.diagnostic.as_deref(),
            Some(
                "mx.rcpt.example [192.0.2.7] did not like our RCPT TO: 552 5.2.2 <bob@rcpt.example>: Recipient address rejected: Mailbox full"
            )
        );
    }
}
