//! The last resort for notices no template recognised: old or rare MTAs and gateways,
//! webmail providers' own wording, one-line notices with no SMTP code, notices that name only
//! the recipient's local part, or nobody at all.
//!
//! A message from a mailer-daemon or postmaster (or titled as a delivery failure) whose text
//! says that a delivery failed is a bounce, whatever its layout: it must never fall through to
//! `other`. Who bounced is read, in order of trust:
//!
//! 1. addresses in the notice with the lines that explain them ([`text::scan`]);
//! 2. a local part the notice names ("user 'ana' unknown", "ana (user not found)",
//!    "Unknown user: ana"): the returned original's recipient with that local part, else the
//!    local part at the reporting host's domain;
//! 3. the returned original's `To`, when it names exactly one address;
//! 4. the address the bounce was delivered to, given by the caller: the recipient of a VERP
//!    return path of the `[verp]` config (see `analysis::verp`), or without one a guess from
//!    a VERP-looking address (`bounces+ana=example.org@...` in its To, Delivered-To,
//!    X-Original-To or Envelope-To: [`verp_recipient`]).
//!
//! When none of them names anyone, the message is still a bounce, with no recipient.

use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};

use super::super::mail::Mail;
use super::super::verdict::Recipient;
use super::super::{Kind, original, recipient_address, rfc3834};
use super::text::{self, Exclusions};

/// What the last resort found: a bounce or a delay warning, and whom it names.
pub struct FailureNotice {
    pub kind: Kind,
    pub recipients: Vec<Recipient>,
}

/// Statements that a delivery failed, in the languages bounces are written in.
static FAILED: LazyLock<Regex> = LazyLock::new(|| {
    pattern(&[
        r"(could|can)( ?not|n.t) (be )?(delivered|deliver)",
        r"(was|were|has|have|had) not (been )?(delivered|deliverable|sent)",
        r"not (be )?delivered",
        r"undeliver(able|ed)",
        r"non-?deliver(able|y)",
        r"delivery (has )?(failed|failure|error|problem|unsuccessful)",
        r"failed (to deliver|delivery|recipient)",
        r"unable to (deliver|send|relay)",
        r"permanent(ly)? (error|failure|fatal|failed)",
        r"fatal (delivery )?errors?",
        r"returned (mail|message)",
        r"mail (delivery )?(failed|failure)",
        r"(was|were|been|is) (rejected|refused|blocked|bounced)",
        r"did not reach",
        r"could not reach",
        r"(user|recipient|mailbox|address) (unknown|not found|does not exist)",
        r"unknown (user|recipient|mailbox)",
        r"no such (user|mailbox|recipient|address)",
        // Portuguese, Spanish, German, French, Italian, Dutch
        r"n[aã]o (foi |p[oô]de ser )?(poss[ií]vel )?(entreg|envi)",
        r"(falha|erro) (na|de) entrega",
        r"no (se )?(ha )?(pudo|puede|fue) (ser )?entreg",
        r"(error|fallo) (en la|de) entrega",
        r"unzustellbar|nicht zugestellt|konnte nicht (zugestellt|ausgeliefert)|zustellung (ist )?fehlgeschlagen",
        r"non (remis|distribu|d[ée]livr)|(impossible|[ée]chec) (de |d.)?(remettre|distribuer|la remise|livraison)",
        r"non (è stato possibile )?recapit|recapito non riuscito|mancata consegna",
        r"onbestelbaar|niet (afgeleverd|bezorgd)|bezorging (is )?mislukt",
        // Japanese, Chinese, Korean, Russian
        r"配信(でき|に失敗|不能|エラー)|不達|届きませんでした|送信できませんでした",
        r"退信|无法(投递|送达|发送)|投递失败|发送失败|未能(送达|投递)",
        r"전송 ?실패|반송",
        r"не (удалось|может быть) доставлен|не доставлено|недоставленн",
    ])
});

/// Statements that delivery is still being tried: a delay warning, not a failure.
static STILL_TRYING: LazyLock<Regex> = LazyLock::new(|| {
    pattern(&[
        r"warning (message )?only",
        r"(will|shall) (continue to )?(be )?(retry|retried|try again|keep trying|attempt)",
        r"still (being )?(retried|trying)",
        r"(has|have) not yet been delivered",
        r"delivery (is|has been) delayed",
        r"no action is required",
        r"do not need to (resend|re-send)",
    ])
});

/// A local part named alone, as old notices do: `user 'ana' unknown`, `Unknown user: ana`,
/// `ana (user not found)`, `ana... User unknown`, `<ana>: no such user`.
static LOCAL_PART: LazyLock<Regex> = LazyLock::new(|| {
    pattern(&[
        r"(?:user|recipient|mailbox|account)\s+['\x22<]?([a-z0-9][a-z0-9._+\-]{0,63})['\x22>]?\s+(?:unknown|not found|does not exist|is unknown)",
        r"(?:unknown|invalid|no such)\s+(?:user|recipient|mailbox|account)(?:\s+name)?\s*[:=]?\s*['\x22<]?([a-z0-9][a-z0-9._+\-]{0,63})['\x22>]?(?:\s|$|[.,;])",
        r"(?m)^\s*['\x22<]?([a-z0-9][a-z0-9._+\-]{0,63})['\x22>]?\s*(?:\.\.\.|:|\()\s*(?:user unknown|unknown user|user not found|no such user|not found)",
    ])
});

fn pattern(alternatives: &[&str]) -> Regex {
    // A space in a pattern is any run of whitespace: notices wrap their sentences.
    RegexBuilder::new(&alternatives.join("|").replace(' ', r"\s+"))
        .case_insensitive(true)
        .size_limit(32 << 20)
        .dfa_size_limit(32 << 20)
        .build()
        .expect("last-resort patterns compile")
}

/// Reads a failure notice no template recognised; `None` when the message is no such notice.
/// `delivered_to` says whom the address the notice was delivered to names (asked only when
/// the notice itself names nobody).
pub fn read(
    mail: &Mail<'_>,
    delivered_to: impl FnOnce() -> Option<String>,
) -> Option<FailureNotice> {
    let daemon = text::from_daemon(mail);
    if !(daemon || text::bounce_subject(mail) && text::from_bounce_sender(mail)) {
        return None;
    }
    // A person's automatic reply may use a bounce-like subject; unless a mailer-daemon
    // wrote it, the auto-reply marks win.
    if !daemon && rfc3834::detect(mail).is_some() {
        return None;
    }
    let (notice, _) = mail.split_original();
    let notice = unquoted(notice);
    let subject = mail.subject();
    let delay = STILL_TRYING.is_match(&notice) || STILL_TRYING.is_match(subject);
    if !(delay || FAILED.is_match(&notice) || FAILED.is_match(subject)) {
        return None;
    }
    let action = if delay { "delayed" } else { "failed" };
    let original = mail
        .parts_original()
        .cloned()
        .or_else(|| mail.text_original().cloned());
    let excl = Exclusions::for_mail(mail, &[original.as_ref().and_then(|o| o.from.as_deref())]);
    let mut recipients = text::scan(&notice, &excl, action);
    text::add_transcript_evidence(&mut recipients, &notice, action);
    if recipients.is_empty() {
        let to = original_recipients(mail);
        let diag = failure_statement(&notice);
        let named = local_part(&notice).and_then(|local| {
            to.iter()
                .find(|a| a.split('@').next() == Some(local.as_str()))
                .cloned()
                .or_else(|| reporting_domain(mail).map(|d| format!("{local}@{d}")))
        });
        let single_to = || (to.len() == 1).then(|| to[0].clone());
        let who = named
            .or_else(single_to)
            .filter(|a| !excl.excludes(a))
            .or_else(delivered_to);
        recipients.extend(who.and_then(|a| text::recipient(&a, &diag, action)));
    }
    // A notice that names nobody and returns no message is not to be told from a phishing
    // mail dressed as a mailer-daemon: only a returned original makes it a bounce.
    if recipients.is_empty() && original.is_none() {
        return None;
    }
    Some(FailureNotice {
        kind: if delay { Kind::Delay } else { Kind::Bounce },
        recipients,
    })
}

/// The notice without quoted lines (`> `): what a person quotes is not the notice.
fn unquoted(notice: &str) -> String {
    notice
        .lines()
        .filter(|l| !l.trim_start().starts_with('>'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paragraph of the notice that states the failure (the diagnostic of a recipient the
/// notice does not name with an address): at most a few lines, never the whole notice.
fn failure_statement(notice: &str) -> String {
    let paragraphs: Vec<&str> = notice
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let at = paragraphs
        .iter()
        .position(|p| LOCAL_PART.is_match(p))
        .or_else(|| paragraphs.iter().position(|p| FAILED.is_match(p)));
    let Some(at) = at else {
        return String::new();
    };
    // "was not delivered to: X" is explained by the "because: ..." paragraph after it.
    let mut chosen = paragraphs[at].to_string();
    if let Some(next) = paragraphs.get(at + 1).filter(|p| text::explains(p)) {
        chosen.push(' ');
        chosen.push_str(next);
    }
    let squashed = text::squash(&chosen);
    match squashed.char_indices().nth(400) {
        Some((cut, _)) => squashed[..cut].to_string(),
        None => squashed,
    }
}

/// The first local part the notice names alone, lowercased.
fn local_part(notice: &str) -> Option<String> {
    LOCAL_PART.captures_iter(notice).find_map(|c| {
        let local = c.iter().skip(1).flatten().next()?.as_str();
        let lower = local.to_ascii_lowercase();
        // Words the patterns can catch that are no local part.
        (!matches!(
            lower.as_str(),
            "user" | "recipient" | "mailbox" | "the" | "address" | "is" | "name" | "account"
        ))
        .then_some(lower)
    })
}

/// The addresses the returned original was sent to (its `To`).
fn original_recipients(mail: &Mail<'_>) -> Vec<String> {
    original::to_addresses(mail)
        .into_iter()
        .filter_map(|a| recipient_address(&a))
        .collect()
}

/// The mail domain of the host that wrote the notice: its From's domain without a leading
/// host label such as `mail.` or `mx.` (`MAILER-DAEMON@mail.example.org` → `example.org`).
fn reporting_domain(mail: &Mail<'_>) -> Option<String> {
    let from = mail.from_address_str()?;
    let domain = from.rsplit_once('@')?.1;
    const HOSTS: &[&str] = &[
        "mail.",
        "mx.",
        "smtp.",
        "mailhost.",
        "relay.",
        "mta.",
        "mx1.",
        "mx2.",
        "smtp1.",
        "mail1.",
    ];
    let bare = HOSTS
        .iter()
        .find_map(|h| domain.strip_prefix(h))
        .filter(|rest| rest.contains('.'))
        .unwrap_or(domain);
    Some(bare.to_string())
}

/// A VERP recipient in the headers that say where the bounce was delivered: the local part
/// `prefix+local=domain` (Postfix, Mailman and most bulk senders), `local=domain` after the
/// first `+` or `-`.
pub fn verp_recipient(mail: &Mail<'_>) -> Option<String> {
    const HEADERS: &[&str] = &["To", "Delivered-To", "X-Original-To", "Envelope-To"];
    HEADERS
        .iter()
        .flat_map(|h| mail.headers(h))
        .flat_map(|v| text::addresses(&v).map(str::to_string).collect::<Vec<_>>())
        .find_map(|a| verp_decode(&a))
}

/// `bounces+ana=example.org@send.example.com` → `ana@example.org`.
fn verp_decode(address: &str) -> Option<String> {
    let (local, _) = address.rsplit_once('@')?;
    let start = local.find(['+', '-'])?;
    let (user, domain) = local[start + 1..].rsplit_once('=')?;
    // A signed return path's tag (`=example.org+k3vq7d2m`) is no part of a domain.
    let host = |d: &str| {
        d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    if user.is_empty() || !domain.contains('.') || !host(domain) {
        return None;
    }
    recipient_address(&format!("{user}@{domain}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_raw(raw: &str) -> Option<FailureNotice> {
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        read(&mail, || verp_recipient(&mail))
    }

    #[test]
    fn a_daemon_notice_naming_a_local_part_reads_the_original_recipient() {
        let raw = "From: postmaster@example.net\nTo: news@example.com\nSubject: Undeliverable Mail\n\nUnknown user: mateo.ruiz\n\nOriginal message follows.\n\nFrom: news@example.com\nTo: Mateo.Ruiz@example.net\nSubject: Tickets\n\nhi\n";
        let n = read_raw(raw).unwrap();
        assert_eq!(n.kind, Kind::Bounce);
        assert_eq!(n.recipients[0].address, "mateo.ruiz@example.net");
        assert_eq!(
            n.recipients[0].diagnostic.as_deref(),
            Some("Unknown user: mateo.ruiz")
        );
    }

    #[test]
    fn without_an_original_the_local_part_is_at_the_reporting_domain() {
        let raw = "From: MAILER-DAEMON@mail.example.org\nTo: news@example.com\nSubject: Undeliverable mail\n\nuser 'pilar.soto' unknown\n";
        let n = read_raw(raw).unwrap();
        assert_eq!(n.recipients[0].address, "pilar.soto@example.org");
    }

    #[test]
    fn nobody_named_then_the_single_original_to_then_verp() {
        let one = "From: MAILER-DAEMON@gate.example.net\nTo: news@example.com\nSubject: Delivery failed\n\nThe attached message could not be delivered.\n\n--- Original message follows ---\n\nFrom: news@example.com\nTo: Wiktor <wiktor@example.net>\nSubject: x\n\nhi\n";
        assert_eq!(
            read_raw(one).unwrap().recipients[0].address,
            "wiktor@example.net"
        );
        let verp = "From: MAILER-DAEMON@gate.example.net\nTo: bounces+carl=example.org@send.example.com\nSubject: Delivery failed\n\nThe message could not be delivered.\n";
        assert_eq!(
            read_raw(verp).unwrap().recipients[0].address,
            "carl@example.org"
        );
        let two = one.replace(
            "To: Wiktor <wiktor@example.net>",
            "To: wiktor@example.net, oskar@example.net",
        );
        let n = read_raw(&two).unwrap();
        assert_eq!((n.kind, n.recipients.len()), (Kind::Bounce, 0));
        let nobody_no_original = "From: MAILER-DAEMON@gate.example.net\nTo: news@example.com\nSubject: Delivery failed\n\nThe message could not be delivered.\n";
        assert!(
            read_raw(nobody_no_original).is_none(),
            "nothing to tell it from a phishing mail"
        );
    }

    #[test]
    fn people_and_warnings_are_told_apart() {
        let person = "From: Ana <ana@example.org>\nTo: news@example.com\nSubject: Re: Undeliverable\n\nI could not be delivered your parcel? Please call me.\n";
        assert!(read_raw(person).is_none());
        let warning = "From: MAILER-DAEMON@mx.example.net\nTo: news@example.com\nSubject: Delivery delayed\n\nYour message to ana@example.org has not yet been delivered. The mail system will continue to retry.\n";
        assert_eq!(read_raw(warning).unwrap().kind, Kind::Delay);
    }
}
