//! The analysis engine: raw bytes of one message in, an [`Analysis`] out.
//!
//! The order of the questions asked matters, and is the main design decision here:
//!
//! 1. Can the bytes be read as a message at all? If not: [`Kind::Unparsed`], never a panic.
//! 2. Is it a *structured* report? A top-level `multipart/report` carrying an ARF
//!    `message/feedback-report` is a complaint (or an unsubscribe for ARF `opt-out`); one
//!    carrying `message/delivery-status` (RFC 3464) is a bounce, a delay or a delivery report
//!    depending on the recipients' `Action`s. Structure beats every header heuristic: a DSN
//!    often carries `Auto-Submitted: auto-replied` itself.
//! 3. Is it a non-standard bounce of a known MTA ([`lhost`])? Each module recognises its own
//!    template and extracts the recipients and their diagnostics from text.
//! 4. Only then: is it an automatic reply ([`rfc3834`])? an unsubscribe request
//!    ([`unsubscribe`])? Otherwise it is [`Kind::Other`].
//!
//! Each bounced recipient is then classified by the [`rules`] table: ordered, data-driven,
//! first match wins, and the verdict keeps the id of the rule that decided it.

pub mod arf;
pub mod kind;
pub mod lhost;
pub mod mail;
pub mod original;
pub mod rfc3464;
pub mod rfc3834;
pub mod rules;
pub mod status;
pub mod unsubscribe;
pub mod verdict;

pub use kind::Kind;
pub use verdict::{Label, Reason, Recipient};

use serde::{Deserialize, Serialize};

/// The message that bounced (or was complained about), as far as the report returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Original {
    pub message_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub subject: Option<String>,
    pub date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_unsubscribe: Option<String>,
}

/// Facts about the inbound message itself (not the returned original).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub message_id: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
    /// The message's Date header, RFC 3339 UTC when it could be parsed.
    pub date: Option<String>,
}

/// Everything rebound learned from one message. Its JSON form (see [`Analysis::to_json`]) is a
/// contract: keys may be added, never renamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub kind: Kind,
    /// Which MTA template or standard recognised the report (`rfc3464`, `postfix`, `exim`...).
    pub mta: Option<String>,
    /// ARF Feedback-Type for complaints (`abuse`, `opt-out`...).
    pub feedback_type: Option<String>,
    pub original: Original,
    pub recipients: Vec<Recipient>,
    /// The inbound message's own headers.
    #[serde(default)]
    pub envelope: Envelope,
    /// Why the message is `unparsed`, or what went wrong on the way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Analysis {
    /// An analysis for bytes that could not be read as a message.
    pub fn unparsed(error: impl Into<String>) -> Analysis {
        Analysis {
            kind: Kind::Unparsed,
            mta: None,
            feedback_type: None,
            original: Original::default(),
            recipients: Vec::new(),
            envelope: Envelope::default(),
            error: Some(error.into()),
        }
    }
}

/// The version of the analysis rules and parsers, stored with every message so that old rows
/// can be found and re-classified after the rules change.
pub const PARSER_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+rules1");

/// Analyses the raw bytes of one message. Never panics, never fails: bytes that are not a
/// message come back as [`Kind::Unparsed`] with the error.
pub fn analyze(raw: &[u8]) -> Analysis {
    let mail = match mail::Mail::parse(raw) {
        Ok(m) => m,
        Err(e) => return Analysis::unparsed(e),
    };
    let _ = &mail;
    Analysis::unparsed("analysis pipeline not written yet")
}
