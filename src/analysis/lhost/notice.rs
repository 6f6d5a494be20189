//! What the text-template modules share once they have found their recipients: the returned
//! original (pasted after the notice or attached), the addresses that are never a bounced
//! recipient, and the assembly of a [`Found`].

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
        let (notice, returned) = if std::ptr::eq(text, mail.text.as_str()) {
            // The message's own text: its split is computed once (same bytes, so same offsets).
            let (n, r) = mail.split_original();
            (&text[..n.len()], r.map(|r| &text[text.len() - r.len()..]))
        } else {
            text::split_original(text)
        };
        let original =
            original::from_parts(mail).or_else(|| returned.and_then(original::from_header_text));
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
        let mut out: Vec<Recipient> = Vec::new();
        for r in recipients {
            if !self.excl.excludes(&r.address) && !out.iter().any(|o| o.address == r.address) {
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
