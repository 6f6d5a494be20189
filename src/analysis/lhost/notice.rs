//! What the text-template modules share once they have found their recipients: the returned
//! original (pasted after the notice or attached), the addresses that are never a bounced
//! recipient, and the assembly of a [`Found`].

use std::collections::{HashMap, HashSet};

use super::super::Original;
use super::super::mail::Mail;
use super::super::original;
use super::super::verdict::Recipient;
use super::Found;
use super::text::{self, Exclusions};

/// The notice of a text bounce, its returned original and the exclusions that follow from it.
pub struct Notice<'m> {
    pub text: &'m str,
    pub original: Option<Original>,
    pub excl: Exclusions,
}

impl<'m> Notice<'m> {
    /// Splits `text` (usually `mail.text`) at the returned original.
    pub fn of(mail: &Mail<'_>, text: &'m str) -> Notice<'m> {
        let own = std::ptr::eq(text, mail.text.as_str());
        let (notice, returned) = if own {
            // The message's own text: its split is computed once (same bytes, so same offsets).
            let (n, r) = mail.split_original();
            (&text[..n.len()], r.map(|r| &text[text.len() - r.len()..]))
        } else {
            text::split_original(text)
        };
        let original = original::from_parts(mail).or_else(|| match own {
            true => mail.text_original().cloned(),
            false => returned.and_then(original::from_header_text),
        });
        let excl = Exclusions::for_mail(mail, &[original.as_ref().and_then(|o| o.from.as_deref())]);
        Notice {
            text: notice,
            original,
            excl,
        }
    }

    /// A `Found` for `mta` with the recipients not excluded (first occurrence of each
    /// address wins); `None` when none is left.
    pub fn found(self, mta: &'static str, recipients: Vec<Recipient>) -> Option<Found> {
        self.found_keeping(mta, recipients, |_| false)
    }

    /// Like [`Notice::found`], but addresses for which `explicit` holds are kept whatever the
    /// exclusions say: a template's own list of failed addresses (a header such as
    /// `X-Failed-Recipients`, a heading such as "The following addresses had delivery
    /// problems") names them as plainly as a DSN's `Final-Recipient`, even when that is the
    /// postmaster or the sender's own address.
    pub fn found_keeping(
        self,
        mta: &'static str,
        recipients: Vec<Recipient>,
        explicit: impl Fn(&str) -> bool,
    ) -> Option<Found> {
        let mut out: Vec<Recipient> = Vec::new();
        // Linear in the number of recipients: a notice may list a hundred thousand.
        let mut seen: HashSet<String> = HashSet::new();
        for r in recipients {
            if (explicit(&r.address) || !self.excl.excludes(&r.address))
                && seen.insert(r.address.clone())
            {
                out.push(r);
            }
        }
        (!out.is_empty()).then_some(Found {
            mta,
            recipients: out,
            original: self.original,
        })
    }
}

/// The diagnostics of the lines led by an address (`address: text` or `<address>: text`) in
/// a notice, with the indented lines that continue them, keyed by the lowercased address (the
/// first line wins). Used for a report's own recipients, so no exclusion applies; one pass
/// over the notice whatever the number of recipients.
pub fn address_lines(notice: &str) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    let mut lines = notice.lines().peekable();
    while let Some(line) = lines.next() {
        let l = line.trim_start().trim_start_matches('<');
        let Some(colon) = l.find(':') else {
            continue;
        };
        let head = l[..colon].trim_end_matches('>');
        if !head.contains('@') || head.contains(char::is_whitespace) {
            continue;
        }
        let mut diag = l[colon + 1..].trim().to_string();
        while let Some(next) = lines.peek() {
            if !next.starts_with([' ', '\t']) || next.trim().is_empty() {
                break;
            }
            diag.push(' ');
            diag.push_str(next.trim());
            lines.next();
        }
        if !diag.is_empty() {
            out.entry(head.to_ascii_lowercase()).or_insert(diag);
        }
    }
    out
}

/// The diagnostic of the line led by `address` (see [`address_lines`]).
pub fn address_line(notice: &str, address: &str) -> Option<String> {
    address_lines(notice).remove(&address.to_ascii_lowercase())
}

/// The first bracketed address in a line (`<a@b>`), else the first bare one.
pub fn first_address(line: &str) -> Option<&str> {
    if let Some(start) = line.find('<')
        && let Some(len) = line[start + 1..].find('>')
    {
        let inner = &line[start + 1..start + 1 + len];
        if inner.contains('@') && !inner.contains(char::is_whitespace) {
            return Some(inner);
        }
    }
    text::addresses(line).next()
}

#[cfg(test)]
mod tests {
    use super::address_line;

    #[test]
    fn a_line_led_by_the_address_is_its_diagnostic() {
        let text = "Hello.\n\nPostmaster@Rcpt.example: Domain does not exist\n    (after DNS lookup)\nother@rcpt.example: full\n";
        assert_eq!(
            address_line(text, "postmaster@rcpt.example").as_deref(),
            Some("Domain does not exist (after DNS lookup)")
        );
        assert_eq!(address_line(text, "nobody@rcpt.example"), None);
        assert_eq!(
            address_line("<a@b.example>: 550 no", "a@b.example").as_deref(),
            Some("550 no")
        );
    }
}
