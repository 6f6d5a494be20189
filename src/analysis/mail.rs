//! A parsed inbound message with the accessors every detector needs.
//!
//! mail-parser does the MIME work (transfer decoding, charsets, RFC 2047 words, nested
//! `message/rfc822`); this wrapper adds what bounce detection keeps asking for: header values
//! as plain unfolded text, the sender's bare address, the human-readable body as one string,
//! and the parts of a top-level `multipart/report`.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::sync::LazyLock;

use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::{
    Encoding, HeaderName, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};

use super::charset;

/// mail-parser parses every registered header by default; a bounce carries a dozen `Received`
/// lines that nothing here reads, and tokenising them was the parser's largest single cost.
/// So only the headers we read as values get a structured parser (the MIME headers the parser
/// itself needs, Date, Subject, From, To, Message-ID); every other header is only delimited.
/// Its raw text stays available through `header_raw`, which reads the message bytes between
/// the header's offsets, and those offsets do not depend on how the value was parsed. Copying
/// each skipped value into a string (mail-parser's raw default) was a tenth of the parse.
pub static PARSER: LazyLock<MessageParser> = LazyLock::new(|| {
    // Once any header is configured, only configured headers get their parser: list them all.
    MessageParser::new()
        .with_mime_headers()
        .header_date(HeaderName::Date)
        .header_text(HeaderName::Subject)
        .header_address(HeaderName::From)
        .header_address(HeaderName::To)
        .header_id(HeaderName::MessageId)
        .default_header_ignore()
});

/// One inbound message, parsed once and shared by every detector.
pub struct Mail<'a> {
    pub msg: Message<'a>,
    /// Human-readable text of the message (text/plain parts, else HTML stripped of tags),
    /// with CRLF normalised to LF. Computed once: most detectors scan it.
    pub text: String,
    /// Where `text` splits into the notice and the returned original (see
    /// [`Mail::split_original`]): several modules ask, the answer is computed once.
    split: OnceCell<(usize, Option<usize>)>,
    /// The original from the report's returned-message part ([`super::original::from_parts`]),
    /// and from the text after the split: read once, asked for by many modules.
    parts_original: OnceCell<Option<super::Original>>,
    text_original: OnceCell<Option<super::Original>>,
    /// The From address, asked for by nearly every module: read once.
    from_address: OnceCell<Option<String>>,
}

impl<'a> Mail<'a> {
    /// Parses raw RFC 5322 bytes (LF or CRLF). Fails only on bytes that are not a message.
    pub fn parse(raw: &'a [u8]) -> Result<Mail<'a>, String> {
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            return Err("empty message".into());
        }
        let msg = PARSER
            .parse(raw)
            .ok_or_else(|| "not an RFC 5322 message".to_string())?;
        if msg.headers().is_empty() || !looks_like_header_block(raw) {
            return Err("no header fields found".into());
        }
        let text = body_text(&msg);
        Ok(Mail {
            msg,
            text,
            split: OnceCell::new(),
            parts_original: OnceCell::new(),
            text_original: OnceCell::new(),
            from_address: OnceCell::new(),
        })
    }

    /// `text` split into the notice and the returned original, as
    /// [`split_original`](super::lhost::text::split_original) does, computed once per message.
    pub fn split_original(&self) -> (&str, Option<&str>) {
        let text = self.text.as_str();
        let &(notice, returned) = self.split.get_or_init(|| {
            let (n, r) = super::lhost::text::split_original(text);
            (n.len(), r.map(|r| text.len() - r.len()))
        });
        (&text[..notice], returned.map(|r| &text[r..]))
    }

    /// The original returned as a MIME part, computed once.
    pub fn parts_original(&self) -> Option<&super::Original> {
        self.parts_original
            .get_or_init(|| super::original::read_parts(self))
            .as_ref()
    }

    /// The original pasted after the notice in `text` (see [`Mail::split_original`]),
    /// computed once.
    pub fn text_original(&self) -> Option<&super::Original> {
        self.text_original
            .get_or_init(|| {
                self.split_original()
                    .1
                    .and_then(super::original::from_header_text)
            })
            .as_ref()
    }

    /// A header's raw value, unfolded and trimmed (first occurrence).
    pub fn header(&self, name: &str) -> Option<String> {
        self.msg.header_raw(name).map(unfold)
    }

    /// Every occurrence of a header, raw, unfolded and trimmed.
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.msg
            .headers_raw()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| unfold(v))
            .collect()
    }

    /// The bare, lowercased address of the From header.
    pub fn from_address(&self) -> Option<String> {
        self.from_address_str().map(str::to_string)
    }

    /// [`Mail::from_address`] without the copy (computed once).
    pub fn from_address_str(&self) -> Option<&str> {
        self.from_address
            .get_or_init(|| {
                self.msg
                    .from()
                    .and_then(|a| a.first())
                    .and_then(|a| a.address())
                    .map(|a| a.trim().to_ascii_lowercase())
            })
            .as_deref()
    }

    /// The display name of the From header, if any.
    pub fn from_name(&self) -> Option<String> {
        self.msg
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.name())
            .map(str::to_string)
    }

    pub fn subject(&self) -> &str {
        self.msg.subject().unwrap_or("")
    }

    /// The top-level content type as `type/subtype`, lowercased.
    pub fn content_type(&self) -> String {
        part_type(self.msg.root_part())
    }

    /// The `report-type` of a top-level `multipart/report`, lowercased.
    pub fn report_type(&self) -> Option<String> {
        let ct = self.msg.root_part().content_type()?;
        if !ct.ctype().eq_ignore_ascii_case("multipart")
            || !ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
        {
            return None;
        }
        Some(
            ct.attribute("report-type")
                .unwrap_or("")
                .to_ascii_lowercase(),
        )
    }

    /// Every MIME part of the top-level message (not of nested messages) whose type is
    /// `type/subtype` (lowercase), in order.
    pub fn parts_of_type<'s>(
        &'s self,
        ty: &'s str,
    ) -> impl Iterator<Item = &'s MessagePart<'a>> + 's {
        self.msg.parts.iter().filter(move |p| is_part_type(p, ty))
    }

    /// The decoded body of a part as text, CRLF normalised to LF. A part mail-parser keeps as
    /// bytes (`message/delivery-status`) is decoded in its declared charset, else in the one
    /// its bytes show ([`charset::decode`]).
    pub fn part_text(part: &MessagePart<'_>) -> String {
        let s = match &part.body {
            PartType::Text(t) | PartType::Html(t) => charset::repair(Cow::Borrowed(t)).into_owned(),
            PartType::Binary(b) | PartType::InlineBinary(b) => charset::decode(
                b,
                part.content_type().and_then(|ct| ct.attribute("charset")),
            ),
            PartType::Message(m) => String::from_utf8_lossy(m.raw_message()).into_owned(),
            PartType::Multipart(_) => String::new(),
        };
        crlf_to_lf(s)
    }
}

/// `type/subtype` of a part, lowercased; parts without a Content-Type are text/plain.
pub fn part_type(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => format!(
            "{}/{}",
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or("").to_ascii_lowercase()
        ),
        None => "text/plain".into(),
    }
}

/// `part_type(part) == ty` for a lowercase `ty`, without building the string.
fn is_part_type(part: &MessagePart<'_>, ty: &str) -> bool {
    let Some(ct) = part.content_type() else {
        return ty == "text/plain";
    };
    let (t, sub) = (ct.ctype().as_bytes(), ct.subtype().unwrap_or("").as_bytes());
    let ty = ty.as_bytes();
    ty.len() == t.len() + 1 + sub.len()
        && ty[..t.len()].eq_ignore_ascii_case(t)
        && ty[t.len()] == b'/'
        && ty[t.len() + 1..].eq_ignore_ascii_case(sub)
}

/// Joins folded header lines and trims.
pub fn unfold(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, line) in v.split('\n').enumerate() {
        crate::analysis::budget::check();
        let line = line.trim_end_matches('\r');
        if i > 0 {
            out.push(' ');
            out.push_str(line.trim_start());
        } else {
            out.push_str(line);
        }
    }
    out.trim().to_string()
}

/// True if the first line of the bytes looks like a header field (`Name: value`) or an mbox
/// `From ` line. mail-parser is lenient and will take arbitrary bytes as a body; we want
/// binary junk to be reported as unparsed instead.
fn looks_like_header_block(raw: &[u8]) -> bool {
    let start = raw
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    let line = raw[start..].split(|&b| b == b'\n').next().unwrap_or(&[]);
    if line.starts_with(b"From ") {
        return true;
    }
    match line.iter().position(|&b| b == b':') {
        Some(colon) if colon > 0 => line[..colon]
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b':'),
        _ => false,
    }
}

/// The readable text of a message: its text/plain bodies, else its HTML with tags removed.
fn body_text(msg: &Message<'_>) -> String {
    let mut out = String::new();
    for id in &msg.text_body {
        if let Some(part) = msg.parts.get(*id as usize) {
            match &part.body {
                PartType::Text(t) => out.push_str(&readable(msg, part, t)),
                PartType::Html(h) => out.push_str(&strip_html(&readable(msg, part, h))),
                _ => continue,
            }
            out.push('\n');
        }
    }
    if out.trim().is_empty() {
        out.push_str(&unsplit_multipart_text(msg));
    }
    if out.trim().is_empty() {
        for id in &msg.html_body {
            if let Some(PartType::Html(h)) = msg.parts.get(*id as usize).map(|p| &p.body) {
                out.push_str(&strip_html(h));
                out.push('\n');
            }
        }
    }
    crlf_to_lf(out)
}

/// A text part as readable text: ISO-2022-JP escapes that a part declared `us-ascii` (or
/// nothing) left in it are decoded, and 8-bit bytes of a part that declares no charset (which
/// mail-parser could only replace by U+FFFD) are read again from the raw body in the charset
/// they show.
fn readable<'t>(msg: &Message<'_>, part: &MessagePart<'_>, text: &'t str) -> Cow<'t, str> {
    let declared = part.content_type().and_then(|ct| ct.attribute("charset"));
    if declared.is_none() && text.contains('\u{FFFD}') {
        let raw = msg
            .raw_message()
            .get(part.offset_body as usize..part.offset_end as usize)
            .unwrap_or_default();
        let bytes = match part.encoding {
            Encoding::QuotedPrintable => quoted_printable_decode(raw),
            Encoding::Base64 => base64_decode(raw),
            Encoding::None => Some(raw.to_vec()),
        };
        if let Some(bytes) = bytes {
            return Cow::Owned(charset::decode(&bytes, None));
        }
    }
    charset::repair(Cow::Borrowed(text))
}

/// `s` with every CRLF replaced by LF, without a copy when there is none.
fn crlf_to_lf(s: String) -> String {
    if s.contains("\r\n") {
        s.replace("\r\n", "\n")
    } else {
        s
    }
}

/// A crude HTML-to-text conversion: enough to let text patterns match in HTML-only notices.
pub fn strip_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    // Text runs are copied whole; a tag runs from '<' to the next '>' (an unclosed one to the
    // end) and only a line-breaking tag leaves a trace.
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open + 1..].find('>') else {
            rest = "";
            break;
        };
        let tag = &rest.as_bytes()[open + 1..open + 1 + close];
        let starts = |p: &[u8]| tag.len() >= p.len() && tag[..p.len()].eq_ignore_ascii_case(p);
        if starts(b"br") || starts(b"/p") || starts(b"/div") || starts(b"/tr") || starts(b"p") {
            out.push('\n');
        }
        rest = &rest[open + 1 + close + 1..];
    }
    out.push_str(rest);
    decode_entities(out)
}

/// The HTML entities notices use, and what they stand for.
const ENTITIES: &[(&str, char)] = &[
    ("&nbsp;", ' '),
    ("&lt;", '<'),
    ("&gt;", '>'),
    ("&quot;", '"'),
    ("&#39;", '\''),
    ("&amp;", '&'),
];

/// Replaces [`ENTITIES`] in one pass (one replace per entity copied a large HTML notice six
/// times). A decoded `&amp;` is not read again: `&amp;lt;` stays `&lt;`.
fn decode_entities(text: String) -> String {
    if !text.contains('&') {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match ENTITIES.iter().find(|(name, _)| rest.starts_with(name)) {
            Some((name, c)) => {
                out.push(*c);
                rest = &rest[name.len()..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A multipart whose boundary never occurs in its body (relays and anonymisers mangle
/// boundaries, some strip the delimiter lines, some break the `boundary=` parameter onto an
/// unindented line): mail-parser keeps that part's whole body as text and finds no text part.
/// That body is still the notice, so it is the text.
fn unsplit_multipart_text(msg: &Message<'_>) -> String {
    msg.parts
        .iter()
        .find_map(|p| match &p.body {
            PartType::Text(_) | PartType::Binary(_) | PartType::InlineBinary(_)
                if part_type(p).starts_with("multipart/") =>
            {
                Some(Mail::part_text(p))
            }
            _ => None,
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_decode_once_left_to_right() {
        let cases = [
            ("a &lt;b&gt; &amp;lt; &nbsp;x", "a <b> &lt;  x"),
            ("&amp;amp; &#39;q&quot; & &x; &", "&amp; 'q\" & &x; &"),
            ("no entity here", "no entity here"),
        ];
        for (html, text) in cases {
            assert_eq!(decode_entities(html.to_string()), text, "{html}");
        }
    }
}
