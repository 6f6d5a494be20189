//! Verizon Wireless (`vtext.com`, `vzwpix.com`) SMS/MMS gateway bounces.
//!
//! A short text from `post_master@vtext.com` whose subject is only the original's ("Re: ..."):
//! "Error: Invalid user address", then "Error message below:" and the remote reply, then
//! "Message details:" with the envelope, whose `RCPT TO:` line names the recipient.

use super::super::mail::Mail;
use super::super::recipient_address;
use super::Found;
use super::text;

pub fn parse(mail: &Mail<'_>) -> Option<Found> {
    let from = mail.from_address_str().unwrap_or_default();
    if !(from.ends_with("@vtext.com") || from.ends_with("@vzwpix.com")) {
        return None;
    }
    // The gateway writes its inner multipart's boundary parameter on an unindented line, so
    // MIME parsers find no text part: fall back to the raw message.
    let raw;
    let body = if mail.text.contains("Error message below:") {
        mail.text.as_str()
    } else {
        raw = String::from_utf8_lossy(mail.msg.raw_message()).replace("\r\n", "\n");
        raw.as_str()
    };
    let (_, after) = body.split_once("Error message below:")?;
    let (reply, details) = after.split_once("Message details:")?;
    let address = details
        .lines()
        .find_map(|l| l.trim().strip_prefix("RCPT TO:"))
        .and_then(recipient_address)?;
    let recipient = text::recipient(&address, reply, "failed")?;
    Some(Found {
        mta: "verizon",
        recipients: vec![recipient],
        original: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_reply_and_envelope() {
        let raw = "From: post_master@vtext.com\nTo: alice@example.org\nSubject: Re: hi\n\n\
                   Error: Invalid user address\n\n\
                   Error message below:\n\
                   550 - Requested action not taken: no such user here\n\n\
                   Message details:\n\
                   \x20 MAIL FROM: alice@example.org\n\
                   \x20 RCPT TO: 5550100@vtext.com\n";
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        let f = parse(&mail).unwrap();
        let r = &f.recipients[0];
        assert_eq!(r.address, "5550100@vtext.com");
        assert_eq!(r.reply_code, Some(550));
        assert_eq!(r.status, None);
        assert_eq!(
            r.diagnostic.as_deref(),
            Some("550 - Requested action not taken: no such user here")
        );
    }
}
