//! Amazon WorkMail bounces.
//!
//! Sent through Amazon SES (`X-Mailer: Amazon WorkMail`, `X-SES-Outgoing`) as a
//! `multipart/mixed` message, not a report: the text says "An error occurred while trying to
//! deliver the mail to the following recipients:", lists them, and then pastes RFC 3464
//! fields as plain text after "Technical report:". Those fields are read with the RFC 3464
//! block splitter, so each recipient keeps its own action, status and diagnostic.

use super::super::mail::Mail;
use super::super::{original, rfc3464};
use super::Found;

const MARKER: &str = "Technical report:";

pub fn parse(mail: &Mail<'_>) -> Option<Found> {
    let workmail = mail
        .header("X-Mailer")
        .is_some_and(|m| m.contains("Amazon WorkMail"));
    if !workmail {
        return None;
    }
    let start = mail.text.find(MARKER)? + MARKER.len();
    let report = rfc3464::Report::parse(&mail.text[start..]);
    let recipients = report.to_recipients();
    if recipients.is_empty() {
        return None;
    }
    Some(Found {
        mta: "amazonworkmail",
        recipients,
        original: original::from_parts(mail),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_pasted_report() {
        let raw = "From: MAILER-DAEMON@us-east-1.amazonses.com\n\
                   To: alice@example.awsapps.com\n\
                   X-Mailer: Amazon WorkMail\n\
                   Subject: Delivery Status Notification (Failure)\n\n\
                   An error occurred while trying to deliver the mail to the following recipients:\n\
                   bob@example.org\n\n\
                   Technical report:\n\n\
                   Reporting-MTA: dsn; a1-2.smtp-out.us-east-1.amazonses.com\n\n\
                   Action: failed\n\
                   Final-Recipient: rfc822; bob@example.org\n\
                   Diagnostic-Code: smtp; 552 5.2.2 <bob@example.org>... Mailbox full\n\
                   Status: 5.2.2\n";
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        let f = parse(&mail).unwrap();
        let r = &f.recipients[0];
        assert_eq!(r.address, "bob@example.org");
        assert_eq!(r.action, Some(crate::analysis::Action::Failed));
        assert_eq!(r.status.as_deref(), Some("5.2.2"));
        assert_eq!(r.reply_code, Some(552));
        assert_eq!(
            r.diagnostic.as_deref(),
            Some("552 5.2.2 <bob@example.org>... Mailbox full")
        );
    }
}
