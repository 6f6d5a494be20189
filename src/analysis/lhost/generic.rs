//! The last resort: a message from a mailer-daemon (or with a bounce subject and an SMTP error
//! in its text) that no specific module recognised. Addresses in the notice part, with the
//! lines that follow them, become recipients.

use super::super::mail::Mail;
use super::super::status;
use super::text::{self, Exclusions};
use super::{super::original, Found};

pub fn parse(mail: &Mail<'_>) -> Option<Found> {
    let sender = text::from_bounce_sender(mail);
    let subject = text::bounce_subject(mail);
    if !sender && !subject {
        return None; // the cheap gate: most messages that reach here are no bounce
    }
    let (notice, _) = mail.split_original();
    let has_code =
        status::find_enhanced(notice).is_some() || status::find_reply_code(notice).is_some();
    if !(sender && (subject || has_code) || subject && has_code) {
        return None;
    }
    // A person's automatic reply can say "delivery failed", quote a number and use the null
    // return path: unless a mailer-daemon wrote it, auto-reply marks win.
    if !text::from_daemon(mail) && super::super::rfc3834::detect(mail).is_some() {
        return None;
    }
    let found = scan(mail);
    (!found.recipients.is_empty()).then_some(found)
}

/// The generic scan without the "is this a bounce?" gate: used to fill in diagnostics that a
/// specific module recognised the template for but could not read (a translated template,
/// a DSN without Diagnostic-Code).
pub fn scan(mail: &Mail<'_>) -> Found {
    let (notice, _) = mail.split_original();
    let original = mail
        .text_original()
        .cloned()
        .or_else(|| original::from_parts(mail));
    let excl = Exclusions::for_mail(mail, &[original.as_ref().and_then(|o| o.from.as_deref())]);
    let mut recipients = text::scan(notice, &excl, "failed");
    text::add_transcript_evidence(&mut recipients, notice, "failed");
    Found {
        mta: "generic",
        recipients,
        original,
    }
}
