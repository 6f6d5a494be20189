//! The analysis engine: raw bytes of one message in, an [`Analysis`] out.
//!
//! The order of the questions asked matters, and is the main design decision here:
//!
//! 1. Can the bytes be read as a message at all? If not: [`Kind::Unparsed`], never a panic.
//!    Text is decoded to UTF-8 in whatever charset it came in ([`charset`]).
//! 2. Is it a challenge-response request ([`challenge`])? Asked before the report is read:
//!    such filters sometimes dress their request as a DSN with `Action: delayed`.
//! 3. Is it a *structured* report? A top-level `multipart/report` carrying an ARF
//!    `message/feedback-report` is a complaint (or an unsubscribe for ARF `opt-out`); one
//!    carrying `message/delivery-status` (RFC 3464) is a bounce, a delay or a delivery report
//!    depending on the recipients' `Action`s. Structure beats every header heuristic: a DSN
//!    often carries `Auto-Submitted: auto-replied` itself. Its `Original-Recipient`, when a
//!    full address, is who bounced: the address the sender used.
//! 4. Is it a non-standard bounce of a known MTA ([`lhost`])? Each module recognises its own
//!    template and extracts the recipients and their diagnostics from text.
//! 5. Is it a mailer-daemon's notice that says a delivery failed in a template nobody knows
//!    ([`lhost::last_resort`])? Then it is a bounce, never `other`.
//! 6. Only then: is it an automatic reply ([`rfc3834`])? an unsubscribe request
//!    ([`unsubscribe`])? Otherwise it is [`Kind::Other`]. A person's reply quoting a bounce is
//!    the person's message.
//!
//! Each bounced recipient is then classified by the [`rules`] table: ordered, data-driven,
//! first match wins, specific evidence before generic, and the verdict keeps the id of the
//! rule (and alternative) that decided it. The SMTP [`phase`] the report states is part of the
//! verdict: a refusal before `RCPT TO` is a refusal of the sender.

pub mod arf;
pub mod budget;
pub mod challenge;
pub mod charset;
pub mod kind;
pub mod lhost;
pub mod mail;
pub mod original;
pub mod phase;
pub mod rfc3464;
pub mod rfc3834;
pub mod rules;
pub mod status;
pub mod unsubscribe;
pub mod verdict;
pub mod verp;

pub use kind::Kind;
pub use phase::Phase;
pub use verdict::{Action, Label, Reason, Recipient};
pub use verp::{Decoded as VerpAddress, Signature, Verp};

use std::sync::Arc;

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

/// Everything rebound learned from one message. Its JSON form (one line of `rebound classify --json`) is a
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
    /// Recipients the message names beyond [`MAX_RECIPIENTS`]: counted, not classified.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_recipients: usize,
    /// The VERP return path the message was delivered to, decoded (with `[verp]` configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verp: Option<VerpAddress>,
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
            omitted_recipients: 0,
            verp: None,
        }
    }

    /// Whether the message came to a VERP return path whose tag does not verify: nothing in
    /// it is believed (its author's sign of life included).
    pub fn verp_forged(&self) -> bool {
        self.verp
            .as_ref()
            .is_some_and(|v| v.signature == Signature::Invalid)
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The most recipients one message gets verdicts for. A real report names a few; a notice
/// that lists more is either a list server's digest or an attack on the worker's time, and
/// what one message may cost must be bounded (the rest are counted in
/// [`Analysis::omitted_recipients`]).
pub const MAX_RECIPIENTS: usize = 10_000;

/// Keeps the first [`MAX_RECIPIENTS`] recipients; returns how many were dropped.
fn cap_recipients(recipients: &mut Vec<Recipient>) -> usize {
    let over = recipients.len().saturating_sub(MAX_RECIPIENTS);
    recipients.truncate(MAX_RECIPIENTS);
    over
}

/// The version of the analysis code (parsers, MTA modules), stored with every message so that
/// `reclassify` finds what an older analysis decided; the rule table has its own fingerprint.
/// Bump the suffix with any change to what the analysis returns.
pub const PARSER_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+analysis2");

/// Only the first this many bytes of a message are analysed. A bounce says what happened in
/// its first parts (the notice, the DSN fields, the returned headers); what can make a message
/// huge is the returned original's attachments, which would cost their decoding and the
/// memory to hold it. The message is still stored whole.
pub const MAX_ANALYSED_BYTES: usize = 1 << 20;

/// The part of a message that is analysed: all of it, or its first [`MAX_ANALYSED_BYTES`] cut
/// at the end of a line.
fn analysed(raw: &[u8]) -> &[u8] {
    if raw.len() <= MAX_ANALYSED_BYTES {
        return raw;
    }
    let head = &raw[..MAX_ANALYSED_BYTES];
    let cut = head
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(MAX_ANALYSED_BYTES, |i| i + 1);
    &raw[..cut]
}

/// Analyses the raw bytes of one message with the built-in rule table. Never panics, never
/// fails: bytes that are not a message come back as [`Kind::Unparsed`] with the error.
pub fn analyze(raw: &[u8]) -> Analysis {
    analyze_with(raw, rules::RuleSet::builtin())
}

/// Analyses with a given rule table (the config's: local rules before the built-in ones).
pub fn analyze_with(raw: &[u8], rules: &rules::RuleSet) -> Analysis {
    analyze_within(raw, rules, budget::BUDGET)
}

/// [`analyze_with`] with a given time budget (see [`budget`]): a message that exhausts it comes
/// back `unparsed`, with the reason.
pub fn analyze_within(raw: &[u8], rules: &rules::RuleSet, limit: std::time::Duration) -> Analysis {
    run(raw, rules, None, limit)
}

/// What the analysis is given besides the bytes: the rule table and the `[verp]` settings.
/// A value built from the config and passed in (never a global); its
/// [`fingerprint`](Settings::fingerprint) is stored with every message, so that `reclassify`
/// re-derives what other settings decided.
#[derive(Debug, Clone)]
pub struct Settings {
    rules: Arc<rules::RuleSet>,
    verp: Option<Arc<Verp>>,
    fingerprint: String,
}

impl Settings {
    /// The rule table alone (no VERP).
    pub fn new(rules: Arc<rules::RuleSet>) -> Settings {
        Settings {
            fingerprint: rules.fingerprint().to_string(),
            rules,
            verp: None,
        }
    }

    /// The same settings, decoding VERP return paths with `verp`.
    pub fn with_verp(self, verp: Verp) -> Settings {
        Settings {
            // The rule table's alone when there is no VERP, so that ledgers written before
            // VERP existed are not all stale.
            fingerprint: format!("{}+verp:{}", self.rules.fingerprint(), verp.fingerprint()),
            verp: Some(Arc::new(verp)),
            rules: self.rules,
        }
    }

    pub fn rules(&self) -> &Arc<rules::RuleSet> {
        &self.rules
    }

    pub fn verp(&self) -> Option<&Verp> {
        self.verp.as_deref()
    }

    /// Names the rule table and the VERP settings (a hash of the keys, never the keys).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Analyses one message: [`analyze_with`] the rule table, then the VERP return path it was
    /// delivered to, when `[verp]` is configured:
    ///
    /// - a bounce, delay or delivery report is about the VERP recipient: one recipient, keyed on
    ///   that address, with the evidence of the notice's recipient that names it (as address,
    ///   Original-Recipient or Final-Recipient), else of its first failed one; the address the
    ///   notice named is kept as `final_recipient` (and a DSN's Original-Recipient as
    ///   `original_recipient`). Other addresses the notice names are not counted: a VERP
    ///   message has one recipient. A notice naming nobody gets the VERP recipient, classified
    ///   by its own text as usual. A complaint naming nobody (a redacted ARF report) gets it
    ///   too; other kinds keep their recipients.
    /// - every recipient gets the return path's [`Signature`]; it is `forged` (stored, counted
    ///   against nothing) when the tag is invalid, or, with `require_signature`, when a
    ///   bounce, delay or delivery report lacks a valid tag and no delivery-status report
    ///   (RFC 3464) in it names the address. The same requirement holds for such messages
    ///   delivered to no VERP address at all (their recipients' signature is `missing`).
    pub fn analyze(&self, raw: &[u8]) -> Analysis {
        run(raw, &self.rules, self.verp.as_deref(), budget::BUDGET)
    }
}

fn run(
    raw: &[u8],
    rules: &rules::RuleSet,
    verp: Option<&Verp>,
    limit: std::time::Duration,
) -> Analysis {
    let raw = analysed(raw);
    // mail-parser is robust, but a panic on hostile input must not take the worker down.
    match std::panic::catch_unwind(|| budget::run(limit, || analyze_top(raw, rules, verp))) {
        Ok(Ok(a)) => a,
        Ok(Err(spent)) => Analysis::unparsed(spent.to_string()),
        Err(_) => Analysis::unparsed("internal error while analysing this message"),
    }
}

/// Who a notice that names nobody is about, when only the address it was delivered to says.
#[derive(Debug, Clone, Copy)]
enum DeliveredTo<'a> {
    /// No `[verp]` configured: guess from a VERP-looking `To` (`bounces+ana=example.org@`).
    Guess,
    /// `[verp]` configured: the decoded VERP recipient of the message as delivered, if any.
    Known(Option<&'a str>),
}

/// The message as delivered to the bounce mailbox: analysed, then read for its VERP address.
fn analyze_top(raw: &[u8], rules: &rules::RuleSet, verp: Option<&Verp>) -> Analysis {
    let mail = match mail::Mail::parse(raw) {
        Ok(m) => m,
        Err(e) => return Analysis::unparsed(e),
    };
    let Some(verp) = verp else {
        return analyze_mail(&mail, rules, false, DeliveredTo::Guess);
    };
    let found = verp.find(&mail);
    let delivered_to = DeliveredTo::Known(found.as_ref().map(|d| d.address.as_str()));
    let mut a = analyze_mail(&mail, rules, false, delivered_to);
    apply_verp(&mut a, found, verp, &mail);
    a
}

fn analyze_inner(raw: &[u8], rules: &rules::RuleSet, delivered_to: DeliveredTo<'_>) -> Analysis {
    match mail::Mail::parse(raw) {
        Ok(mail) => analyze_mail(&mail, rules, true, delivered_to),
        Err(e) => Analysis::unparsed(e),
    }
}

fn analyze_mail(
    mail: &mail::Mail<'_>,
    rules: &rules::RuleSet,
    nested: bool,
    delivered_to: DeliveredTo<'_>,
) -> Analysis {
    let mut a = Analysis {
        kind: Kind::Other,
        mta: None,
        feedback_type: None,
        original: Original::default(),
        recipients: Vec::new(),
        envelope: Envelope {
            message_id: mail.msg.message_id().map(str::to_string),
            from: mail.from_address(),
            subject: mail.msg.subject().map(str::to_string),
            date: mail.msg.date().map(|d| d.to_rfc3339()),
        },
        error: None,
        omitted_recipients: 0,
        verp: None,
    };

    // 1. ARF complaints (and ARF opt-outs, which are unsubscribe requests).
    if let Some(c) = arf::parse(mail) {
        a.kind = if c.is_opt_out() {
            Kind::Unsubscribe
        } else {
            Kind::Complaint
        };
        a.mta = Some("arf".into());
        a.feedback_type = Some(c.feedback_type.clone());
        a.recipients = c
            .recipient
            .iter()
            .map(|addr| Recipient {
                address: addr.clone(),
                last_attempt: c.arrival_date.clone(),
                ..Recipient::default()
            })
            .collect();
        a.original = c.original;
        return a;
    }

    // 1b. A service's own notification that is no bounce (an Amazon SES complaint or
    // delivery event in JSON, a Hotmail complaint): its module names the kind; there is no
    // verdict to decide.
    if let Some(n) = lhost::notification(mail) {
        a.kind = n.kind;
        a.mta = Some(n.mta.into());
        a.feedback_type = n.feedback_type;
        a.original = n.original;
        a.recipients = n.recipients;
        return a;
    }

    // 1c. A challenge-response filter holding the message until the sender proves itself a
    // person: nothing failed, even when the notice is shaped as a DSN with `Action: delayed`.
    if challenge::detect(mail) {
        a.kind = Kind::Challenge;
        a.original = original::from_parts(mail)
            .or_else(|| mail.text_original().cloned())
            .unwrap_or_default();
        return a;
    }

    // A person's reply that quotes a bounce is the person's message: the templates below would
    // find the quoted notice.
    let personal = personal_message(mail);

    // 2. RFC 3464 delivery status notifications, 3. MTA-specific templates.
    let dsn = delivery_status(mail);
    let found = if personal {
        None
    } else {
        lhost::detect(mail, dsn.as_ref().is_some_and(|r| !r.recipients.is_empty()))
    };
    let mut recipients = dsn.as_ref().map(|r| r.to_recipients()).unwrap_or_default();
    if let Some(f) = &found {
        merge_text_evidence(&mut recipients, &f.recipients);
    }
    // The text may say the phase a report leaves out (a transcript, "in reply to RCPT TO
    // command" in a template no module knows). Asked once: a report may name a hundred
    // thousand recipients.
    let states_phase = std::cell::OnceCell::new();
    let text_states_phase = || *states_phase.get_or_init(|| phase::may_state(&mail.text));
    if recipients.iter().any(|r| {
        r.diagnostic.is_none()
            || r.status.as_deref().is_none_or(status::is_generic)
            || r.phase.is_none() && text_states_phase()
    }) {
        // When the generic scanner is what recognised the message, its scan is at hand.
        match &found {
            Some(f) if f.mta == "generic" => merge_text_evidence(&mut recipients, &f.recipients),
            _ => merge_text_evidence(&mut recipients, &lhost::generic::scan(mail).recipients),
        }
        // The scanners never take a role mailbox from prose; a report that names one still
        // deserves the text's `postmaster@example.org: Domain does not exist`.
        if recipients.iter().any(|r| r.diagnostic.is_none()) {
            let lines = lhost::notice::address_lines(&mail.text);
            for r in recipients.iter_mut().filter(|r| r.diagnostic.is_none()) {
                r.diagnostic = lines.get(&r.address.to_ascii_lowercase()).cloned();
            }
        }
    }
    if !recipients.is_empty() {
        a.mta = Some(match (&found, dsn.is_some()) {
            (Some(f), _) if f.mta != "generic" => f.mta.to_string(),
            (_, true) => lhost::fingerprint(mail).unwrap_or("rfc3464").to_string(),
            (Some(f), false) => f.mta.to_string(),
            (None, false) => "unknown".to_string(),
        });
        a.original = original::from_parts(mail)
            .or_else(|| found.as_ref().and_then(|f| f.original.clone()))
            .unwrap_or_default();
        // Recipients read from prose are never the original's sender: each text module applies
        // its exclusions (keeping what its template states plainly), and a DSN's
        // Final-Recipient is explicit even when it is the postmaster or the sender itself.
        a.kind = kind_of(&recipients);
        a.omitted_recipients = cap_recipients(&mut recipients);
        for r in &mut recipients {
            decide(r, a.kind, rules);
        }
        if a.kind == Kind::Bounce {
            // A bounce reports its failures; delivered or expanded recipients in the same report
            // are not failures and would count as bounced addresses downstream.
            recipients.retain(|r| r.action.as_ref().is_none_or(|a| !a.is_success()));
        }
        a.recipients = recipients;
        return a;
    }

    // 3b. A mailer-daemon's notice that names no recipient itself but attaches the bounce it
    // relays (a filtering gateway forwarding the report it received): the attached report.
    if !nested && let Some(inner) = forwarded_report(mail, rules, delivered_to) {
        return Analysis {
            envelope: a.envelope,
            ..inner
        };
    }

    // 3c. A notice from a mailer-daemon that says a delivery failed, in a template none of
    // the modules knows: a bounce, never `other`, even when it names nobody.
    let who = || match delivered_to {
        DeliveredTo::Guess => lhost::last_resort::verp_recipient(mail),
        DeliveredTo::Known(address) => address.map(str::to_string),
    };
    if !personal && let Some(n) = lhost::last_resort::read(mail, who) {
        a.kind = n.kind;
        a.mta = Some("unknown".into());
        a.original = original::from_parts(mail)
            .or_else(|| mail.text_original().cloned())
            .unwrap_or_default();
        a.recipients = n.recipients;
        a.omitted_recipients = cap_recipients(&mut a.recipients);
        for r in &mut a.recipients {
            decide(r, a.kind, rules);
        }
        return a;
    }

    // 4. Automatic replies, 5. unsubscribe requests, 6. anything else.
    if rfc3834::detect(mail).is_some() {
        a.kind = Kind::AutoReply;
    } else if unsubscribe::detect(mail).is_some() {
        a.kind = Kind::Unsubscribe;
        a.recipients = a
            .envelope
            .from
            .iter()
            .map(|f| Recipient {
                address: f.clone(),
                ..Recipient::default()
            })
            .collect();
    }
    a
}

/// True for a message a person wrote in reply to something: a reply subject (`Re:` and its
/// translations), not from a mailer-daemon, and no report structure.
fn personal_message(mail: &mail::Mail<'_>) -> bool {
    // Replies only: a person who forwards a whole bounce passes on the MTA's own report.
    const PREFIXES: &[&str] = &[
        "re:", "re :", "aw:", "sv:", "vs:", "antw:", "res:", "odp:", "回复:", "答复:",
    ];
    let subject = mail.subject().trim_start().to_lowercase();
    PREFIXES.iter().any(|p| subject.starts_with(p))
        && !lhost::text::from_bounce_sender(mail)
        && mail.report_type().is_none()
}

/// The analysis of a bounce or delay warning attached (as `message/rfc822`) to a notice from a
/// mailer-daemon, for notices that name no recipient themselves.
fn forwarded_report(
    mail: &mail::Mail<'_>,
    rules: &rules::RuleSet,
    delivered_to: DeliveredTo<'_>,
) -> Option<Analysis> {
    if !lhost::text::from_daemon(mail) {
        return None;
    }
    mail.msg.parts.iter().find_map(|p| match &p.body {
        mail_parser::PartType::Message(m) => {
            let inner = analyze_inner(m.raw_message(), rules, delivered_to);
            matches!(inner.kind, Kind::Bounce | Kind::Delay).then_some(inner)
        }
        _ => None,
    })
}

/// Applies the VERP return path a message was delivered to (see [`Settings::analyze`]).
fn apply_verp(a: &mut Analysis, found: Option<VerpAddress>, verp: &Verp, mail: &mail::Mail<'_>) {
    let reports_delivery = matches!(a.kind, Kind::Bounce | Kind::Delay | Kind::DeliveryReport);
    // Asked only when a signature is required and missing: whom the message's DSN names.
    let dsn_names = || -> std::collections::HashSet<String> {
        delivery_status(mail)
            .map(|r| r.to_recipients())
            .unwrap_or_default()
            .into_iter()
            .flat_map(|r| [Some(r.address), r.original_recipient, r.final_recipient])
            .flatten()
            .map(|x| x.to_lowercase())
            .collect()
    };
    let Some(found) = found else {
        if verp.require_signature() && reports_delivery && !a.recipients.is_empty() {
            let named = dsn_names();
            for r in &mut a.recipients {
                r.signature = Some(Signature::Missing);
                r.forged = !named.contains(&r.address.to_lowercase());
            }
        }
        return;
    };
    if reports_delivery {
        rekey_on(&mut a.recipients, &found.address);
    } else if a.kind == Kind::Complaint && a.recipients.is_empty() {
        a.recipients.push(Recipient {
            address: found.address.clone(),
            ..Recipient::default()
        });
    }
    let unverified = verp.require_signature()
        && found.signature != Signature::Valid
        && reports_delivery
        && !dsn_names().contains(&found.address);
    let forged = found.signature == Signature::Invalid || unverified;
    for r in &mut a.recipients {
        r.signature = Some(found.signature);
        r.forged = forged;
    }
    a.verp = Some(found);
}

/// Keys a report's recipients on the VERP recipient `address`: one recipient, with the
/// evidence of the one naming it (as address, Original- or Final-Recipient), else of the first
/// failure, else of the first; the address the notice named is kept as `final_recipient`.
fn rekey_on(recipients: &mut Vec<Recipient>, address: &str) {
    let names = |r: &Recipient| {
        [
            Some(r.address.as_str()),
            r.original_recipient.as_deref(),
            r.final_recipient.as_deref(),
        ]
        .into_iter()
        .flatten()
        .any(|x| x.eq_ignore_ascii_case(address))
    };
    let failed = |r: &Recipient| r.action.as_ref().is_none_or(Action::is_failure);
    let Some(at) = recipients
        .iter()
        .position(names)
        .or_else(|| recipients.iter().position(failed))
        .or((!recipients.is_empty()).then_some(0))
    else {
        return;
    };
    let mut r = recipients.swap_remove(at);
    recipients.clear();
    if !r.address.eq_ignore_ascii_case(address) {
        let kept = [
            r.original_recipient.as_deref(),
            r.final_recipient.as_deref(),
        ]
        .into_iter()
        .flatten()
        .any(|x| x.eq_ignore_ascii_case(&r.address));
        if !kept {
            r.final_recipient = Some(r.address.clone());
        }
        r.address = address.to_string();
    }
    recipients.push(r);
}

/// The message's delivery-status report: its `message/delivery-status` part (or RFC 6533's
/// global one), else fields that survive in the text of a mailer-daemon's notice.
fn delivery_status(mail: &mail::Mail<'_>) -> Option<rfc3464::Report> {
    mail.parts_of_type("message/delivery-status")
        .chain(mail.parts_of_type("message/global-delivery-status"))
        .next()
        .map(|p| rfc3464::Report::parse(&mail::Mail::part_text(p)))
        .or_else(|| inline_report(mail))
}

/// A report whose MIME structure was lost but whose fields survive in the text, in a message
/// that a mailer-daemon wrote (or that is titled as a bounce): as good as a DSN part.
fn inline_report(mail: &mail::Mail<'_>) -> Option<rfc3464::Report> {
    let t = &mail.text;
    if !(t.contains("Final-Recipient:")
        || t.contains("final-recipient:")
        || t.contains("FINAL-RECIPIENT:"))
    {
        return None;
    }
    if !(lhost::text::from_bounce_sender(mail) || lhost::text::bounce_subject(mail)) {
        return None;
    }
    rfc3464::inline(t)
}

/// The message's kind from its recipients' actions: any failure makes a bounce; otherwise a
/// delay warning; otherwise (delivered, relayed, expanded) a delivery report.
fn kind_of(recipients: &[Recipient]) -> Kind {
    let action = |r: &Recipient| r.action.clone().unwrap_or(Action::Failed);
    if recipients.iter().any(|r| action(r).is_failure()) {
        Kind::Bounce
    } else if recipients.iter().any(|r| action(r) == Action::Delayed) {
        Kind::Delay
    } else {
        Kind::DeliveryReport
    }
}

/// Fills the verdict of one recipient from the rule table.
fn decide(r: &mut Recipient, kind: Kind, rules: &rules::RuleSet) {
    budget::check();
    let action = r.action.clone().unwrap_or(Action::Failed);
    let default_class = match action {
        Action::Delayed => Some('4'),
        a if a.is_success() => return,
        _ => Some('5'),
    };
    let d = rules.classify(&rules::Evidence {
        status: r.status.as_deref(),
        reply_code: r.reply_code,
        diagnostic: r.diagnostic.as_deref(),
        default_class,
        phase: r.phase,
    });
    r.reason = Some(d.reason);
    // A delay is temporary by definition, whatever its status says: label it as a 4xx would
    // be (soft, unless the provider refuses the sender).
    r.label = Some(if kind == Kind::Delay || action == Action::Delayed {
        d.reason.label_for(Some('4'))
    } else {
        d.label
    });
    r.rule = Some(d.rule);
}

/// A DSN's fields are authoritative, but many MTAs put the real diagnostic only in the human
/// text. Fill what the DSN lacks from the text, recipient by recipient; with no DSN at all,
/// the text's recipients are all there is.
fn merge_text_evidence(recipients: &mut Vec<Recipient>, text: &[Recipient]) {
    if recipients.is_empty() {
        recipients.extend(text.iter().cloned());
        return;
    }
    // Linear: a notice may list a hundred thousand recipients.
    let by_address: std::collections::HashMap<String, &Recipient> = text
        .iter()
        .rev()
        .map(|t| (t.address.to_ascii_lowercase(), t))
        .collect();
    for r in recipients.iter_mut() {
        budget::check();
        // The text names the address it tried (the final recipient); the report may key the
        // recipient on its original address.
        let found = by_address.get(&r.address.to_ascii_lowercase()).or_else(|| {
            r.final_recipient
                .as_deref()
                .and_then(|f| by_address.get(&f.to_ascii_lowercase()))
        });
        let Some(&t) = found else {
            continue;
        };
        if r.diagnostic.is_none() || extends(t.diagnostic.as_deref(), r.diagnostic.as_deref()) {
            r.diagnostic = t.diagnostic.clone();
        }
        if r.reply_code.is_none() {
            r.reply_code = t.reply_code;
        }
        // Postfix's report keeps the bare reply; its text adds "(in reply to RCPT TO command)".
        // A phase the text names by its command beats one the report's reply only suggests.
        let report_states = r.diagnostic.as_deref().and_then(phase::stated).is_some();
        if t.phase.is_some() && (r.phase.is_none() || !report_states) {
            r.phase = t.phase;
        }
        if r.status.is_none() || r.status.as_deref().is_some_and(status::is_generic) {
            r.status = status::prefer_specific(r.status.take(), t.status.clone());
        }
    }
}

/// True when the text's diagnostic ends with the report's and says what led to it (Postfix's
/// "host X refused to talk to me: 421 ..." before the bare reply the DSN keeps). Text that
/// only appends (Sendmail's generic "554 5.0.0 Service unavailable") does not count.
fn extends(text: Option<&str>, report: Option<&str>) -> bool {
    let (Some(t), Some(r)) = (text, report) else {
        return false;
    };
    t.len() > r.len() && lhost::text::squash(t).ends_with(&lhost::text::squash(r))
}

/// Normalises an address a report names: trims quotes and brackets, lowercases it, and checks
/// it has the shape `local@domain`. Returns `None` for anything else.
pub fn recipient_address(raw: &str) -> Option<String> {
    let a = raw
        .trim()
        .trim_matches(['<', '>', '"', '\'', '(', ')', '[', ']', ',', ';', ':', '.']);
    // A quoted local part (`"first..last"@example.org`) keeps its quotes.
    let quoted = raw.trim().trim_start_matches('<');
    let a = match quoted.split_once("\"@") {
        Some((l, _)) if l.starts_with('"') && l.len() > 1 && !l[1..].contains('"') => {
            let end = quoted.len()
                - quoted
                    .trim_end_matches(['>', ',', ';', ':', '.', ')', ']'])
                    .len();
            &quoted[..quoted.len() - end]
        }
        _ => a,
    };
    let (local, domain) = a.rsplit_once('@')?;
    if local.is_empty()
        || domain.is_empty()
        || a.contains(char::is_whitespace)
        || !domain.contains('.') && domain != "localhost"
    {
        return None;
    }
    Some(a.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A message that exhausts its time budget comes back `unparsed` with the reason (here a
    /// budget of zero, so that the stop does not depend on the machine's speed); with the real
    /// budget the same notice is analysed whole.
    #[test]
    fn a_message_over_its_time_budget_is_unparsed_with_the_reason() {
        let mut notice = String::from(
            "From: MAILER-DAEMON@mx.example.net\nTo: news@example.com\n\
             Subject: Undelivered Mail Returned to Sender\n\n\
             This is the mail system at host mx.example.net.\n\n",
        );
        for i in 0..5000 {
            notice.push_str(&format!(
                "<u{i}@example.org>: host mx.example.org said: 550 5.1.1 User unknown\n\n"
            ));
        }
        let spent = analyze_within(notice.as_bytes(), rules::RuleSet::builtin(), Duration::ZERO);
        assert_eq!(spent.kind, Kind::Unparsed);
        assert!(
            spent.error.as_deref().unwrap_or("").contains("budget"),
            "{:?}",
            spent.error
        );
        let whole = analyze(notice.as_bytes());
        assert_eq!(whole.kind, Kind::Bounce);
        assert_eq!(whole.recipients.len(), 5000);
    }

    /// A bounce returning a huge original is analysed on its first MiB: the same verdict as
    /// without the attachment, whatever its size.
    #[test]
    fn a_huge_returned_original_is_analysed_on_its_first_mib() {
        let notice = |attachment: &str| {
            format!(
                "From: MAILER-DAEMON@mx.example.net\r\nTo: news@example.com\r\n\
                 Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n\
                 Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
                 --B\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n\r\n\
                 --B\r\nContent-Type: message/delivery-status\r\n\r\n\
                 Reporting-MTA: dns; mx.example.net\r\n\r\n\
                 Final-Recipient: rfc822; gone@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\
                 Diagnostic-Code: smtp; 550 5.1.1 <gone@example.org>: User unknown\r\n\r\n\
                 --B\r\nContent-Type: message/rfc822\r\n\r\n\
                 From: news@example.com\r\nTo: gone@example.org\r\nMessage-ID: <n1@example.com>\r\n\
                 MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"C\"\r\n\r\n\
                 --C\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
                 --C\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n\
                 {attachment}--C--\r\n--B--\r\n"
            )
        };
        let small = analyze(notice("").as_bytes());
        let line = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n";
        let big = notice(&line.repeat(3 * MAX_ANALYSED_BYTES / line.len()));
        assert!(big.len() > 3 * MAX_ANALYSED_BYTES);
        let big = analyze(big.as_bytes());
        assert_eq!(small.kind, Kind::Bounce);
        assert_eq!(big.kind, small.kind);
        assert_eq!(big.recipients, small.recipients);
        assert_eq!(big.original.message_id.as_deref(), Some("n1@example.com"));
    }

    const DSN: &str = "From: MAILER-DAEMON@mail.example.com (Mail Delivery System)\r
To: news@example.com\r
Subject: Undelivered Mail Returned to Sender\r
Auto-Submitted: auto-replied\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r
\r
--B\r
Content-Type: text/plain\r
\r
I'm sorry to have to inform you that your message could not be delivered.\r
\r
--B\r
Content-Type: message/delivery-status\r
\r
Reporting-MTA: dns; mail.example.com\r
\r
Final-Recipient: rfc822; bob@example.org\r
Action: ACTION\r
Status: STATUS\r
Diagnostic-Code: smtp; DIAG\r
\r
Final-Recipient: rfc822; postmaster@example.org\r
Action: failed\r
Status: 5.1.1\r
\r
--B\r
Content-Type: message/rfc822\r
\r
From: news@example.com\r
To: bob@example.org\r
Message-ID: <n1@example.com>\r
Subject: News\r
\r
hello\r
--B--\r
";

    fn dsn(action: &str, status: &str, diag: &str) -> Analysis {
        analyze(
            DSN.replace("ACTION", action)
                .replace("STATUS", status)
                .replace("DIAG", diag)
                .as_bytes(),
        )
    }

    #[test]
    fn dsn_bounce_beats_auto_submitted_and_never_reports_postmaster() {
        let a = dsn(
            "failed",
            "5.1.1",
            "550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown",
        );
        assert_eq!(a.kind, Kind::Bounce);
        assert_eq!(a.recipients.len(), 2, "{:?}", a.recipients);
        let r = &a.recipients[0];
        assert_eq!(
            (r.address.as_str(), r.label, r.reason),
            (
                "bob@example.org",
                Some(Label::Hard),
                Some(Reason::UserUnknown)
            )
        );
        assert_eq!(
            (r.status.as_deref(), r.reply_code, r.remote_mta.as_deref()),
            (Some("5.1.1"), Some(550), Some("mail.example.com"))
        );
        assert_eq!(a.original.message_id.as_deref(), Some("n1@example.com"));
        assert_eq!(a.original.from.as_deref(), Some("news@example.com"));
    }

    #[test]
    fn blocked_is_decided_before_hard_and_delays_are_not_failures() {
        let a = dsn(
            "failed",
            "5.7.1",
            "550 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org",
        );
        assert_eq!(a.recipients[0].label, Some(Label::Blocked));
        assert_eq!(
            a.recipients[0].rule.as_deref(),
            Some("keyword=blocklist: spamhaus")
        );
        let d = analyze(
            DSN.replace(
                "Action: failed\r\nStatus: 5.1.1",
                "Action: delayed\r\nStatus: 4.4.1",
            )
            .replace("ACTION", "delayed")
            .replace("STATUS", "4.2.2")
            .replace("DIAG", "452 4.2.2 Mailbox full")
            .as_bytes(),
        );
        assert_eq!(d.kind, Kind::Delay);
        assert!(d.recipients.iter().all(|r| r.label == Some(Label::Soft)));
        let r = dsn("delivered", "2.0.0", "250 2.0.0 OK");
        assert_eq!(
            r.kind,
            Kind::Bounce,
            "the postmaster recipient still failed"
        );
        assert_eq!(
            r.recipients.len(),
            1,
            "delivered recipients are not listed in a bounce"
        );
    }

    #[test]
    fn a_gateway_notice_that_attaches_the_bounce_it_relays() {
        let outer = format!(
            "From: Mail Delivery Subsystem <MAILER-DAEMON@gw.example.com>\r\nTo: ops@gw.example.com\r\nSubject: Returned mail\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"OUT\"\r\n\r\n--OUT\r\nContent-Type: text/plain\r\n\r\n----- The following addresses had permanent delivery errors -----\r\n\r\n--OUT\r\nContent-Type: message/rfc822\r\n\r\n{}\r\n--OUT--\r\n",
            DSN.replace("ACTION", "failed")
                .replace("STATUS", "5.1.1")
                .replace("DIAG", "550 5.1.1 User unknown")
        );
        let a = analyze(outer.as_bytes());
        assert_eq!(a.kind, Kind::Bounce);
        assert_eq!(a.recipients[0].address, "bob@example.org");
        assert_eq!(a.recipients[0].label, Some(Label::Hard));
        assert_eq!(
            a.envelope.from.as_deref(),
            Some("mailer-daemon@gw.example.com")
        );
    }

    #[test]
    fn arf_complaint_and_opt_out() {
        let arf = "From: feedback@fbl.example.net\nTo: fbl@example.com\nSubject: Abuse report\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"A\"\n\n--A\nContent-Type: text/plain\n\nThis is a complaint.\n\n--A\nContent-Type: message/feedback-report\n\nFeedback-Type: TYPE\nUser-Agent: FBL/1.0\nVersion: 1\nOriginal-Rcpt-To: <Carol@Example.net>\nArrival-Date: Mon, 2 Nov 2026 10:00:00 +0000\n\n--A\nContent-Type: message/rfc822\n\nFrom: news@example.com\nTo: carol@example.net\nMessage-ID: <n2@example.com>\nSubject: News\n\nhi\n--A--\n";
        let a = analyze(arf.replace("TYPE", "abuse").as_bytes());
        assert_eq!(
            (a.kind, a.feedback_type.as_deref()),
            (Kind::Complaint, Some("abuse"))
        );
        assert_eq!(a.recipients[0].address, "carol@example.net");
        assert_eq!(a.original.message_id.as_deref(), Some("n2@example.com"));
        assert_eq!(
            analyze(arf.replace("TYPE", "opt-out").as_bytes()).kind,
            Kind::Unsubscribe
        );
    }

    #[test]
    fn auto_replies_unsubscribes_other_and_junk() {
        let ooo = "From: Ana <ana@example.com.br>\nTo: news@example.com\nSubject: =?UTF-8?Q?Resposta_autom=C3=A1tica:_News?=\n\nEstou de férias. Sua mensagem não foi entregue a mim até dia 10; caixa postal cheia.\n";
        assert_eq!(analyze(ooo.as_bytes()).kind, Kind::AutoReply);
        let unsub = "From: Rui <rui@example.com.br>\nTo: news@example.com\nSubject: Re: News\n\nPor favor, descadastrar meu e-mail.\n\n> old text\n";
        let u = analyze(unsub.as_bytes());
        assert_eq!(u.kind, Kind::Unsubscribe);
        assert_eq!(u.recipients[0].address, "rui@example.com.br");
        let human = "From: Bo <bo@example.org>\nTo: news@example.com\nSubject: Re: News\n\nThanks! My old mailbox was full, the new one works.\n";
        assert_eq!(analyze(human.as_bytes()).kind, Kind::Other);
        assert_eq!(
            analyze(b"\x00\x01\x02 binary \xff\xfe").kind,
            Kind::Unparsed
        );
        assert_eq!(analyze(b"").kind, Kind::Unparsed);
    }
}

#[cfg(test)]
mod address_tests {
    use super::recipient_address;

    #[test]
    fn quoted_local_parts_keep_their_quotes() {
        assert_eq!(
            recipient_address("<\"a..b\"@Example.org>").as_deref(),
            Some("\"a..b\"@example.org")
        );
        assert_eq!(
            recipient_address("\"bob@example.org\"").as_deref(),
            Some("bob@example.org")
        );
        assert_eq!(
            recipient_address("<bob@example.org>,").as_deref(),
            Some("bob@example.org")
        );
    }
}

#[cfg(test)]
mod verp_tests {
    //! The VERP step of [`Settings::analyze`] on hand-written notices; the format itself is
    //! tested in [`super::verp`].
    use super::*;

    const KEY: &[u8] = b"unit-test-key-0123456789";

    fn settings(require_signature: bool) -> Settings {
        let verp = Verp::new(
            &["bounces@mail.example.com".to_string()],
            "+=",
            vec![KEY.to_vec()],
            require_signature,
        )
        .unwrap();
        Settings::new(crate::config::builtin_rules()).with_verp(verp)
    }

    /// The signed return path of `address`.
    fn rp(address: &str) -> String {
        settings(false)
            .verp()
            .unwrap()
            .encode("bounces@mail.example.com", address)
            .unwrap()
    }

    /// A DSN sent to `to`, failing (or with `action`) for `rcpt`.
    fn dsn(to: &str, rcpt: &str, action: &str, status: &str) -> String {
        format!(
            "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\nTo: {to}\nSubject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\nFinal-Recipient: rfc822; {rcpt}\nAction: {action}\nStatus: {status}\nDiagnostic-Code: smtp; {status} mailbox full over quota\n\n--B--\n"
        )
    }

    /// A relay's notice naming nobody and returning nothing, sent to `to`.
    fn nobody(to: &str) -> String {
        format!(
            "From: MAILER-DAEMON@relay.example.net\nTo: {to}\nSubject: Delivery failed\nAuto-Submitted: auto-generated\n\nYour message could not be delivered: the account has been disabled.\n"
        )
    }

    #[test]
    fn without_verp_the_fingerprint_is_the_rule_tables() {
        let rules = crate::config::builtin_rules();
        let plain = Settings::new(rules.clone());
        assert_eq!(plain.fingerprint(), rules.fingerprint());
        let with = settings(false);
        assert!(with.fingerprint().starts_with(rules.fingerprint()));
        assert_ne!(with.fingerprint(), plain.fingerprint());
        assert_ne!(with.fingerprint(), settings(true).fingerprint());
    }

    #[test]
    fn a_notice_naming_nobody_is_a_bounce_for_the_verp_recipient() {
        let s = settings(false);
        let a = s.analyze(nobody(&rp("dana@example.org")).as_bytes());
        assert_eq!(a.kind, Kind::Bounce);
        assert_eq!(a.recipients.len(), 1);
        let r = &a.recipients[0];
        assert_eq!(r.address, "dana@example.org");
        assert_eq!(
            (r.label, r.reason),
            (Some(Label::Hard), Some(Reason::MailboxDisabled))
        );
        assert_eq!((r.signature, r.forged), (Some(Signature::Valid), false));
        assert_eq!(a.verp.as_ref().unwrap().address, "dana@example.org");
        // Without [verp], nothing names anyone: not even a bounce.
        assert_ne!(
            analyze(nobody(&rp("dana@example.org")).as_bytes()).kind,
            Kind::Bounce
        );
        // A tampered tag: the same verdict, stored as forged.
        let tampered = rp("dana@example.org").replace("dana=", "erin=");
        let f = s.analyze(nobody(&tampered).as_bytes());
        assert_eq!(f.recipients[0].address, "erin@example.org");
        assert_eq!(
            (f.recipients[0].signature, f.recipients[0].forged),
            (Some(Signature::Invalid), true)
        );
        assert!(f.verp_forged());
    }

    #[test]
    fn a_notice_naming_a_forward_is_keyed_on_the_verp_recipient() {
        let s = settings(false);
        let a = s.analyze(
            dsn(
                &rp("carl@example.org"),
                "carl.new@forward.example.net",
                "failed",
                "5.2.2",
            )
            .as_bytes(),
        );
        assert_eq!(a.kind, Kind::Bounce);
        assert_eq!(a.recipients.len(), 1);
        let r = &a.recipients[0];
        assert_eq!(r.address, "carl@example.org");
        assert_eq!(
            r.final_recipient.as_deref(),
            Some("carl.new@forward.example.net")
        );
        assert_eq!(r.status.as_deref(), Some("5.2.2"));
        // The notice naming the VERP recipient itself changes nothing but the signature.
        let same = s.analyze(
            dsn(
                &rp("carl@example.org"),
                "carl@example.org",
                "failed",
                "5.2.2",
            )
            .as_bytes(),
        );
        assert_eq!(same.recipients[0].address, "carl@example.org");
        assert_eq!(
            same.recipients[0].final_recipient.as_deref(),
            Some("carl@example.org")
        );
    }

    #[test]
    fn delays_and_other_kinds_keep_their_kind() {
        let s = settings(false);
        let d = s.analyze(
            dsn(
                &rp("carl@example.org"),
                "carl.new@forward.example.net",
                "delayed",
                "4.2.2",
            )
            .as_bytes(),
        );
        assert_eq!(d.kind, Kind::Delay);
        assert_eq!(d.recipients[0].address, "carl@example.org");
        assert_eq!(d.recipients[0].label, Some(Label::Soft));
        let ooo = format!(
            "From: Pat <pat@example.org>\nTo: {}\nSubject: Out of office\nAuto-Submitted: auto-replied\n\nI am away until Monday.\n",
            rp("pat@example.org")
        );
        let o = s.analyze(ooo.as_bytes());
        assert_eq!(o.kind, Kind::AutoReply);
        assert!(o.recipients.is_empty());
        assert_eq!(o.verp.as_ref().unwrap().signature, Signature::Valid);
    }

    #[test]
    fn a_required_signature_counts_an_unsigned_bounce_only_when_its_dsn_names_the_address() {
        let s = settings(true);
        let unsigned = "bounces+carl=example.org@mail.example.com";
        // A DSN naming the VERP recipient: counts (mail sent before signing started).
        let a = s.analyze(dsn(unsigned, "carl@example.org", "failed", "5.1.1").as_bytes());
        assert_eq!(
            (a.recipients[0].signature, a.recipients[0].forged),
            (Some(Signature::Missing), false)
        );
        // A DSN naming another address, or prose naming nobody: not counted.
        let a =
            s.analyze(dsn(unsigned, "carl.new@forward.example.net", "failed", "5.1.1").as_bytes());
        assert_eq!(a.recipients[0].address, "carl@example.org");
        assert!(a.recipients[0].forged);
        let n = s.analyze(nobody(unsigned).as_bytes());
        assert_eq!(n.recipients[0].address, "carl@example.org");
        assert!(n.recipients[0].forged);
        // No VERP address at all: a DSN counts for what it names.
        let plain = s.analyze(
            dsn(
                "bounces@mail.example.com",
                "ana@example.org",
                "failed",
                "5.1.1",
            )
            .as_bytes(),
        );
        assert_eq!(
            (plain.recipients[0].signature, plain.recipients[0].forged),
            (Some(Signature::Missing), false)
        );
        // A valid tag always counts; without the requirement a missing one does too.
        let signed = s.analyze(nobody(&rp("carl@example.org")).as_bytes());
        assert!(!signed.recipients[0].forged);
        let relaxed = settings(false).analyze(nobody(unsigned).as_bytes());
        assert_eq!(
            (
                relaxed.recipients[0].signature,
                relaxed.recipients[0].forged
            ),
            (Some(Signature::Missing), false)
        );
    }

    #[test]
    fn a_valid_tag_wins_over_other_addresses_and_a_guess_never_takes_a_tag_for_a_domain() {
        let s = settings(false);
        // Delivered-To holds the valid signed address; To a tampered one for someone else.
        let raw = format!(
            "Delivered-To: {}\n{}",
            rp("carl@example.org"),
            nobody(&rp("dana@example.org").replace("dana=", "erin="))
        );
        let a = s.analyze(raw.as_bytes());
        assert_eq!(a.recipients[0].address, "carl@example.org");
        assert!(!a.recipients[0].forged);
        // Without [verp], the guess reads an unsigned VERP To, and no tagged one.
        let guess = analyze(nobody("bounces+carl=example.org@mail.example.com").as_bytes());
        assert_eq!(guess.recipients[0].address, "carl@example.org");
        let tagged = analyze(nobody(&rp("carl@example.org")).as_bytes());
        assert!(
            tagged.recipients.iter().all(|r| !r.address.contains('+')),
            "{tagged:?}"
        );
    }
}
