//! Smail 3. A plain-text notice ("mail failed, returning to sender") framed by bar headings:
//!
//! ```text
//! |------------------------- Message log follows: -------------------------|
//!  no valid recipients were found for this message
//! |------------------------- Failed addresses follow: ---------------------|
//!  rcpt@example.org ... unknown host
//! |------------------------- Message text follows: ------------------------|
//! Received: ...
//! ```
//!
//! Each line under "Failed addresses follow:" is `address ... reason`; the message log is added
//! to every recipient's diagnostic. The returned message follows the last heading.

use super::super::mail::Mail;
use super::super::original;
use super::Found;
use super::notice::{Notice, first_address};
use super::text;

const FAILED: &str = "Failed addresses follow:";
const LOG: &str = "Message log follows:";
const TEXT: &str = "Message text follows:";

pub fn parse(mail: &Mail<'_>) -> Option<Found> {
    let t = &mail.text;
    static FAILED_AT: text::Literals = text::Literals::new(&[FAILED]);
    let failed_at = FAILED_AT.find(t)?;
    let line_start = t[..failed_at].rfind('\n').map_or(0, |i| i + 1);
    if !t[line_start..failed_at]
        .trim_start()
        .starts_with(['|', '-'])
    {
        return None; // the heading is a bar of dashes, not prose that mentions the words
    }
    let section = |start: usize| {
        let body = t[start..].split_once('\n').map_or("", |(_, r)| r);
        let end = body.find("\n|---").map_or(body.len(), |i| i + 1);
        if body.starts_with("|---") {
            ""
        } else {
            &body[..end]
        }
    };
    let log = t
        .find(LOG)
        .map(|i| text::squash(section(i)))
        .unwrap_or_default();
    let mut notice = Notice::of(mail, t);
    if notice.original.is_none()
        && let Some(i) = t.find(TEXT)
    {
        let returned = t[i..].split_once('\n').map_or("", |(_, r)| r);
        notice.original = original::from_header_text(returned);
    }
    let recipients = section(failed_at)
        .lines()
        .filter_map(|l| {
            let (head, reason) = l.split_once(" ... ").unwrap_or((l, ""));
            let address = first_address(head)?;
            text::recipient(address, &format!("{reason} {log}"), "failed")
        })
        .collect();
    notice.found("smail", recipients)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_failed_addresses_and_the_log() {
        let raw = "From: <MAILER-DAEMON@relay.example>\nTo: alice@sender.example\nSubject: mail failed, returning to sender\n\n|------------------------- Message log follows: -------------------------|\n no valid recipients were found for this message\n|------------------------- Failed addresses follow: ---------------------|\n bob@nowhere.example ... unknown host\n|------------------------- Message text follows: ------------------------|\nFrom: Alice <alice@sender.example>\nTo: bob@nowhere.example\nSubject: Hi\n\nhello\n";
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        let f = parse(&mail).unwrap();
        assert_eq!(f.mta, "smail");
        assert_eq!(f.recipients.len(), 1);
        assert_eq!(f.recipients[0].address, "bob@nowhere.example");
        assert_eq!(
            f.recipients[0].diagnostic.as_deref(),
            Some("unknown host no valid recipients were found for this message")
        );
        assert_eq!(
            f.original.and_then(|o| o.from).as_deref(),
            Some("alice@sender.example")
        );
    }
}
