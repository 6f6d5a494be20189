//! Hotmail / Outlook.com complaint reports (Microsoft's Junk Mail Reporting Program) in their
//! older, non-ARF form.
//!
//! A `multipart/mixed` message from `staff@hotmail.com` with the subject "complaint about
//! message from &lt;IP&gt;", carrying the complained-about message as `message/rfc822`. Microsoft
//! adds `X-HmXmrOriginalRecipient` to that message: the address of the user who complained.

use mail_parser::PartType;

use super::super::mail::Mail;
use super::super::verdict::Recipient;
use super::super::{Kind, original, recipient_address};
use super::Notification;

pub fn complaint(mail: &Mail<'_>) -> Option<Notification> {
    let from = mail.from_address_str().unwrap_or_default();
    if !from.ends_with("@hotmail.com")
        || !mail
            .subject()
            .to_ascii_lowercase()
            .starts_with("complaint about message from")
    {
        return None;
    }
    let inner = mail.msg.parts.iter().find_map(|p| match &p.body {
        PartType::Message(m) => Some(m),
        _ => None,
    })?;
    let original = original::from_message(inner);
    let address = inner
        .header_raw("X-HmXmrOriginalRecipient")
        .and_then(recipient_address)
        .or_else(|| original.to.clone())?;
    Some(Notification {
        mta: "hotmail",
        kind: Kind::Complaint,
        feedback_type: Some("abuse".into()),
        recipients: vec![Recipient {
            address,
            ..Recipient::default()
        }],
        original,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_complaining_recipient() {
        let raw = "From: staff@hotmail.com\nTo: abuse@example.org\n\
                   Subject: complaint about message from 192.0.2.1\n\
                   MIME-Version: 1.0\n\
                   Content-Type: multipart/mixed; boundary=\"b\"\n\n\
                   --b\nContent-Type: message/rfc822\n\n\
                   X-HmXmrOriginalRecipient: carol@hotmail.example\n\
                   From: alice@example.org\nTo: carol@hotmail.example\nSubject: news\n\nhello\n\
                   --b--\n";
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        let n = complaint(&mail).unwrap();
        assert_eq!(n.kind, Kind::Complaint);
        assert_eq!(n.recipients[0].address, "carol@hotmail.example");
        assert_eq!(n.original.from.as_deref(), Some("alice@example.org"));
    }
}
