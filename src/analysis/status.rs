//! Enhanced status codes (RFC 3463) and SMTP reply codes found in free text.
//!
//! Diagnostics mix codes with IP addresses, version numbers and dates, so a match must stand
//! alone: `192.5.1.1` contains no status and `2026` is no reply code.

use std::sync::LazyLock;

use regex::Regex;

static ENHANCED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[^\d.])([245])\.(\d{1,3})\.(\d{1,3})(?:[^\d.]|\.(?:\D|$)|$)").unwrap()
});
static REPLY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|[^\w.\-/:#])([245][0-5]\d)(?:[ \-]|$)").unwrap());

/// The first failure (4.x.x or 5.x.x) enhanced status code in the text, normalised (`5.1.1`);
/// a success code (2.x.x, as in a session transcript) only when there is no failure code.
pub fn find_enhanced(text: &str) -> Option<String> {
    // The codes are read in order and the search stops at the first failure code: most texts
    // hold one, and nothing is built for the codes that are not returned.
    let mut first = None;
    let mut rest = text;
    while let Some(c) = ENHANCED.captures(rest) {
        let m = c.get(3).unwrap();
        if let (Ok(b), Ok(d)) = (c[2].parse::<u32>(), c[3].parse::<u32>()) {
            if &c[1] != "2" {
                return Some(format!("{}.{b}.{d}", &c[1]));
            }
            first.get_or_insert_with(|| format!("{}.{b}.{d}", &c[1]));
        }
        rest = &rest[m.end()..];
    }
    first
}

/// Every enhanced status code in the text, in order.
pub fn find_all_enhanced(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(c) = ENHANCED.captures(rest) {
        let m = c.get(3).unwrap();
        if let (Ok(b), Ok(d)) = (c[2].parse::<u32>(), c[3].parse::<u32>()) {
            out.push(format!("{}.{b}.{d}", &c[1]));
        }
        rest = &rest[m.end()..];
    }
    out
}

/// The first failure (4xx/5xx) SMTP reply code standing alone in the text, else the first 2xx.
pub fn find_reply_code(text: &str) -> Option<u16> {
    let mut first = None;
    for c in REPLY.captures_iter(text) {
        let code: u16 = c[1].parse().ok()?;
        if code >= 400 {
            return Some(code);
        }
        first.get_or_insert(code);
    }
    first
}

/// Picks the better of a DSN `Status:` field and a code found in the diagnostic: the field,
/// unless it is a generic `x.0.0` and the diagnostic carries a specific code of the same class.
pub fn prefer_specific(field: Option<String>, from_text: Option<String>) -> Option<String> {
    match (field, from_text) {
        (Some(f), Some(t)) if is_generic(&f) && !is_generic(&t) && f[..1] == t[..1] => Some(t),
        (Some(f), _) => Some(f),
        (None, t) => t,
    }
}

/// `x.0.0`: a status that says only "failed" or "delayed".
pub fn is_generic(status: &str) -> bool {
    status.ends_with(".0.0")
}

/// The class digit of a status or reply code: '2', '4' or '5'.
pub fn class_of(status: Option<&str>, reply_code: Option<u16>) -> Option<char> {
    status
        .and_then(|s| s.chars().next())
        .or_else(|| reply_code.and_then(|c| char::from_digit((c / 100) as u32, 10)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_codes_alone_only() {
        assert_eq!(
            find_enhanced("550 5.1.1 <a@b>: unknown").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(find_enhanced("host 192.5.1.1 said hi"), None);
        assert_eq!(find_enhanced("#5.1.10 RESOLVER").as_deref(), Some("5.1.10"));
        assert_eq!(find_enhanced("Status: 4.4.7."), Some("4.4.7".into()));
        assert_eq!(find_reply_code("host said: 550-5.1.1 The email"), Some(550));
        assert_eq!(find_reply_code("in 2026 at port 25"), None);
        assert_eq!(find_reply_code("smtp;550 5.1.1"), Some(550));
        assert_eq!(
            prefer_specific(Some("5.0.0".into()), Some("5.1.1".into())).as_deref(),
            Some("5.1.1")
        );
        assert_eq!(
            prefer_specific(Some("5.2.2".into()), Some("5.1.1".into())).as_deref(),
            Some("5.2.2")
        );
    }
}
