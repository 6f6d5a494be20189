//! Enhanced status codes (RFC 3463) and SMTP reply codes found in free text.
//!
//! Diagnostics mix codes with IP addresses, version numbers and dates, so a match must stand
//! alone: `192.5.1.1` contains no status and `2026` is no reply code.
//!
//! Both finders are hand-written byte scanners: they run on every diagnostic, and a regex search
//! per code cost more than the rest of the reading. They give exactly the matches of the regexes
//! kept in the tests (`ENHANCED`, `REPLY` there), which a randomised test checks them against,
//! including the Unicode reading of `\d` and `\w` for the characters around a code.

use std::sync::LazyLock;

use regex::Regex;

/// `\d` of the `regex` crate (Unicode `Nd`) for a non-ASCII character: rare in diagnostics,
/// so a tiny regex is good enough.
fn is_unicode_digit(c: char) -> bool {
    static DIGIT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\A\d\z").unwrap());
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    DIGIT.is_match(c.encode_utf8(&mut [0; 4]))
}

/// `\w` of the `regex` crate (Unicode) for any character.
fn is_unicode_word(c: char) -> bool {
    static WORD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\A\w\z").unwrap());
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    WORD.is_match(c.encode_utf8(&mut [0; 4]))
}

/// The character that ends at byte `i` of `text` (`i` > 0, on a character boundary).
fn char_before(text: &str, i: usize) -> char {
    text[..i].chars().next_back().unwrap()
}

/// The character that starts at byte `i` of `text` (`i` < len, on a character boundary).
fn char_at(text: &str, i: usize) -> char {
    text[i..].chars().next().unwrap()
}

/// The end of the run of ASCII digits starting at byte `i`.
fn digits_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// Every enhanced status code standing alone in `text`, in order, as (class digit, subject,
/// detail): the matches of `(?:^|[^\d.])([245])\.(\d{1,3})\.(\d{1,3})(?:[^\d.]|\.(?:\D|$)|$)`
/// whose numbers parse. A match whose digits include a non-ASCII digit does not parse and is
/// skipped, and the text it covers (digits and dots) can hold no other match: so a run of
/// digits that is not all ASCII simply does not count here.
fn enhanced_codes(text: &str) -> impl Iterator<Item = (u8, u32, u32)> + '_ {
    let b = text.as_bytes();
    // Every code has a dot after its class digit: the dots are the
    // candidates, far fewer than the bytes, and `str::find` skips to them a word at a time.
    let mut pos = 0;
    std::iter::from_fn(move || {
        while let Some(off) = text[pos..].find('.') {
            let dot = pos + off;
            pos = dot + 1;
            if dot == 0 {
                continue;
            }
            let at = dot - 1;
            let class = b[at];
            if !matches!(class, b'2' | b'4' | b'5') {
                continue;
            }
            if at > 0 {
                let p = b[at - 1];
                if p == b'.' || p.is_ascii_digit() {
                    continue;
                }
                if !p.is_ascii() && is_unicode_digit(char_before(text, at)) {
                    continue;
                }
            }
            let s = at + 2;
            let s_end = digits_end(b, s);
            if !(1..=3).contains(&(s_end - s)) || b.get(s_end) != Some(&b'.') {
                continue;
            }
            let d = s_end + 1;
            let d_end = digits_end(b, d);
            if !(1..=3).contains(&(d_end - d)) {
                continue;
            }
            let alone = match b.get(d_end) {
                None => true,
                Some(b'.') => match b.get(d_end + 1) {
                    None => true,
                    Some(&n) if n.is_ascii() => !n.is_ascii_digit(),
                    Some(_) => !is_unicode_digit(char_at(text, d_end + 1)),
                },
                Some(&n) if n.is_ascii() => true,
                Some(_) => !is_unicode_digit(char_at(text, d_end)),
            };
            if !alone {
                continue;
            }
            pos = d_end;
            let num = |r: &[u8]| r.iter().fold(0u32, |n, c| n * 10 + u32::from(c - b'0'));
            return Some((class, num(&b[s..s_end]), num(&b[d..d_end])));
        }
        None
    })
}

fn format_enhanced((class, subject, detail): (u8, u32, u32)) -> String {
    format!("{}.{subject}.{detail}", char::from(class))
}

/// The first failure (4.x.x or 5.x.x) enhanced status code in the text, normalised (`5.1.1`);
/// a success code (2.x.x, as in a session transcript) only when there is no failure code.
pub fn find_enhanced(text: &str) -> Option<String> {
    // The codes are read in order and the search stops at the first failure code: most texts
    // hold one, and nothing is built for the codes that are not returned.
    let mut first = None;
    for code in enhanced_codes(text) {
        if code.0 != b'2' {
            return Some(format_enhanced(code));
        }
        first.get_or_insert(code);
    }
    first.map(format_enhanced)
}

/// Every enhanced status code in the text, in order.
pub fn find_all_enhanced(text: &str) -> Vec<String> {
    enhanced_codes(text).map(format_enhanced).collect()
}

/// The first failure (4xx/5xx) SMTP reply code standing alone in the text, else the first 2xx.
///
/// A match is `(?:^|[^\w.\-/:#])([245][0-5]\d)(?:[ \-]|$)`, the matches taken left to right
/// without overlap (a space after a code is part of its match and cannot precede the next). A
/// match whose last digit is a non-ASCII digit does not parse, and ends the search with `None`.
pub fn find_reply_code(text: &str) -> Option<u16> {
    let b = text.as_bytes();
    let mut first = None;
    // Where the previous match ended: the next one's leading character starts here or later.
    let mut from = 0;
    let mut i = 0;
    while i + 2 < b.len() {
        let at = i;
        i += 1;
        if !matches!(b[at], b'2' | b'4' | b'5') || !(b'0'..=b'5').contains(&b[at + 1]) {
            continue;
        }
        if at > 0 {
            if at - 1 < from {
                continue;
            }
            let p = b[at - 1];
            if p.is_ascii() {
                if p.is_ascii_alphanumeric() || matches!(p, b'_' | b'.' | b'-' | b'/' | b':' | b'#')
                {
                    continue;
                }
            } else if is_unicode_word(char_before(text, at)) {
                continue;
            }
        }
        let last = b[at + 2];
        let (ascii, end) = if last.is_ascii_digit() {
            (true, at + 3)
        } else if !last.is_ascii() && is_unicode_digit(char_at(text, at + 2)) {
            (false, at + 2 + char_at(text, at + 2).len_utf8())
        } else {
            continue;
        };
        let end = match b.get(end) {
            None => end,
            Some(b' ' | b'-') => end + 1,
            Some(_) => continue,
        };
        if !ascii {
            return None;
        }
        let code = u16::from(b[at] - b'0') * 100
            + u16::from(b[at + 1] - b'0') * 10
            + u16::from(last - b'0');
        if code >= 400 {
            return Some(code);
        }
        first.get_or_insert(code);
        from = end;
        i = end;
    }
    first
}

/// Picks the better of a DSN `Status:` field and a code found in the diagnostic: the field,
/// unless it is `x.0.0` and the diagnostic carries any more specific code (Exim, Courier and
/// OpenSMTPD write 5.0.0 whatever the remote said), or it is `x.N.0` and the diagnostic
/// carries a specific code of the same class.
pub fn prefer_specific(field: Option<String>, from_text: Option<String>) -> Option<String> {
    match (field, from_text) {
        // A bare x.0.0 says nothing, not even the class the remote meant: Exim writes 5.0.0
        // for a 421 it gave up on.
        (Some(f), Some(t)) if f.ends_with(".0.0") && !t.ends_with(".0.0") => Some(t),
        (Some(f), Some(t)) if is_generic(&f) && !is_generic(&t) && f[..1] == t[..1] => Some(t),
        (Some(f), _) => Some(f),
        (None, t) => t,
    }
}

/// `x.0.0`, or `x.N.0` ("other or undefined" within a subject): a status that names no
/// cause of its own.
pub fn is_generic(status: &str) -> bool {
    status.ends_with(".0")
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

    /// The definitions the scanners implement, searched as the code before them did.
    static ENHANCED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?:^|[^\d.])([245])\.(\d{1,3})\.(\d{1,3})(?:[^\d.]|\.(?:\D|$)|$)").unwrap()
    });
    static REPLY: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?:^|[^\w.\-/:#])([245][0-5]\d)(?:[ \-]|$)").unwrap());

    fn regex_all_enhanced(text: &str) -> Vec<String> {
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

    fn regex_enhanced(text: &str) -> Option<String> {
        let all = regex_all_enhanced(text);
        all.iter()
            .find(|s| !s.starts_with('2'))
            .or(all.first())
            .cloned()
    }

    fn regex_reply_code(text: &str) -> Option<u16> {
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

    fn agree(text: &str) {
        assert_eq!(find_enhanced(text), regex_enhanced(text), "{text:?}");
        assert_eq!(
            find_all_enhanced(text),
            regex_all_enhanced(text),
            "{text:?}"
        );
        assert_eq!(find_reply_code(text), regex_reply_code(text), "{text:?}");
    }

    #[test]
    fn scanners_agree_with_the_regexes() {
        // Characters that matter to the codes and around them: digits (most of all the class
        // digits), dots, word and non-word separators, a non-ASCII digit (U+0663), a non-ASCII
        // letter, a non-ASCII non-word character and a line break.
        const ALPHABET: &[&str] = &[
            "0", "1", "2", "3", "4", "5", "5", "2", "4", "9", ".", ".", ".", "a", "Z", "_", " ",
            " ", "-", "/", ":", "#", ";", "\u{663}", "é", "—", "\n",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200_000 {
            let len = (next() % 24) as usize;
            let text: String = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            agree(&text);
        }
        for text in [
            "",
            "5.1.1",
            "5.1.1.",
            "5.1.1.\u{663}",
            "5.1.1.é",
            "5.1.1\u{663}",
            "\u{663}5.1.1",
            "é5.1.1",
            "5.\u{663}.1 4.2.2",
            "5.01.001",
            "2.0.0 then 5.1.1",
            "2.0.0.5.1.1",
            "550",
            "55\u{663}",
            "250 550 ",
            "250 \u{663}550",
            "250-550",
            "é550 ",
            "\u{663}550 ",
            "—550 ",
            "x 25\u{663} 550",
        ] {
            agree(text);
        }
    }

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
