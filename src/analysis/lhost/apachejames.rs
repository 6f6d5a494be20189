//! Apache James. Its bounce mailet writes a short notice (often as a reply, with the
//! original's subject) and a summary of the message that failed:
//!
//! ```text
//! Error: Invalid user address
//!
//! Error message below:
//! 550 - Requested action not taken: no such user here
//!
//! Message details:
//!   Subject: Hello
//!   MAIL FROM: alice@sender.example
//!   RCPT TO: rcpt@example.org
//! ```
//!
//! Recognised by the two headings "Error message below:" and "Message details:". The
//! recipients are the `RCPT TO:` lines of the details; the diagnostic is the error line and
//! the paragraph under "Error message below:".

use super::super::mail::Mail;
use super::Found;
use super::notice::{Notice, first_address};
use super::text;

const ERROR: &str = "Error message below:";
const DETAILS: &str = "Message details:";

pub fn parse(mail: &Mail<'_>) -> Option<Found> {
    let t = &mail.text;
    static ERROR_AT: text::Literals = text::Literals::new(&[ERROR]);
    let error_at = ERROR_AT.find(t)?;
    let details_at = error_at + t[error_at..].find(DETAILS)?;
    let notice = Notice::of(mail, t);
    let headline = t[..error_at]
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("Error:"))
        .map(|l| l.trim().to_string())
        .unwrap_or_default();
    let below = t[error_at + ERROR.len()..details_at].trim();
    let diag = format!("{headline} {below}");
    let recipients = t[details_at..]
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let l = l.trim_start();
            (l.len() > 8 && l[..8].eq_ignore_ascii_case("RCPT TO:"))
                .then(|| first_address(&l[8..]))
                .flatten()
        })
        .filter_map(|a| text::recipient(a, &diag, "failed"))
        .collect();
    notice.found("apachejames", recipients)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_details_and_the_error() {
        let raw = "From: postmaster@rcpt.example\nTo: alice@sender.example\nSubject: Re: Hello\n\nError: Invalid user address\n\nError message below:\n550 - Requested action not taken: no such user here\n\nMessage details:\n  Subject: Hello\n  MAIL FROM: alice@sender.example\n  RCPT TO: bob@rcpt.example\n  From: alice@sender.example\n";
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        let f = parse(&mail).unwrap();
        assert_eq!(f.mta, "apachejames");
        assert_eq!(f.recipients.len(), 1);
        let r = &f.recipients[0];
        assert_eq!(r.address, "bob@rcpt.example");
        assert_eq!(r.reply_code, Some(550));
        assert_eq!(
            r.diagnostic.as_deref(),
            Some("Error: Invalid user address 550 - Requested action not taken: no such user here")
        );
    }
}
