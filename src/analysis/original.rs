//! The returned original message: what the bounced mail was, and who sent it.
//!
//! Reports return it as `message/rfc822` (parsed by mail-parser into a nested message), as
//! `text/rfc822-headers`, or, in non-standard bounces, pasted into the text after a marker
//! line. Whatever the form, the same few headers are read from it.

use mail_parser::{Message, PartType};

use super::Original;
use super::mail::{Mail, part_type};

/// The original from a report's returned-message part, if it has one (read once per message).
pub fn from_parts(mail: &Mail<'_>) -> Option<Original> {
    mail.parts_original().cloned()
}

/// Reads the returned-message part; [`Mail::parts_original`] caches the answer.
pub(super) fn read_parts(mail: &Mail<'_>) -> Option<Original> {
    for part in mail.msg.parts.iter().skip(1) {
        match (&part.body, part_type(part).as_str()) {
            (PartType::Message(inner), _) => return Some(from_message(inner)),
            (_, "text/rfc822-headers")
            | (_, "message/rfc822-headers")
            | (_, "message/global-headers") => {
                let text = Mail::part_text(part);
                return from_header_text(&text);
            }
            _ => {}
        }
    }
    None
}

/// The original pasted after a notice (`returned`), else the one attached as a MIME part: the
/// order text-template modules read it in.
pub fn pasted_or_attached(returned: Option<&str>, mail: &Mail<'_>) -> Option<Original> {
    returned
        .and_then(from_header_text)
        .or_else(|| from_parts(mail))
}

/// Reads the original from header text found inside a body (after a marker like
/// "------ This is a copy of the message, including all the headers. ------").
pub fn from_header_text(text: &str) -> Option<Original> {
    header_block(text, from_message).filter(|o| *o != Original::default())
}

pub fn from_message(msg: &Message<'_>) -> Original {
    let addr = |a: Option<&mail_parser::Address<'_>>| {
        a.and_then(|a| a.first())
            .and_then(|a| a.address())
            .map(|s| s.trim().to_ascii_lowercase())
    };
    Original {
        message_id: msg.message_id().map(str::to_string),
        from: addr(msg.from()),
        to: addr(msg.to()),
        subject: msg.subject().map(str::to_string),
        date: msg.date().map(|d| d.to_rfc3339()),
        list_unsubscribe: msg.header_raw("List-Unsubscribe").map(super::mail::unfold),
    }
}

/// Every address in the returned original's `To` (attached as a part, else pasted after the
/// notice), as written.
pub fn to_addresses(mail: &Mail<'_>) -> Vec<String> {
    let list = |msg: &Message<'_>| -> Vec<String> {
        msg.to()
            .into_iter()
            .flat_map(|a| a.iter())
            .filter_map(|a| a.address())
            .map(str::to_string)
            .collect()
    };
    for part in mail.msg.parts.iter().skip(1) {
        match (&part.body, part_type(part).as_str()) {
            (PartType::Message(inner), _) => return list(inner),
            (_, "text/rfc822-headers")
            | (_, "message/rfc822-headers")
            | (_, "message/global-headers") => {
                return header_block(&Mail::part_text(part), list).unwrap_or_default();
            }
            _ => {}
        }
    }
    mail.split_original()
        .1
        .and_then(|t| header_block(t, list))
        .unwrap_or_default()
}

/// `read` applied to the header block at the start of `text`, parsed.
fn header_block<T>(text: &str, read: impl Fn(&Message<'_>) -> T) -> Option<T> {
    let start = text.trim_start_matches(['\n', '\r', ' ']);
    let mut block = String::with_capacity(start.len().min(8192) + 2);
    for line in start.lines() {
        crate::analysis::budget::check();
        if line.trim().is_empty() {
            break;
        }
        block.push_str(line);
        block.push('\n');
    }
    block.push('\n');
    super::mail::PARSER
        .parse_headers(block.as_bytes())
        .map(|m| read(&m))
}
