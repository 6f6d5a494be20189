//! Zoho Mail bounces (`mailer-daemon@mail.zoho.com`).
//!
//! Two plain-text shapes, both followed by the returned original's headers:
//!
//! * a failure: one line per recipient, `address Invalid Address, ERROR_CODE :550,
//!   ERROR_CODE :5.1.1 <address>... User Unknown`;
//! * a warning ("THIS IS A WARNING MESSAGE ONLY", "Message will be retried for 4 more
//!   day(s)") listing `[Status: Error, Address: <address>, ResponseCode 421, , Host not
//!   reachable.]` under "----- The following addresses had fatal errors -----".
//!
//! The `ERROR_CODE :550` form hides the reply code from the generic finder, so it is read here.

use std::sync::LazyLock;

use regex::Regex;

use super::super::mail::Mail;
use super::super::verdict::Recipient;
use super::super::{original, recipient_address};
use super::Found;
use super::text;

static FAILURE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^\s*(\S+@\S+)\s+(.*ERROR_CODE\s*:\s*(\d{3}).*)$").unwrap());
static WARNING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\[Status: [^,]*, Address: <([^>]+)>, ResponseCode (\d{3}),[ ,]*([^\]]*)\]")
        .unwrap()
});

pub fn parse(mail: &Mail<'_>) -> Option<Found> {
    let from = mail.from_address_str().unwrap_or_default();
    if !from.starts_with("mailer-daemon@") || !from.contains("zoho") {
        return None;
    }
    let notice = mail.text.split("\nReceived:").next().unwrap_or("");
    let delayed = notice.contains("will be retried") || notice.contains("WARNING MESSAGE ONLY");
    let action = if delayed { "delayed" } else { "failed" };
    let mut recipients: Vec<Recipient> = Vec::new();
    for c in FAILURE.captures_iter(notice) {
        if let Some(mut r) = text::recipient(&c[1], &c[2], action) {
            r.reply_code = c[3].parse().ok();
            recipients.push(r);
        }
    }
    for c in WARNING.captures_iter(notice) {
        let Some(address) = recipient_address(&c[1]) else {
            continue;
        };
        let diagnostic = format!("{} {}", &c[2], c[3].trim());
        recipients.extend(text::recipient(&address, &diagnostic, action));
    }
    if recipients.is_empty() {
        return None;
    }
    Some(Found {
        mta: "zoho",
        recipients,
        original: original::from_header_text(&mail.text[notice.len()..])
            .or_else(|| original::from_parts(mail)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(body: &str) -> Found {
        let raw = format!(
            "From: mailer-daemon@mail.zoho.com\nTo: alice@zoho.example\nSubject: Undelivered Mail\n\n{body}\n\nReceived:from mail.zoho.com by mx.zohomail.com\nFrom:alice@zoho.example\nTo:<bob@example.org>\nSubject:hi\n"
        );
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        parse(&mail).expect("recognised")
    }

    #[test]
    fn failure_lines() {
        let f = found(
            "This is a permanent error.\n\n\
             bob@example.org Invalid Address, ERROR_CODE :550, ERROR_CODE :5.2.2 <bob@example.org>... Mailbox Full\n",
        );
        let r = &f.recipients[0];
        assert_eq!(r.address, "bob@example.org");
        assert_eq!(r.action, Some(crate::analysis::Action::Failed));
        assert_eq!(r.status.as_deref(), Some("5.2.2"));
        assert_eq!(r.reply_code, Some(550));
        assert_eq!(
            r.diagnostic.as_deref(),
            Some(
                "Invalid Address, ERROR_CODE :550, ERROR_CODE :5.2.2 <bob@example.org>... Mailbox Full"
            )
        );
    }

    #[test]
    fn warning_is_a_delay() {
        let f = found(
            "THIS IS A WARNING MESSAGE ONLY.\n\
             ----- The following addresses had fatal errors -----\n\
             [Status: Error, Address: <bob@example.org>, ResponseCode 421, , Host not reachable.]\n\n\
             Message will be retried for 4 more day(s)\n",
        );
        let r = &f.recipients[0];
        assert_eq!(r.address, "bob@example.org");
        assert_eq!(r.action, Some(crate::analysis::Action::Delayed));
        assert_eq!(r.reply_code, Some(421));
        assert_eq!(r.diagnostic.as_deref(), Some("421 Host not reachable."));
    }
}
