//! RFC 3464 delivery status notifications: the `message/delivery-status` body.
//!
//! mail-parser hands this part back as opaque bytes (it only parses `message/rfc822`), so the
//! field blocks are split here: one per-message block, then one block per recipient, separated
//! by blank lines; continuation lines are unfolded; field names compare case-insensitively and
//! the `type;` prefixes (`rfc822;`, `dns;`, `smtp;`) are stripped from values.

use super::phase;
use super::status;
use super::verdict::{Action, Recipient};

/// One block of `Name: value` fields, in order. Names are stored lowercased.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// The first value of a field (name compared case-insensitively).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// A parsed `message/delivery-status` body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub per_message: Fields,
    pub recipients: Vec<Fields>,
}

impl Report {
    /// Splits a delivery-status body into its field blocks. Blocks without a recipient field
    /// before the first one that has one are per-message fields (some MTAs put a stray blank
    /// line inside the per-message block).
    pub fn parse(body: &str) -> Report {
        let mut report = Report::default();
        for block in blocks(body).into_iter().flat_map(split_recipients) {
            let is_recipient = block
                .0
                .iter()
                .any(|(n, _)| n == "final-recipient" || n == "original-recipient");
            if is_recipient {
                report.recipients.push(block);
            } else if report.recipients.is_empty() {
                report.per_message.0.extend(block.0);
            } else if let Some(last) = report.recipients.last_mut() {
                // A recipient block broken by a blank line: keep its tail with it.
                last.0.extend(block.0);
            }
        }
        report
    }

    /// The recipients of the report as evidence (no verdict yet).
    pub fn to_recipients(&self) -> Vec<Recipient> {
        let arrival = self.per_message.get("arrival-date");
        let reporting = self.per_message.get("reporting-mta").map(strip_type);
        self.recipients
            .iter()
            .filter_map(|f| {
                let final_recipient = f.get("final-recipient").and_then(address_of);
                let original_recipient = f.get("original-recipient").and_then(original_address);
                // The address the sender used: the ORCPT when it is a full address (the final
                // one may be an alias's target or a forward), else the final recipient.
                // The same address written with and without quotes around its local part is
                // one address: the quoted form is the exact one.
                let unquoted = |a: &String| a.replace('"', "");
                let same = matches!((&original_recipient, &final_recipient),
                    (Some(o), Some(f)) if unquoted(o) == unquoted(f));
                let address = original_recipient
                    .clone()
                    .filter(|o| !same && !is_encapsulated(o))
                    .or_else(|| final_recipient.clone())
                    .or_else(|| f.get("original-recipient").and_then(address_of))?;
                let diagnostic = f
                    .get("diagnostic-code")
                    .map(strip_type)
                    .filter(|d| !d.is_empty());
                let status_field = f.get("status").and_then(status::find_enhanced);
                let from_text = diagnostic.as_deref().and_then(status::find_enhanced);
                let reply_code = diagnostic.as_deref().and_then(status::find_reply_code);
                Some(Recipient {
                    address,
                    // SendGrid writes `Action: expired` for a message it gave up on.
                    action: f.get("action").map(Action::parse),
                    status: status::prefer_specific(status_field, from_text),
                    reply_code,
                    phase: diagnostic.as_deref().and_then(phase::detect),
                    diagnostic,
                    original_recipient,
                    final_recipient,
                    remote_mta: f
                        .get("remote-mta")
                        .map(strip_type)
                        .or_else(|| reporting.clone())
                        .filter(|s| !s.is_empty()),
                    last_attempt: f.get("last-attempt-date").or(arrival).map(str::to_string),
                    ..Recipient::default()
                })
            })
            .collect()
    }
}

/// A report whose MIME structure was lost (a relay dropped the part headers, a boundary was
/// mangled): its field blocks survive as plain text in the notice. Reads them from the first
/// line that opens a report (`Reporting-MTA:` or `Final-Recipient:` at the start of a line)
/// up to the first block that is no report fields (the returned message's headers) or a MIME
/// boundary line. `None` when no recipient block is found.
pub fn inline(text: &str) -> Option<Report> {
    const FIELDS: &[&str] = &[
        "reporting-mta",
        "received-from-mta",
        "arrival-date",
        "original-envelope-id",
        "dsn-gateway",
        "final-recipient",
        "original-recipient",
        "action",
        "status",
        "remote-mta",
        "diagnostic-code",
        "last-attempt-date",
        "will-retry-until",
    ];
    let is_field = |line: &str| {
        line.split_once(':').is_some_and(|(n, _)| {
            let n = n.trim().to_ascii_lowercase();
            n.starts_with("x-") || FIELDS.contains(&n.as_str())
        })
    };
    let opens = |line: &str| {
        let l = line.trim_start().to_ascii_lowercase();
        l.starts_with("reporting-mta:") || l.starts_with("final-recipient:")
    };
    let start = {
        let mut pos = 0;
        let mut found = None;
        for line in text.split_inclusive('\n') {
            crate::analysis::budget::check();
            if opens(line) {
                found = Some(pos);
                break;
            }
            pos += line.len();
        }
        found?
    };
    let mut end = text.len();
    let mut pos = start;
    let mut block_start = true;
    for line in text[start..].split_inclusive('\n') {
        crate::analysis::budget::check();
        let t = line.trim_end();
        if t.starts_with("--") || block_start && !t.is_empty() && !is_field(t) {
            end = pos;
            break;
        }
        block_start = t.is_empty();
        pos += line.len();
    }
    let report = Report::parse(&text[start..end]);
    (!report.recipients.is_empty()).then_some(report)
}

/// Some MTAs (AOL's) leave out the blank line between recipient blocks: a second
/// `Final-Recipient` in one block starts the next recipient.
fn split_recipients(block: Fields) -> Vec<Fields> {
    let mut out = vec![Fields::default()];
    let mut seen = false;
    for (name, value) in block.0 {
        if name == "final-recipient" {
            if seen {
                out.push(Fields::default());
            }
            seen = true;
        }
        if let Some(last) = out.last_mut() {
            last.0.push((name, value));
        }
    }
    out
}

/// Splits text into blank-line separated blocks of unfolded fields.
fn blocks(body: &str) -> Vec<Fields> {
    let mut out = Vec::new();
    let mut cur = Fields::default();
    for line in body.lines() {
        crate::analysis::budget::check();
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !cur.0.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = cur.0.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if !name.is_empty() && !name.contains(' ') {
                cur.0
                    .push((name.to_ascii_lowercase(), value.trim().to_string()));
            }
        }
    }
    if !cur.0.is_empty() {
        out.push(cur);
    }
    out
}

/// Removes an RFC 3464 type prefix (`rfc822;`, `dns;`, `smtp;`, `X-Postfix;`) from a value.
pub fn strip_type(value: &str) -> String {
    match value.split_once(';') {
        Some((ty, rest)) if !ty.is_empty() && ty.len() <= 16 && !ty.contains([' ', '@', '<']) => {
            rest.trim().to_string()
        }
        _ => value.trim().to_string(),
    }
}

/// The address of an `Original-Recipient` field when it is a full internet address: type
/// `rfc822` (RFC 3461 xtext-decoded: `+2B` is `+`) or `utf-8` (RFC 6533, `\x{HEX}`).
pub fn original_address(value: &str) -> Option<String> {
    let (ty, rest) = value.split_once(';')?;
    let ty = ty.trim();
    let rest = rest.trim();
    // Exchange's encapsulated addresses carry their own `+XX` escapes: kept as written.
    let encapsulated = rest
        .trim_start_matches('<')
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("imcea"));
    let decoded = if encapsulated {
        return Some(rest.trim_matches(['<', '>']).to_lowercase());
    } else if ty.eq_ignore_ascii_case("rfc822") {
        xtext_decode(rest)
    } else if ty.eq_ignore_ascii_case("utf-8") {
        unitext_decode(rest)
    } else {
        return None;
    };
    address_of(&decoded)
}

/// True for an Exchange-encapsulated legacy address (`IMCEAEX-_O=ORG_OU=..._CN=USER@domain`):
/// kept as the report's Original-Recipient, but no address a sender used.
pub fn is_encapsulated(address: &str) -> bool {
    address.starts_with("imcea")
}

/// RFC 3461 xtext: `+XX` is the byte with hex value XX; anything malformed is kept as is.
fn xtext_decode(s: &str) -> String {
    if !s.contains('+') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'+'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(b[i + 1]) << 4 | hex(b[i + 2]));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// RFC 6533 unitext: `\x{HEX}` is the code point HEX.
fn unitext_decode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("\\x{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        match after
            .find('}')
            .and_then(|end| {
                u32::from_str_radix(&after[..end], 16)
                    .ok()
                    .map(|v| (end, v))
            })
            .and_then(|(end, v)| char::from_u32(v).map(|c| (end, c)))
        {
            Some((end, c)) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str("\\x{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The bare address of a `Final-Recipient`/`Original-Recipient` value.
pub fn address_of(value: &str) -> Option<String> {
    let v = strip_type(value);
    let v = v
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    let v = v.split_whitespace().next()?.trim_matches(['<', '>']);
    super::recipient_address(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_blocks_and_unfolds() {
        let body = "Reporting-MTA: dns; mx.example.net\r\nArrival-Date: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\nFinal-Recipient: rfc822; Bob@Example.org\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <bob@example.org>:\r\n    Recipient address rejected: User unknown\r\n\r\nFinal-Recipient: rfc822;carol@example.org\r\nAction: delayed\r\nStatus: 4.2.2\r\n";
        let r = Report::parse(body);
        assert_eq!(
            r.per_message.get("reporting-mta"),
            Some("dns; mx.example.net")
        );
        let rs = r.to_recipients();
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].address, "bob@example.org");
        assert_eq!(rs[0].status.as_deref(), Some("5.1.1"));
        assert_eq!(rs[0].reply_code, Some(550));
        assert_eq!(
            rs[0].diagnostic.as_deref(),
            Some("550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown")
        );
        assert_eq!(rs[1].action, Some(Action::Delayed));
        assert_eq!(rs[1].remote_mta.as_deref(), Some("mx.example.net"));
    }

    #[test]
    fn inline_report_stops_at_the_returned_headers() {
        let text = "The original message was received at ...\n\n   ----- Transcript of session follows -----\n554 <a@example.org>... Service unavailable\n\nReporting-MTA: dns; mx.example.net\n\nFinal-Recipient: RFC822; a@example.org\nAction: failed\nStatus: 5.5.0\n\nReturn-Path: <s@example.com>\nFrom: s@example.com\nTo: a@example.org\nStatus: RO\n\nhello\n";
        let r = inline(text).expect("a report");
        let rs = r.to_recipients();
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0].address, "a@example.org");
        assert_eq!(r.recipients[0].0.len(), 3, "{:?}", r.recipients);
        assert!(inline("Final-Recipient is a field name.\n").is_none());
    }

    #[test]
    fn the_original_recipient_is_the_address_the_sender_used() {
        let body = "Reporting-MTA: dns; mx.example.net\n\nOriginal-Recipient: rfc822;Sales+2Bnews@example.com\nFinal-Recipient: rfc822; ana.ruiz@mail.example.com\nAction: failed\nStatus: 5.2.2\n\nOriginal-Recipient: rfc822;IMCEAEX-_O=ORG_OU=EXCHANGE_CN=RECIPIENTS_CN=BOB@example.com\nFinal-Recipient: rfc822; bob@example.com\nAction: failed\nStatus: 5.1.1\n\nOriginal-Recipient: x400; c=US;a= ;p=Example;o=Mail;s=Lee\nFinal-Recipient: rfc822; lee@example.com\nAction: failed\nStatus: 5.1.1\n";
        let rs = Report::parse(body).to_recipients();
        assert_eq!(rs[0].address, "sales+news@example.com");
        assert_eq!(
            rs[0].original_recipient.as_deref(),
            Some("sales+news@example.com")
        );
        assert_eq!(
            rs[0].final_recipient.as_deref(),
            Some("ana.ruiz@mail.example.com")
        );
        assert_eq!(
            rs[1].address, "bob@example.com",
            "no encapsulated Exchange DN"
        );
        assert!(
            rs[1]
                .original_recipient
                .as_deref()
                .is_some_and(is_encapsulated),
            "kept as the report wrote it"
        );
        assert_eq!(
            rs[2].address, "lee@example.com",
            "an X.400 ORCPT is no address"
        );
        assert_eq!(
            original_address("utf-8; jos\\x{E9}@example.es").as_deref(),
            Some("jos\u{e9}@example.es")
        );
        assert_eq!(
            original_address("rfc822; a+2@example.org").as_deref(),
            Some("a+2@example.org")
        );
    }

    #[test]
    fn recipients_without_blank_lines_and_expired_action() {
        let body = "Reporting-MTA: dns; mx.example.net\nFinal-Recipient: rfc822; a@example.org\nAction: failed\nStatus: 5.2.2\nFinal-Recipient: rfc822; b@example.org\nAction: expired\nStatus: 5.1.1\n";
        let rs = Report::parse(body).to_recipients();
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].address, "a@example.org");
        assert_eq!(rs[0].status.as_deref(), Some("5.2.2"));
        assert_eq!(rs[1].address, "b@example.org");
        assert_eq!(rs[1].status.as_deref(), Some("5.1.1"));
        assert_eq!(rs[1].action, Some(Action::Failed));
    }
}
