//! Spam complaints: the Abuse Reporting Format (ARF, RFC 5965).
//!
//! An ARF report is a top-level `multipart/report; report-type=feedback-report` whose
//! `message/feedback-report` part uses the same field syntax as an RFC 3464 block, so it is read
//! with the same splitter. (mail-auth 0.13 also parses ARF, but its `FeedbackType` has no
//! `opt-out` and folds unknown types into `Other`, losing exactly the value that tells a
//! complaint from an unsubscribe request; so the raw field is read here.)
//!
//! The complained-about address is `Original-Rcpt-To`, else the `To` of the returned message.

use super::mail::Mail;
use super::rfc3464::{Report, address_of};
use super::{Original, original};

/// A parsed feedback report.
#[derive(Debug, Clone, PartialEq)]
pub struct Complaint {
    /// Feedback-Type, lowercased (`abuse`, `fraud`, `opt-out`, `not-spam`, ...).
    pub feedback_type: String,
    /// The recipient who complained.
    pub recipient: Option<String>,
    pub original: Original,
    pub user_agent: Option<String>,
    pub arrival_date: Option<String>,
}

impl Complaint {
    /// True for feedback that asks to stop mailing rather than reporting abuse.
    pub fn is_opt_out(&self) -> bool {
        matches!(
            self.feedback_type.as_str(),
            "opt-out" | "unsubscribe" | "opt_out"
        )
    }
}

/// Reads an ARF report from a message whose top-level type is `multipart/report` with
/// `report-type=feedback-report`, or that carries a `message/feedback-report` part.
pub fn parse(mail: &Mail<'_>) -> Option<Complaint> {
    let part = mail.parts_of_type("message/feedback-report").next()?;
    let fields = Report::parse(&Mail::part_text(part)).per_message;
    let original = original::from_parts(mail).unwrap_or_default();
    let recipient = fields
        .get("original-rcpt-to")
        .and_then(address_of)
        .or_else(|| fields.get("removal-recipient").and_then(address_of))
        .or_else(|| original.to.as_deref().and_then(super::recipient_address));
    Some(Complaint {
        feedback_type: fields
            .get("feedback-type")
            .unwrap_or("other")
            .trim()
            .to_ascii_lowercase(),
        recipient,
        original,
        user_agent: fields.get("user-agent").map(str::to_string),
        arrival_date: fields
            .get("arrival-date")
            .or(fields.get("received-date"))
            .map(str::to_string),
    })
}
