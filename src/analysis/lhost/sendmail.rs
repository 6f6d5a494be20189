//! Sendmail, old (V5) and new. The notice has fixed dashed section headings:
//!
//! ```text
//!    ----- The following addresses had permanent fatal errors -----
//! <rcpt@example.org>
//!     (reason: 550 5.1.1 <rcpt@example.org>... User unknown)
//!
//!    ----- Transcript of session follows -----
//! ... while talking to mx.example.org.:
//! >>> RCPT To:<rcpt@example.org>
//! <<< 550 5.1.1 <rcpt@example.org>... User unknown
//! 550 5.1.1 <rcpt@example.org>... User unknown
//! ```
//!
//! V5 Sendmail has only the transcript (and "----- Unsent message follows -----"). Recognised
//! by those headings, also when the whole notice was forwarded with `> ` quoting. A
//! recipient's diagnostic is what the remote server replied (`<<<` lines) before its own
//! `NNN <rcpt>... text` line, else the reply to a command that failed for every recipient
//! (`MAIL From`, `DATA`), plus the `(reason: ...)` line. Some relays drop the MIME headers but
//! keep the report's `Final-Recipient` fields as text: those complete bare local parts.
//! "Warning: could not send message for past N hours" is a delay warning.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

use super::super::mail::Mail;
use super::super::rfc3464;
use super::super::verdict::{Action, Recipient};
use super::Found;
use super::notice::{Notice, first_address};
use super::text;

const FATAL: &str = "----- The following addresses had permanent fatal errors -----";
const TRANSIENT: &str = "----- The following addresses had transient non-fatal errors -----";
const TRANSCRIPT: &str = "----- Transcript of session follows -----";

/// Any of the headings: the test every message meets, in one pass over the text rather than
/// three substring searches.
static HEADINGS: LazyLock<AhoCorasick> =
    LazyLock::new(|| AhoCorasick::new([TRANSCRIPT, FATAL, TRANSIENT]).unwrap());

pub fn parse(mail: &Mail<'_>) -> Option<Found> {
    let t = &mail.text;
    if !HEADINGS.is_match(t.as_str()) {
        return None;
    }
    // A forwarded notice: undo one level of `> ` quoting.
    let body: Cow<'_, str> = if t.contains(&format!("> {}", FATAL.trim()))
        || t.contains(&format!("> {}", TRANSCRIPT.trim()))
        || t.lines()
            .any(|l| l.starts_with('>') && l.trim_start_matches(['>', ' ']).starts_with(TRANSCRIPT))
    {
        Cow::Owned(
            t.lines()
                .map(|l| {
                    l.strip_prefix("> ")
                        .or_else(|| l.strip_prefix('>'))
                        .unwrap_or(l)
                })
                .collect::<Vec<_>>()
                .join("\n"),
        )
    } else {
        Cow::Borrowed(t.as_str())
    };
    let subject = mail.subject();
    let action = if subject.starts_with("Warning: could not send message")
        || body.contains("THIS IS A WARNING MESSAGE ONLY")
    {
        "delayed"
    } else {
        "failed"
    };
    let notice = Notice::of(mail, &body);
    // Where the body ends: the returned message, or a MIME boundary of a report that lost
    // its headers.
    let from = [FATAL, TRANSIENT, TRANSCRIPT]
        .iter()
        .filter_map(|h| notice.text.find(h))
        .min()
        .unwrap_or(0);
    let tail = cut(
        &notice.text[from..],
        &[
            "----- Unsent message follows -----",
            "----- Original message follows -----",
            "\n--",
        ],
    );
    let text = &notice.text[..from + tail.len()];
    let listed = listed(text);
    let session = transcript(text);

    // The transcript's lines per recipient, and those that named none: looked up by key, as a
    // notice may name a hundred thousand recipients.
    let mut by_recipient: HashMap<String, Vec<&str>> = HashMap::new();
    let mut unnamed: Vec<&str> = Vec::new();
    for (a, d) in &session {
        match a {
            Some(a) => by_recipient.entry(key(a)).or_default().push(d),
            None => unnamed.push(d),
        }
    }
    let unnamed = unnamed.join(" ");
    let mut rows: Vec<(String, String)> = Vec::new(); // (address as written, diagnostic)
    let mut in_rows: HashSet<String> = HashSet::new();
    for (addr, reason) in &listed {
        let mut diag = by_recipient
            .get(&key(addr))
            .map(|d| d.join(" "))
            .unwrap_or_default();
        if diag.is_empty() {
            diag = unnamed.clone();
        }
        if let Some(reason) = reason
            && !diag.contains(reason.as_str())
        {
            diag = format!("{diag} {reason}");
        }
        in_rows.insert(key(addr));
        rows.push((addr.clone(), diag));
    }
    if listed.is_empty() {
        for (a, d) in &session {
            if let Some(a) = a
                && in_rows.insert(key(a))
            {
                rows.push((a.clone(), d.clone()));
            }
        }
    }

    // Report fields that survived as text name the full addresses.
    let fields: Vec<Recipient> = if mail
        .parts_of_type("message/delivery-status")
        .next()
        .is_none()
    {
        t.find("Final-Recipient:")
            .map(|i| {
                rfc3464::Report::parse(&t[t[..i].rfind("Reporting-MTA:").unwrap_or(i)..])
                    .to_recipients()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let field_of: HashMap<&str, &Recipient> = fields
        .iter()
        .rev()
        .map(|f| (f.address.as_str(), f))
        .collect();
    let by_local: HashMap<&str, &str> = fields
        .iter()
        .rev()
        .filter_map(|f| Some((f.address.split('@').next()?, f.address.as_str())))
        .collect();
    let mut recipients: Vec<Recipient> = Vec::new();
    for (addr, diag) in rows {
        let full = if addr.contains('@') {
            Some(addr.clone())
        } else {
            by_local
                .get(addr.to_ascii_lowercase().as_str())
                .map(|a| a.to_string())
        };
        let Some(full) = full else { continue };
        if let Some(mut r) = text::recipient(&full, &diag, action) {
            if let Some(f) = field_of.get(r.address.as_str()) {
                r.status = r.status.or_else(|| f.status.clone());
                if r.diagnostic.is_none() {
                    r.diagnostic = f.diagnostic.clone();
                }
                if f.action == Some(Action::Delayed) {
                    r.action = Some(Action::Delayed);
                }
            }
            recipients.push(r);
        }
    }
    // The transcript's `>>>` line says in which phase each recipient failed.
    text::add_transcript_evidence(&mut recipients, text, action);
    // Active!Hunter writes Sendmail's template; its MIME boundary names it.
    let mta = if mail
        .header("Content-Type")
        .is_some_and(|c| c.contains("Active!Hunter"))
    {
        "activehunter"
    } else {
        "sendmail"
    };
    notice.found(mta, recipients)
}

fn cut<'a>(text: &'a str, markers: &[&str]) -> &'a str {
    let end = markers
        .iter()
        .filter_map(|m| text.find(m))
        .min()
        .unwrap_or(text.len());
    &text[..end]
}

/// The addresses under the "permanent fatal errors" (or "transient") heading, each with the
/// `(reason: ...)` line under it.
fn listed(text: &str) -> Vec<(String, Option<String>)> {
    let Some(start) = text.find(FATAL).or_else(|| text.find(TRANSIENT)) else {
        return Vec::new();
    };
    let section = &text[start..];
    let section = section.split_once('\n').map_or("", |(_, r)| r);
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for line in section.lines() {
        crate::analysis::budget::check();
        if line.contains("-----") {
            break;
        }
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        if let Some(reason) = l.strip_prefix("(reason:") {
            if let Some(last) = out.last_mut() {
                last.1 = Some(reason.trim_end_matches(')').trim().to_string());
            }
        } else if l.starts_with('(') {
            continue;
        } else if !line.starts_with([' ', '\t']) {
            let addr = first_address(l).map(str::to_string).or_else(|| {
                l.split_whitespace()
                    .next()
                    .map(|w| w.trim_matches(['<', '>']).to_string())
            });
            out.extend(addr.filter(|a| !a.is_empty()).map(|a| (a, None)));
        }
    }
    out
}

/// The transcript as (recipient, diagnostic) pairs: each `NNN <rcpt>... text` line with the
/// remote replies before it; replies to a command that named no recipient (MAIL, DATA) that no
/// recipient line took come back with no address.
fn transcript(text: &str) -> Vec<(Option<String>, String)> {
    let Some(start) = text.find(TRANSCRIPT) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut replies: Vec<&str> = Vec::new();
    for line in text[start + TRANSCRIPT.len()..].lines() {
        crate::analysis::budget::check();
        let l = line.trim();
        if l.starts_with("-----") {
            break;
        }
        if l.starts_with(">>>") || l.to_ascii_lowercase().contains("while talking to") {
            if !replies.is_empty() {
                out.push((None, replies.join(" ")));
                replies.clear();
            }
            continue;
        }
        if let Some(reply) = l.strip_prefix("<<<") {
            let reply = reply.trim();
            if reply.starts_with(['4', '5']) {
                replies.push(reply);
            }
            continue;
        }
        // `550 5.1.1 <rcpt>... User unknown` or `<rcpt>... Deferred: ...`
        if let Some(i) = l.find("... ")
            && let Some(addr) = first_address(&l[..i]).or_else(|| {
                let w = l[..i].split_whitespace().last()?;
                (!w.contains('(')).then_some(w.trim_matches(['<', '>']))
            })
            && !l[..i].contains("(smtp)")
        {
            let mut diag = replies.join(" ");
            replies.clear();
            if !diag.is_empty() {
                diag.push(' ');
            }
            diag.push_str(l);
            out.push((Some(addr.to_string()), diag));
        } else if l.len() > 4
            && l.starts_with(['4', '5'])
            && l.as_bytes()[1].is_ascii_digit()
            && !l.contains("(smtp)")
            && text::addresses(l).next().is_none()
        {
            // A reply Sendmail reports without naming a recipient (`554 5.0.0 Service
            // unavailable`, or the only line of a minimal transcript).
            replies.push(l);
        } else if l.split_once(": ").is_some_and(|(prog, _)| {
            !prog.is_empty()
                && prog
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b"._-".contains(&b))
        }) {
            // What the local delivery agent said (`mail.local: unknown user: bob`) explains
            // the generic `554 <bob>... Service unavailable` that follows it.
            replies.push(l);
        }
    }
    if !replies.is_empty() {
        out.push((None, replies.join(" ")));
    }
    out
}

/// An address as the transcript and the list may write it (`<a@b>`, `A@b`), for lookups.
fn key(a: &str) -> String {
    a.trim_matches(['<', '>']).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fatal_list_and_transcript() {
        let raw = "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.sender.example>\nTo: <alice@sender.example>\nSubject: Returned mail: see transcript for details\n\nThe original message was received at Mon, 2 Nov 2026 10:00:00 +0000\nfrom relay.sender.example [192.0.2.3]\n\n   ----- The following addresses had permanent fatal errors -----\n<bob@rcpt.example>\n    (reason: 550 5.1.1 <bob@rcpt.example>... User unknown)\n\n   ----- Transcript of session follows -----\n... while talking to mx.rcpt.example.:\n>>> RCPT To:<bob@rcpt.example>\n<<< 550 5.1.1 <bob@rcpt.example>... User unknown\n550 5.1.1 <bob@rcpt.example>... User unknown\n\n   ----- Original message follows -----\n\nFrom: alice@sender.example\nTo: bob@rcpt.example\n";
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        let f = parse(&mail).unwrap();
        assert_eq!(f.mta, "sendmail");
        assert_eq!(f.recipients.len(), 1);
        let r = &f.recipients[0];
        assert_eq!(r.address, "bob@rcpt.example");
        assert_eq!(r.status.as_deref(), Some("5.1.1"));
        assert_eq!(r.reply_code, Some(550));
        assert_eq!(
            r.diagnostic.as_deref(),
            Some(
                "550 5.1.1 <bob@rcpt.example>... User unknown 550 5.1.1 <bob@rcpt.example>... User unknown"
            )
        );
    }

    #[test]
    fn local_mailer_complaint_explains_the_generic_line() {
        let raw = "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.rcpt.example>\nSubject: Returned mail: Service unavailable\n\n   ----- The following addresses had permanent fatal errors -----\n<bob@rcpt.example>\n\n   ----- Transcript of session follows -----\nmail.local: unknown user: bob\n554 <bob@rcpt.example>... Service unavailable\n";
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        let r = &parse(&mail).unwrap().recipients[0];
        assert_eq!(
            r.diagnostic.as_deref(),
            Some("mail.local: unknown user: bob 554 <bob@rcpt.example>... Service unavailable")
        );
    }

    #[test]
    fn v5_transcript_with_a_failed_mail_command() {
        let raw = "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.sender.example>\nSubject: Returned mail: Service unavailable\n\n   ----- Transcript of session follows -----\nWhile talking to mx.rcpt.example:\n>>> MAIL From:<alice@sender.example>\n<<< 550 Relaying denied\n554 <bob@rcpt.example>... Remote protocol error\n\n   ----- Unsent message follows -----\nFrom: alice@sender.example\n";
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        let f = parse(&mail).unwrap();
        let r = &f.recipients[0];
        assert_eq!(r.address, "bob@rcpt.example");
        assert_eq!(r.reply_code, Some(550));
        assert_eq!(
            r.diagnostic.as_deref(),
            Some("550 Relaying denied 554 <bob@rcpt.example>... Remote protocol error")
        );
    }
}
