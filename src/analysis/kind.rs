//! What a message in a bounce mailbox *is*. Exactly one kind per message.

use serde::{Deserialize, Serialize};

/// The kind of an inbound message. Only `Bounce` counts as a delivery failure; everything else
/// is recorded but never counted against an address (except complaints and unsubscribes, which
/// suppress for their own reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Delivery failed for at least one recipient.
    Bounce,
    /// A warning that delivery is delayed (RFC 3464 `Action: delayed`); never a failure.
    Delay,
    /// Delivered, relayed or expanded: proof that the address is alive.
    DeliveryReport,
    /// Out-of-office, vacation and other automatic replies (RFC 3834 and vendor quirks).
    AutoReply,
    /// A challenge-response system asking the sender to prove it is a person before the
    /// message is delivered (TMDA, BoxTrapper, Spam Arrest, Boxbe...): the address is alive
    /// and nothing failed, so it never counts against the address.
    Challenge,
    /// A spam complaint (ARF, RFC 5965).
    Complaint,
    /// A request to stop mailing.
    Unsubscribe,
    /// Human replies, spam, anything else.
    Other,
    /// Bytes that could not be read as a message.
    Unparsed,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Bounce,
        Kind::Delay,
        Kind::DeliveryReport,
        Kind::AutoReply,
        Kind::Challenge,
        Kind::Complaint,
        Kind::Unsubscribe,
        Kind::Other,
        Kind::Unparsed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Bounce => "bounce",
            Kind::Delay => "delay",
            Kind::DeliveryReport => "delivery_report",
            Kind::AutoReply => "auto_reply",
            Kind::Challenge => "challenge",
            Kind::Complaint => "complaint",
            Kind::Unsubscribe => "unsubscribe",
            Kind::Other => "other",
            Kind::Unparsed => "unparsed",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
