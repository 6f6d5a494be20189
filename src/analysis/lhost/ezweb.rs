//! EZweb (au by KDDI mobile mail, `ezweb.ne.jp`) bounces.
//!
//! Plain-text notices from `Postmaster@ezweb.ne.jp` (the Received trail says "EZweb Mail"):
//! Japanese lines (often EUC-JP mislabelled as ISO-2022-JP, so unreadable) and English ones.
//! Three shapes:
//!
//! * a reason sentence ("The user(s) account is disabled.", "Your message was not delivered
//!   within 0 days and 1 hours. Remote host is not responding.") and the recipients alone on
//!   their lines as `<address>`;
//! * "Each of the following recipients was rejected by a remote mail server." then, per
//!   recipient, `Recipient: <address>`, the command sent (`>>> RCPT TO:<...>`) and the reply
//!   (`<<< 550 ...`);
//! * the same sentence with no transcript (a domain filter refusal).
//!
//! The diagnostic is the reply when there is one, else the English sentences of the notice.
//! "not delivered within" is a delivery-time expiry: RFC 3463 X.4.7.

use super::super::mail::Mail;
use super::super::verdict::Recipient;
use super::super::{original, recipient_address};
use super::Found;
use super::text::{self, Exclusions};

pub fn parse(mail: &Mail<'_>) -> Option<Found> {
    let from = mail.from_address_str().unwrap_or_default();
    let ezweb = from.ends_with("@ezweb.ne.jp")
        && mail
            .headers("Received")
            .iter()
            .chain(mail.header("Message-ID").iter())
            .any(|h| h.contains("ezweb.ne.jp"))
        || from == "postmaster@ezweb.ne.jp";
    if !ezweb {
        return None;
    }
    let (notice, returned) = mail.split_original();
    // The returned original follows a rule of dashes or starts with its Received trail.
    let end = notice
        .find("\n----------")
        .or_else(|| notice.find("\nReceived:"))
        .unwrap_or(notice.len());
    let notice = &notice[..end];
    let original = returned
        .and_then(original::from_header_text)
        .or_else(|| original::from_header_text(&mail.text[end..]))
        .or_else(|| original::from_parts(mail));
    let excl = Exclusions::for_mail(mail, &[original.as_ref().and_then(|o| o.from.as_deref())]);

    let sentences: Vec<&str> = notice
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && l.is_ascii() && !l.contains('@'))
        .collect();
    let general = text::squash(&sentences.join(" "));
    let mut recipients: Vec<Recipient> = Vec::new();
    let lines: Vec<&str> = notice.lines().map(str::trim).collect();
    for (i, line) in lines.iter().enumerate() {
        crate::analysis::budget::check();
        if line.starts_with(">>>") || line.starts_with("<<<") {
            continue;
        }
        let Some(address) = text::addresses(line)
            .filter_map(recipient_address)
            .find(|a| !excl.excludes(a))
        else {
            continue;
        };
        let transcript: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.starts_with(">>>") || l.starts_with("<<<"))
            .copied()
            .collect();
        let replies: Vec<&str> = transcript
            .iter()
            .filter_map(|l| l.strip_prefix("<<<"))
            .map(str::trim)
            .collect();
        let diagnostic = if replies.is_empty() {
            general.clone()
        } else {
            replies.join(" ")
        };
        if let Some(mut r) = text::recipient(&address, &diagnostic, "failed")
            && !recipients.iter().any(|o| o.address == r.address)
        {
            if r.status.is_none() && diagnostic.contains("not delivered within") {
                r.status = Some("5.4.7".into());
            }
            recipients.push(r);
        }
    }
    if recipients.is_empty() {
        return None;
    }
    Some(Found {
        mta: "ezweb",
        recipients,
        original,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(body: &str) -> Found {
        let raw = format!(
            "From: Postmaster@ezweb.ne.jp\nTo: alice@example.jp\nSubject: Mail System Error\n\n{body}"
        );
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        parse(&mail).expect("recognised")
    }

    #[test]
    fn reason_sentence_then_recipient() {
        let f = found(
            "Your message was not delivered within 2 days and 0 hours.\n\
             Remote host is not responding.\n\n\
             The following recipients did not receive this message:\n\n\
             <bob@ezweb.ne.jp>\n",
        );
        let r = &f.recipients[0];
        assert_eq!(r.address, "bob@ezweb.ne.jp");
        assert_eq!(r.status.as_deref(), Some("5.4.7"));
        assert_eq!(
            r.diagnostic.as_deref(),
            Some(
                "Your message was not delivered within 2 days and 0 hours. Remote host is not responding. The following recipients did not receive this message:"
            )
        );
    }

    #[test]
    fn transcript_reply_is_the_diagnostic() {
        let f = found(
            "Each of the following recipients was rejected by a remote\nmail server.\n\n\
             \x20   Recipient: <carol@ezweb.ne.jp>\n\
             \x20   >>> RCPT TO:<carol@ezweb.ne.jp>\n\
             \x20   <<< 550 <carol@ezweb.ne.jp>: User unknown\n",
        );
        assert_eq!(f.recipients.len(), 1);
        let r = &f.recipients[0];
        assert_eq!(r.address, "carol@ezweb.ne.jp");
        assert_eq!(r.reply_code, Some(550));
        assert_eq!(
            r.diagnostic.as_deref(),
            Some("550 <carol@ezweb.ne.jp>: User unknown")
        );
    }
}
