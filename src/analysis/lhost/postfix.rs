//! Postfix. Its bounces are RFC 3464 reports, but the human part carries the full remote
//! reply, which the DSN part often truncates or lacks (old Postfix sent text only, some relays
//! strip the report). Recognised by `X-Postfix-Queue-ID`, or the opening sentence "This is the
//! mail system at host HOST." / "This is the Postfix program at host HOST.":
//!
//! ```text
//! <rcpt@example.org>: host mx.example.org[192.0.2.1] said: 550 5.1.1
//!     <rcpt@example.org>: Recipient address rejected: User unknown (in reply to
//!     RCPT TO command)
//! <other@example.net> (expanded from <alias@example.com>): mailbox full
//! ```
//!
//! A recipient line starts at column 0 with a bracketed address; the indented lines under it
//! continue the diagnostic. "THIS IS A WARNING ONLY" / "Delayed Mail" mark a delay warning.
//! Two more Postfix notices are read: the postmaster copy "Postfix SMTP server: errors from
//! HOST" (a session transcript: the recipient is the `RCPT TO`, the diagnostic the last error
//! reply) and a report whose "Delivery report unavailable" leaves only the returned message's
//! `To` as the recipient.

use super::super::mail::Mail;
use super::super::verdict::Recipient;
use super::Found;
use super::notice::{Notice, first_address};
use super::text;

pub fn parse(mail: &Mail<'_>) -> Option<Found> {
    let t = &mail.text;
    let subject = mail.subject();
    let transcript = subject.starts_with("Postfix SMTP server: errors from");
    static GREETING: text::Literals = text::Literals::new(&[
        "This is the mail system at host",
        "This is the Postfix program at host",
    ]);
    if !(GREETING.any_in(t)
        || transcript
        || mail.msg.header_raw("X-Postfix-Queue-ID").is_some() && text::from_bounce_sender(mail))
    {
        return None;
    }
    let notice = Notice::of(mail, t);
    let action = if t.contains("THIS IS A WARNING ONLY") || subject.starts_with("Delayed Mail") {
        "delayed"
    } else {
        "failed"
    };
    let mut recipients = if transcript {
        session(notice.text)
    } else {
        lines(notice.text, action)
    };
    if recipients.is_empty()
        && t.contains("--- Delivery report unavailable ---")
        && let Some(to) = notice.original.as_ref().and_then(|o| o.to.clone())
    {
        recipients.extend(text::recipient(&to, "", action));
    }
    notice.found("postfix", recipients)
}

/// `<address>: diagnostic` lines and their indented continuations (the head itself may wrap:
/// `<a@b> (expanded from` / `    <c@d>): text`).
fn lines(notice: &str, action: &str) -> Vec<Recipient> {
    let mut blocks: Vec<String> = Vec::new();
    let mut open = false;
    for line in notice.lines() {
        crate::analysis::budget::check();
        if line.starts_with('<') && line.contains('@') {
            blocks.push(line.trim().to_string());
            open = true;
        } else if open && line.starts_with([' ', '\t']) && !line.trim().is_empty() {
            let b = blocks.last_mut().expect("open block");
            b.push(' ');
            b.push_str(line.trim());
        } else {
            open = false;
        }
    }
    blocks
        .iter()
        .filter_map(|b| {
            let (head, diag) = split_head(b)?;
            text::recipient(first_address(head)?, diag, action)
        })
        .collect()
}

/// `<a@b> (expanded from <c@d>): text` → (`<a@b> (expanded from <c@d>)`, `text`).
fn split_head(line: &str) -> Option<(&str, &str)> {
    let close = line.find('>')?;
    let rest = &line[close + 1..];
    let colon = rest.find(':')?;
    let head = &line[..close + 1 + colon];
    if head.len() > close + 1 && !rest[..colon].trim_start().starts_with('(') {
        return None;
    }
    Some((head, rest[colon + 1..].trim()))
}

/// The postmaster's copy of a failed SMTP session: `In:  RCPT TO:<a@b>` lines name the
/// recipients, the last `Out: 4xx/5xx` reply is the diagnostic.
fn session(notice: &str) -> Vec<Recipient> {
    let mut rcpts: Vec<&str> = Vec::new();
    let mut error: Option<String> = None;
    for line in notice.lines() {
        crate::analysis::budget::check();
        let l = line.trim_start();
        if let Some(cmd) = l.strip_prefix("In:") {
            let cmd = cmd.trim_start();
            if cmd.len() > 8 && cmd[..8].eq_ignore_ascii_case("RCPT TO:") {
                rcpts.extend(first_address(&cmd[8..]));
            }
        } else if let Some(reply) = l.strip_prefix("Out:") {
            let reply = reply.trim();
            if reply.starts_with(['4', '5']) {
                error = Some(reply.to_string());
            }
        }
    }
    let Some(error) = error else {
        return Vec::new();
    };
    rcpts
        .into_iter()
        .filter_map(|a| text::recipient(a, &error, "failed"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrapped_reply_and_expansion() {
        let raw = "From: MAILER-DAEMON@mx.sender.example (Mail Delivery System)\nTo: alice@sender.example\nSubject: Undelivered Mail Returned to Sender\n\nThis is the mail system at host mx.sender.example.\n\nI'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients. It's attached below.\n\n                   The mail system\n\n<bob@rcpt.example>: host mx.rcpt.example[192.0.2.4] said: 550 5.1.1\n    <bob@rcpt.example>: Recipient address rejected: User unknown (in reply to\n    RCPT TO command)\n<carol@rcpt.example> (expanded from <team@sender.example>): host\n    mx.rcpt.example[192.0.2.4] said: 452 4.2.2 Mailbox full (in reply to RCPT\n    TO command)\n";
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        let f = parse(&mail).unwrap();
        assert_eq!(f.mta, "postfix");
        assert_eq!(f.recipients.len(), 2);
        let bob = &f.recipients[0];
        assert_eq!(bob.address, "bob@rcpt.example");
        assert_eq!(bob.status.as_deref(), Some("5.1.1"));
        assert_eq!(bob.reply_code, Some(550));
        assert_eq!(
            bob.diagnostic.as_deref(),
            Some(
                "host mx.rcpt.example[192.0.2.4] said: 550 5.1.1 <bob@rcpt.example>: Recipient address rejected: User unknown (in reply to RCPT TO command)"
            )
        );
        assert_eq!(f.recipients[1].address, "carol@rcpt.example");
        assert_eq!(f.recipients[1].status.as_deref(), Some("4.2.2"));
    }

    #[test]
    fn reads_a_session_transcript() {
        let raw = "From: MAILER-DAEMON@mx.sender.example (Mail Delivery System)\nTo: postmaster@mx.sender.example (Postmaster)\nSubject: Postfix SMTP server: errors from relay.sender.example[192.0.2.3]\n\nTranscript of session follows.\n\n Out: 220 mx.sender.example ESMTP\n In:  MAIL FROM:<alice@sender.example>\n Out: 250 2.1.0 Ok\n In:  RCPT TO:<bob@rcpt.example>\n Out: 250 2.1.5 Ok\n In:  DATA\n Out: 354 End data with <CR><LF>.<CR><LF>\n Out: 451 4.3.0 Error: queue file write error\n In:  QUIT\n";
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        let f = parse(&mail).unwrap();
        assert_eq!(f.recipients.len(), 1);
        assert_eq!(f.recipients[0].address, "bob@rcpt.example");
        assert_eq!(f.recipients[0].reply_code, Some(451));
        assert_eq!(f.recipients[0].status.as_deref(), Some("4.3.0"));
        assert_eq!(
            f.recipients[0].diagnostic.as_deref(),
            Some("451 4.3.0 Error: queue file write error")
        );
    }
}
