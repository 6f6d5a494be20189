//! The verdict on one bounced recipient: a coarse [`Label`] that drives policy, a finer
//! [`Reason`] that explains it, and the evidence it was drawn from.
//!
//! Labels have a fixed meaning shared by the whole product (see the crate docs); reasons are
//! finer and each maps to exactly one default label, so that a rule only ever names a reason.

use serde::{Deserialize, Serialize};

use super::phase::Phase;

/// What the sender must do about a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    /// Permanent failure of a well-formed address: suppress now.
    Hard,
    /// Temporary failure: retry with backoff.
    Soft,
    /// The provider refuses the *sender*: pause the provider, do not retry the address.
    Blocked,
    /// A data-quality problem detectable before sending: suppress and flag the list source.
    Invalid,
}

impl Label {
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Hard => "hard",
            Label::Soft => "soft",
            Label::Blocked => "blocked",
            Label::Invalid => "invalid",
        }
    }

    pub fn parse(s: &str) -> Option<Label> {
        [Label::Hard, Label::Soft, Label::Blocked, Label::Invalid]
            .into_iter()
            .find(|l| l.as_str() == s)
    }
}

macro_rules! reasons {
    ($( $variant:ident = $name:literal => $label:ident ),* $(,)?) => {
        /// The finer cause of a bounce. Each reason has one default label.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Reason { $( $variant ),* , Undetermined }

        impl Reason {
            /// Every reason, in declaration order (handy for docs and tests).
            pub const ALL: &'static [Reason] = &[ $( Reason::$variant ),* , Reason::Undetermined ];

            pub fn as_str(self) -> &'static str {
                match self { $( Reason::$variant => $name ),* , Reason::Undetermined => "undetermined" }
            }

            /// The label this reason carries. `Undetermined` has none of its own: it is labelled
            /// by the status class (see [`Reason::label_for`]).
            pub fn default_label(self) -> Option<Label> {
                match self { $( Reason::$variant => Some(Label::$label) ),* , Reason::Undetermined => None }
            }

            pub fn parse(s: &str) -> Option<Reason> {
                match s { $( $name => Some(Reason::$variant) ),* , "undetermined" => Some(Reason::Undetermined), _ => None }
            }
        }
    };
}

reasons! {
    UserUnknown = "user_unknown" => Hard,
    MailboxDisabled = "mailbox_disabled" => Hard,
    HasMoved = "has_moved" => Hard,
    RecipientFiltered = "recipient_filtered" => Hard,

    DomainNotFound = "domain_not_found" => Invalid,
    NoMailService = "no_mail_service" => Invalid,
    BadSyntax = "bad_syntax" => Invalid,

    MailboxFull = "mailbox_full" => Soft,
    SystemFull = "system_full" => Soft,
    SystemError = "system_error" => Soft,
    NetworkError = "network_error" => Soft,
    Expired = "expired" => Soft,
    MailerError = "mailer_error" => Soft,
    RateLimited = "rate_limited" => Soft,

    Blocklisted = "blocklisted" => Blocked,
    BadReputation = "bad_reputation" => Blocked,
    SpamDetected = "spam_detected" => Blocked,
    Policy = "policy" => Blocked,
    ContentRejected = "content_rejected" => Blocked,
    VirusDetected = "virus_detected" => Blocked,
    SecurityError = "security_error" => Blocked,
    AuthFailure = "auth_failure" => Blocked,
    NoReverseDns = "no_reverse_dns" => Blocked,
    NotRfcCompliant = "not_rfc_compliant" => Blocked,
    RelayDenied = "relay_denied" => Blocked,
    SenderRejected = "sender_rejected" => Blocked,
    MessageTooBig = "message_too_big" => Blocked,
    SmtpSyntaxError = "smtp_syntax_error" => Blocked,
}

impl Reason {
    /// The label for this reason given the failure's status class (`'4'` or `'5'`, or `None`
    /// when unknown). A 4xx is temporary by definition: an address-level reason under a 4xx
    /// (a "user unknown" while a directory is down, a DNS failure) is retried, not suppressed.
    /// A refusal of the sender stays blocked whatever its class. `Undetermined` follows the
    /// class: 5xx → hard, else soft.
    pub fn label_for(self, class: Option<char>) -> Label {
        match (self.default_label(), class) {
            (Some(Label::Blocked), _) => Label::Blocked,
            // A null MX is a published fact about the domain, not a passing state: retrying
            // cannot help, whatever class the reporting MTA chose.
            (Some(label), _) if self == Reason::NoMailService => label,
            (Some(_), Some('4')) => Label::Soft,
            (Some(label), _) => label,
            (None, Some('5')) => Label::Hard,
            (None, _) => Label::Soft,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to a recipient (RFC 3464 `Action`), interpreted once where a report is read.
/// Sendmail's comments (`delivered (to mailbox)`) are dropped, SendGrid's `expired` is a
/// failure; an action no RFC knows is kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
    Relayed,
    Expanded,
    /// A verified but not yet delivered address (some MTAs write `deliverable`).
    Deliverable,
    Other(String),
}

impl Action {
    pub fn parse(s: &str) -> Action {
        let word = s
            .split(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match word.as_str() {
            "failed" | "failure" | "expired" => Action::Failed,
            "delayed" => Action::Delayed,
            "delivered" => Action::Delivered,
            "relayed" => Action::Relayed,
            "expanded" => Action::Expanded,
            "deliverable" => Action::Deliverable,
            _ => Action::Other(word),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
            Action::Expanded => "expanded",
            Action::Deliverable => "deliverable",
            Action::Other(s) => s,
        }
    }

    /// Delivered, relayed, expanded (or verified): the address is alive.
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            Action::Delivered | Action::Relayed | Action::Expanded | Action::Deliverable
        )
    }

    /// Anything but a success or a delay counts as a failure.
    pub fn is_failure(&self) -> bool {
        !(self.is_success() || *self == Action::Delayed)
    }
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Action, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Action::parse(&s))
    }
}

/// One recipient named by a message, with the evidence about it and (for bounces and delays)
/// the verdict. The JSON shape of this struct is a contract read by the scorer and the ledger:
/// keys may be added, never renamed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recipient {
    /// The address the sender mailed, lowercased: the DSN's Original-Recipient when it is a
    /// full address, else Final-Recipient, else the address the notice names.
    pub address: String,
    /// RFC 3464 Action: failed, delayed, delivered, relayed, expanded (or null).
    pub action: Option<Action>,
    pub label: Option<Label>,
    pub reason: Option<Reason>,
    /// Enhanced status code (RFC 3463), e.g. `5.1.1`.
    pub status: Option<String>,
    /// Basic SMTP reply code, e.g. 550.
    pub reply_code: Option<u16>,
    /// The diagnostic text, unfolded, without its `smtp;` type prefix.
    pub diagnostic: Option<String>,
    pub remote_mta: Option<String>,
    /// Id of the rule that decided the verdict, e.g. `status=5.1.1` or `keyword=mailbox full`.
    pub rule: Option<String>,
    /// The SMTP phase in which delivery failed, when the report says it (see [`Phase`]).
    #[serde(default)]
    pub phase: Option<Phase>,
    /// The DSN's `Original-Recipient` (RFC 3461 ORCPT): the address the sender used, before
    /// any alias expansion or forwarding. When it is a full address, it is `address`.
    #[serde(default)]
    pub original_recipient: Option<String>,
    /// The DSN's `Final-Recipient`: the address the failing server tried last.
    #[serde(default)]
    pub final_recipient: Option<String>,
    /// Last-Attempt-Date (or the per-message Arrival-Date) as written in the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<String>,
    /// With `[verp]` configured: what the tag of the return path the message was delivered to
    /// says (`missing` also for a message to no VERP address when a signature is required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<super::verp::Signature>,
    /// Stored as evidence, counted against nothing: the message came to a return path whose
    /// tag does not verify, or (`require_signature`) without a valid tag and no DSN naming the
    /// address (see `analysis::Settings::analyze`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forged: bool,
}
