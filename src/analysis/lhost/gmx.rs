//! GMX and mail.com bounces (`MAILER-DAEMON@mail.gmx.com`, `@gmx.net`, `@mail.com`).
//!
//! An Exim-like plain-text notice: "... The following address failed:" (or "addresses
//! failed"), then for each recipient a line with the address alone, quoted (`"a@b":`) or in
//! angle brackets (`<a@b>`), followed by the error: "SMTP error from remote server after RCPT
//! command:", the host, and the remote reply; or "Reason:" and GMX's own words ("delivery retry
//! timeout exceeded"). The notice ends at "--- The header of the original message is
//! following. ---".

use super::super::mail::Mail;
use super::super::verdict::Recipient;
use super::super::{original, recipient_address};
use super::Found;
use super::text;

const START: &str = "The following address";
const END: &str = "--- The header of the original message is following. ---";

pub fn parse(mail: &Mail<'_>) -> Option<Found> {
    let from = mail.from_address_str().unwrap_or_default();
    let gmx = from.ends_with("@mail.gmx.com")
        || from.ends_with("@gmx.net")
        || from.ends_with("@gmx.com")
        || from.ends_with("@mail.com");
    if !gmx || !from.starts_with("mailer-daemon@") {
        return None;
    }
    let start = mail.text.find(START)?;
    let (notice, returned) = match mail.text[start..].split_once(END) {
        Some((n, r)) => (n, Some(r)),
        None => (&mail.text[start..], None),
    };
    let mut recipients: Vec<Recipient> = Vec::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    let finish = |cur: Option<(String, Vec<&str>)>, out: &mut Vec<Recipient>| {
        if let Some((addr, lines)) = cur {
            let diag = lines.join(" ");
            let diag = diag.trim_start_matches("Reason:").trim();
            out.extend(text::recipient(&addr, diag, "failed"));
        }
    };
    for line in notice.lines().skip(1) {
        crate::analysis::budget::check();
        let t = line.trim();
        let alone = t.trim_end_matches(':');
        let is_address = (alone.starts_with('"') && alone.ends_with('"'))
            || (alone.starts_with('<') && alone.ends_with('>'));
        match (is_address, recipient_address(alone)) {
            (true, Some(addr)) => {
                finish(current.take(), &mut recipients);
                current = Some((addr, Vec::new()));
            }
            _ if !t.is_empty() => {
                if let Some((_, lines)) = current.as_mut() {
                    lines.push(t);
                }
            }
            _ => {}
        }
    }
    finish(current, &mut recipients);
    if recipients.is_empty() {
        return None;
    }
    Some(Found {
        mta: "gmx",
        recipients,
        original: original::pasted_or_attached(returned, mail),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_quoted_and_bracketed_recipients() {
        let raw = "From: MAILER-DAEMON@mail.gmx.com\n\
                   To: alice@gmx.example\n\
                   Subject: Mail delivery failed: returning message to sender\n\n\
                   This message was created automatically by mail delivery software.\n\
                   A message that you sent could not be delivered to one or more of\n\
                   its recipients. This is a permanent error. The following address\n\
                   failed:\n\n\
                   \"bob@example.org\":\n\
                   SMTP error from remote server after RCPT command:\n\
                   host: mx.example.org\n\
                   550 5.1.1 <bob@example.org>... User unknown\n\n\
                   <carol@example.org>\n\
                   Reason:\n\
                   delivery retry timeout exceeded\n\n\
                   --- The header of the original message is following. ---\n\n\
                   From: alice@gmx.example\nTo: bob@example.org\nSubject: hi\n";
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        let f = parse(&mail).unwrap();
        assert_eq!(f.recipients.len(), 2);
        let r = &f.recipients[0];
        assert_eq!(r.address, "bob@example.org");
        assert_eq!(r.status.as_deref(), Some("5.1.1"));
        assert_eq!(r.reply_code, Some(550));
        assert_eq!(
            r.diagnostic.as_deref(),
            Some(
                "SMTP error from remote server after RCPT command: host: mx.example.org 550 5.1.1 <bob@example.org>... User unknown"
            )
        );
        let r = &f.recipients[1];
        assert_eq!(r.address, "carol@example.org");
        assert_eq!(
            r.diagnostic.as_deref(),
            Some("delivery retry timeout exceeded")
        );
        assert_eq!(r.status, None);
    }
}
