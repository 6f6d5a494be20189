//! Non-standard bounces: one module per MTA family ("lhost", the host that wrote the bounce).
//!
//! Many MTAs still send bounces as plain text (qmail, classic Exim and Sendmail, Exchange 2003,
//! Domino...) or wrap an RFC 3464 report around a human text that holds the real diagnostic.
//! Each module here recognises its own template by cheap fingerprints (From, Subject, a marker
//! line) and extracts the failed recipients with their status, reply code and diagnostic.
//! Modules are tried in [`MODULES`] order; the first that recognises a message names its `mta`.
//! [`generic`] comes last: any message from a mailer-daemon with an address followed by an
//! SMTP error.
//!
//! A module never decides a label: it only gathers evidence. The rule table decides.

pub mod amazonses;
pub mod amazonworkmail;
pub mod apachejames;
pub mod biglobe;
pub mod dragonfly;
pub mod exchange;
pub mod exim;
pub mod ezweb;
pub mod fml;
pub mod generic;
pub mod gmx;
pub mod google;
pub mod hotmail;
pub mod imail;
pub mod kddi;
pub mod last_resort;
pub mod notice;
pub mod opensmtpd;
pub mod postfix;
pub mod qmail;
pub mod sendmail;
pub mod smail;
pub mod text;
pub mod verizon;
pub mod yahoo;
pub mod zoho;

use super::mail::Mail;
use super::verdict::Recipient;
use super::{Kind, Original};

/// What an MTA module found in a message.
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub mta: &'static str,
    /// Recipients with their evidence; `action` is `failed` unless the template says it is a
    /// delay warning (`delayed`).
    pub recipients: Vec<Recipient>,
    /// The returned original, when the template pastes it into the text.
    pub original: Option<Original>,
}

/// A service's own notification that is no bounce (an Amazon SES complaint or delivery event,
/// a Hotmail complaint): the module names its kind, and there is no verdict to decide.
#[derive(Debug, Clone)]
pub struct Notification {
    pub mta: &'static str,
    pub kind: Kind,
    /// The complaint's feedback type (`abuse`...), for complaints.
    pub feedback_type: Option<String>,
    pub recipients: Vec<Recipient>,
    pub original: Original,
}

/// The first non-bounce notification format that recognises the message.
pub fn notification(mail: &Mail<'_>) -> Option<Notification> {
    amazonses::notification(mail).or_else(|| hotmail::complaint(mail))
}

/// A module: its name (the `mta` it reports) and its parser.
pub struct Lhost {
    pub name: &'static str,
    pub parse: fn(&Mail<'_>) -> Option<Found>,
}

/// Every module, in the order they are tried. Specific templates first, `generic` last.
pub const MODULES: &[Lhost] = &[
    Lhost {
        name: "gmail",
        parse: google::parse,
    },
    Lhost {
        name: "amazonses",
        parse: amazonses::parse,
    },
    Lhost {
        name: "yahoo",
        parse: yahoo::parse,
    },
    Lhost {
        name: "amazonworkmail",
        parse: amazonworkmail::parse,
    },
    Lhost {
        name: "gmx",
        parse: gmx::parse,
    },
    Lhost {
        name: "kddi",
        parse: kddi::parse,
    },
    Lhost {
        name: "ezweb",
        parse: ezweb::parse,
    },
    Lhost {
        name: "zoho",
        parse: zoho::parse,
    },
    Lhost {
        name: "verizon",
        parse: verizon::parse,
    },
    Lhost {
        name: "postfix",
        parse: postfix::parse,
    },
    Lhost {
        name: "exim",
        parse: exim::parse,
    },
    Lhost {
        name: "sendmail",
        parse: sendmail::parse,
    },
    Lhost {
        name: "qmail",
        parse: qmail::parse,
    },
    Lhost {
        name: "opensmtpd",
        parse: opensmtpd::parse,
    },
    Lhost {
        name: "exchange",
        parse: exchange::parse,
    },
    Lhost {
        name: "dragonfly",
        parse: dragonfly::parse,
    },
    Lhost {
        name: "imail",
        parse: imail::parse,
    },
    Lhost {
        name: "biglobe",
        parse: biglobe::parse,
    },
    Lhost {
        name: "apachejames",
        parse: apachejames::parse,
    },
    Lhost {
        name: "smail",
        parse: smail::parse,
    },
    Lhost {
        name: "fml",
        parse: fml::parse,
    },
    Lhost {
        name: "generic",
        parse: generic::parse,
    },
];

/// The first module that recognises the message.
///
/// With a structured report at hand (`structured`), the generic scanner is skipped: the
/// report already names the recipients, and the pipeline runs [`generic::scan`] only to fill
/// in diagnostics the report lacks. That keeps the most expensive module off the common path.
pub fn detect(mail: &Mail<'_>, structured: bool) -> Option<Found> {
    MODULES
        .iter()
        .filter(|m| !(structured && m.name == "generic"))
        .find_map(|m| (m.parse)(mail))
}

/// The name of the MTA that wrote a structured (RFC 3464) report, from its fingerprints, for
/// reports no module parsed.
pub fn fingerprint(mail: &Mail<'_>) -> Option<&'static str> {
    let has = |name: &str| mail.msg.header_raw(name).is_some();
    let from = mail.from_address_str().unwrap_or_default();
    let reporting = mail
        .parts_of_type("message/delivery-status")
        .next()
        .map(|p| Mail::part_text(p).to_ascii_lowercase())
        .unwrap_or_default();
    Some(
        if has("X-Postfix-Queue-ID") || mail.text.contains("This is the mail system at host") {
            "postfix"
        } else if has("X-Failed-Recipients") || reporting.contains("x-exim") {
            "exim"
        } else if reporting.contains("x-postfix") {
            "postfix"
        } else if from.ends_with("@googlemail.com")
            || from.ends_with("@google.com")
            || reporting.contains("google.com")
        {
            "gmail"
        } else if has("X-MS-Exchange-Message-Is-Ndr")
            || has("X-MS-Exchange-Organization-SCL") && mail.subject().starts_with("Undeliverable")
        {
            "exchange"
        } else if reporting.contains("amazonses") || has("X-SES-Outgoing") {
            "amazonses"
        } else if reporting.contains("x-sendmail") || reporting.contains("sendmail") {
            "sendmail"
        } else {
            return None;
        },
    )
}
