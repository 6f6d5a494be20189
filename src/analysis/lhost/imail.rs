//! Ipswitch IMail Server (`X-Mailer: <SMTP32 vN>`). A terse plain-text notice: one line per
//! recipient that names the problem before the address, then (for a remote refusal) the
//! remote server's whole reply under its own heading:
//!
//! ```text
//! undeliverable to rcpt@example.org
//!
//! Body of message generated response:
//! 550-REJECTED - Blacklisted URL in message.
//! 550 See http://uribl.example/
//!
//! Original message follows.
//! ```
//!
//! Also `Unknown user: rcpt@example.org`, `User mailbox exceeds allowed size: rcpt@...`.
//! Recognised by the `X-Mailer` header, or the "Body of message generated response:" heading.
//! The reply is the diagnostic of every recipient (lines that quote the recipient inside the
//! reply, `T=[rcpt@...]`, do not open a recipient).

use super::super::mail::Mail;
use super::Found;
use super::notice::Notice;
use super::text;

const RESPONSE: &str = "Body of message generated response:";

pub fn parse(mail: &Mail<'_>) -> Option<Found> {
    let smtp32 = mail
        .msg
        .header_raw("X-Mailer")
        .is_some_and(|x| x.contains("SMTP32"));
    static RESPONSE_IN: text::Literals = text::Literals::new(&[RESPONSE]);
    if !smtp32 && !RESPONSE_IN.any_in(&mail.text) {
        return None;
    }
    let notice = Notice::of(mail, &mail.text);
    let (head, response) = match notice.text.find(RESPONSE) {
        Some(i) => (&notice.text[..i], &notice.text[i + RESPONSE.len()..]),
        None => (notice.text, ""),
    };
    let response = text::squash(
        response
            .split("\n\n")
            .find(|p| !p.trim().is_empty())
            .unwrap_or(""),
    );
    let recipients = head
        .lines()
        .filter(|l| !text::is_header_line(l))
        .filter_map(|l| {
            let l = l.trim();
            let address = text::addresses(l).last()?;
            // The line is "<problem> <address>" or "<problem>: <address>", address last.
            if !l.trim_end_matches(['.', ' ']).ends_with(address) {
                return None;
            }
            let problem = l[..l.len() - address.len()].trim_end_matches([':', ' ', '<']);
            text::recipient(address, &format!("{problem} {response}"), "failed")
        })
        .collect();
    notice.found("imail", recipients)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_problem_line_and_the_remote_reply() {
        let raw = "From: \"Postmaster\" <postmaster@mail.sender.example>\nTo: <alice@sender.example>\nSubject: Undeliverable Mail\nX-Mailer: <SMTP32 v9.23>\n\nundeliverable to bob@rcpt.example\n\nBody of message generated response:\n550-REJECTED - Blacklisted URL in message.\n550 F=[alice@sender.example] T=[bob@rcpt.example]\n\nOriginal message follows.\nFrom: alice@sender.example\n";
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        let f = parse(&mail).unwrap();
        assert_eq!(f.mta, "imail");
        assert_eq!(f.recipients.len(), 1);
        let r = &f.recipients[0];
        assert_eq!(r.address, "bob@rcpt.example");
        assert_eq!(r.reply_code, Some(550));
        assert_eq!(
            r.diagnostic.as_deref(),
            Some(
                "undeliverable to 550-REJECTED - Blacklisted URL in message. 550 F=[alice@sender.example] T=[bob@rcpt.example]"
            )
        );
        let raw = "From: postmaster@mail.rcpt.example\nTo: alice@sender.example\nSubject: Undeliverable Mail\nX-Mailer: <SMTP32 v8.22>\n\nUser mailbox exceeds allowed size: bob@rcpt.example\nOriginal message follows.\nFrom: alice@sender.example\n";
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        let r = &parse(&mail).unwrap().recipients[0];
        assert_eq!(
            r.diagnostic.as_deref(),
            Some("User mailbox exceeds allowed size")
        );
    }
}
