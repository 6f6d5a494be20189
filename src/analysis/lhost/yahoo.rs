//! Yahoo! Mail (and the Yahoo-built MTAs of Yahoo! Japan and others) bounces.
//!
//! A plain-text notice from `MAILER-DAEMON@...`, subject "Failure Notice", that opens with
//! "Sorry, we were unable to deliver your message to the following address." Each failed
//! recipient then stands alone on a line as `<address>:`, followed by the remote reply (often
//! after "Remote host said:", sometimes with the SMTP phase in brackets, `[RCPT_TO]`), until a
//! blank line or "--- Below this line is a copy of the message."

use super::super::mail::Mail;
use super::super::verdict::Recipient;
use super::super::{original, recipient_address};
use super::Found;
use super::text;

const MARKER: &str = "Sorry, we were unable to deliver your message to the following address";

pub fn parse(mail: &Mail<'_>) -> Option<Found> {
    static MARKER_AT: text::Literals = text::Literals::new(&[MARKER]);
    let start = MARKER_AT.find(&mail.text)?;
    let (notice, returned) = text::split_original(&mail.text[start..]);
    let mut recipients: Vec<Recipient> = Vec::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    let flush = |cur: &mut Option<(String, Vec<&str>)>, out: &mut Vec<Recipient>| {
        if let Some((addr, lines)) = cur.take() {
            let diag = lines.join(" ");
            let diag = diag.trim_start_matches("Remote host said:").trim();
            if let Some(mut r) = text::recipient(&addr, diag, "failed") {
                // Yahoo writes some replies as `550: text`, a form the generic finder skips.
                if r.reply_code.is_none() {
                    r.reply_code = diag
                        .split_once(':')
                        .and_then(|(code, _)| code.parse().ok())
                        .filter(|c| (400..600).contains(c));
                }
                out.push(r);
            }
        }
    };
    for line in notice.lines().skip(1) {
        crate::analysis::budget::check();
        let t = line.trim();
        if t.starts_with('<') && t.ends_with(">:") {
            flush(&mut current, &mut recipients);
            current = recipient_address(t).map(|a| (a, Vec::new()));
        } else if t.is_empty() {
            flush(&mut current, &mut recipients);
        } else if let Some((_, lines)) = current.as_mut() {
            lines.push(t);
        }
    }
    flush(&mut current, &mut recipients);
    if recipients.is_empty() {
        return None;
    }
    Some(Found {
        mta: "yahoo",
        recipients,
        original: original::pasted_or_attached(returned, mail),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_recipient_and_its_reply() {
        let raw = "From: MAILER-DAEMON@yahoo.com\n\
                   To: alice@example.net\n\
                   Subject: Failure Notice\n\n\
                   Sorry, we were unable to deliver your message to the following address.\n\n\
                   <bob@example.org>:\n\
                   Remote host said:\n\
                   552 5.2.2 <bob@example.org>... Mailbox is full\n\
                   [RCPT_TO]\n\n\
                   <carol@example.org>:\n\
                   550: 5.1.1 <carol@example.org>... no such user\n\n\
                   --- Below this line is a copy of the message.\n\n\
                   From: alice@example.net\nTo: bob@example.org\nSubject: hi\n\nhello\n";
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        let f = parse(&mail).unwrap();
        assert_eq!(f.recipients.len(), 2);
        let r = &f.recipients[0];
        assert_eq!(r.address, "bob@example.org");
        assert_eq!(r.status.as_deref(), Some("5.2.2"));
        assert_eq!(r.reply_code, Some(552));
        assert_eq!(
            r.diagnostic.as_deref(),
            Some("552 5.2.2 <bob@example.org>... Mailbox is full [RCPT_TO]")
        );
        assert_eq!(f.recipients[1].address, "carol@example.org");
        assert_eq!(f.recipients[1].status.as_deref(), Some("5.1.1"));
        assert_eq!(f.recipients[1].reply_code, Some(550));
        assert_eq!(
            f.original.unwrap().from.as_deref(),
            Some("alice@example.net")
        );
    }
}
