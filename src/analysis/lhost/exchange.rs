//! Microsoft Exchange (2003, 2007 and later, Office 365 / Outlook.com) non-delivery reports.
//! Recognised by their fixed sentences:
//!
//! ```text
//! Your message ... did not reach the following recipient(s):      (Exchange 2003)
//!
//! rcpt@example.org on 2/11/2026 10:00 AM
//!     The e-mail account does not exist at the organization this message was sent to.
//!     <mx.example.org #5.1.1>
//! ```
//!
//! ```text
//! Delivery has failed to these recipients or groups:             (Exchange 2007+)
//! ...
//! Diagnostic information for administrators:
//! Generating server: mx.example.org
//!
//! rcpt@example.org
//! #550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##
//! Remote Server returned '550 5.1.1 User unknown'
//! ```
//!
//! In the newer form only the administrators' section is read: the address on a line of its
//! own opens a recipient, the lines under it up to a blank line are its diagnostic.

use super::super::mail::Mail;
use super::super::verdict::Recipient;
use super::Found;
use super::notice::{Notice, first_address};
use super::text;

const OLD: &str = "did not reach the following recipient(s):";
const ADMIN: &str = "Diagnostic information for administrators:";

pub fn parse(mail: &Mail<'_>) -> Option<Found> {
    let t = &mail.text;
    static OLD_AT: text::Literals = text::Literals::new(&[OLD]);
    static ADMIN_AT: text::Literals = text::Literals::new(&[ADMIN]);
    let old = OLD_AT.find(t);
    let admin = ADMIN_AT.find(t);
    if old.is_none() && admin.is_none() {
        return None;
    }
    let notice = Notice::of(mail, t);
    let recipients = match (admin, old) {
        (Some(i), _) => admin_section(&t[i + ADMIN.len()..]),
        (None, Some(i)) => exchange2003(&t[i + OLD.len()..]),
        (None, None) => Vec::new(),
    };
    let mta = if admin.is_some() {
        "exchange2007"
    } else {
        "exchange2003"
    };
    notice.found(mta, recipients)
}

/// `rcpt@example.org on DATE` lines with indented diagnostics under them.
fn exchange2003(body: &str) -> Vec<Recipient> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in body.lines() {
        crate::analysis::budget::check();
        if line.trim().is_empty() {
            if let Some((a, d)) = current.take() {
                out.extend(text::recipient(&a, &d, "failed"));
            }
            continue;
        }
        let first_word = line.split_whitespace().next().unwrap_or("");
        let opens = first_address(first_word).is_some()
            && (line.contains(" on ") || line.trim() == first_word);
        if !line.starts_with([' ', '\t']) && !opens && current.is_some() {
            if let Some((_, d)) = current.as_mut() {
                d.push(' ');
                d.push_str(line.trim());
            }
            continue;
        }
        if !line.starts_with([' ', '\t']) {
            if let Some((a, d)) = current.take() {
                out.extend(text::recipient(&a, &d, "failed"));
            }
            let first = line.split_whitespace().next().unwrap_or("");
            match first_address(first) {
                Some(a) if line.contains(" on ") || line.trim() == first => {
                    current = Some((a.to_string(), String::new()))
                }
                _ => break,
            }
        } else if let Some((_, d)) = current.as_mut() {
            d.push(' ');
            d.push_str(line.trim());
        }
    }
    if let Some((a, d)) = current.take() {
        out.extend(text::recipient(&a, &d, "failed"));
    }
    out
}

/// The administrators' section: an address alone on a line, then its diagnostic lines.
fn admin_section(body: &str) -> Vec<Recipient> {
    let body = &body[..body.find("Original message headers").unwrap_or(body.len())];
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in body.lines() {
        crate::analysis::budget::check();
        let l = line.trim();
        if l.is_empty() {
            if let Some((a, d)) = current.take() {
                out.extend(text::recipient(&a, &d, "failed"));
            }
            continue;
        }
        let alone = !l.contains(' ') && first_address(l).is_some_and(|a| a.len() + 2 >= l.len());
        if alone {
            if let Some((a, d)) = current.take() {
                out.extend(text::recipient(&a, &d, "failed"));
            }
            current = Some((
                first_address(l).unwrap_or_default().to_string(),
                String::new(),
            ));
        } else if let Some((_, d)) = current.as_mut() {
            // `#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##`: the reply code is hashed.
            d.push(' ');
            d.push_str(l.trim_start_matches('#'));
        }
    }
    if let Some((a, d)) = current.take() {
        out.extend(text::recipient(&a, &d, "failed"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange2003_list() {
        let raw = "From: System Administrator <postmaster@sender.example>\nTo: alice@sender.example\nSubject: Undeliverable: hello\n\nYour message\n\n  To:      bob@rcpt.example\n  Subject: hello\n  Sent:    Mon, 2 Nov 2026 10:00:00 +0000\n\ndid not reach the following recipient(s):\n\nbob@rcpt.example on Mon, 2 Nov 2026 10:00:05 +0000\n    The recipient name is not recognized\n    The MTS-ID of the original message is: c=us;a= ;p=example;l=HOST0001\n    MSEXCH:IMS:EXAMPLE:SITE:HOST 0 (000C05A6) Unknown Recipient\n";
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        let f = parse(&mail).unwrap();
        assert_eq!(f.mta, "exchange2003");
        assert_eq!(f.recipients.len(), 1);
        assert_eq!(f.recipients[0].address, "bob@rcpt.example");
        assert!(
            f.recipients[0]
                .diagnostic
                .as_deref()
                .unwrap()
                .starts_with("The recipient name is not recognized")
        );
    }

    #[test]
    fn exchange2007_admin_section() {
        let raw = "From: postmaster@sender.example\nTo: alice@sender.example\nSubject: Undeliverable: hello\n\nDelivery has failed to these recipients or groups:\n\nbob@rcpt.example\nThe e-mail address you entered couldn't be found.\n\nDiagnostic information for administrators:\n\nGenerating server: mx.sender.example\n\nbob@rcpt.example\n#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##\n\nOriginal message headers:\n\nFrom: alice@sender.example\n";
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        let f = parse(&mail).unwrap();
        let r = &f.recipients[0];
        assert_eq!(r.address, "bob@rcpt.example");
        assert_eq!(r.status.as_deref(), Some("5.1.1"));
        assert_eq!(r.reply_code, Some(550));
        assert_eq!(
            r.diagnostic.as_deref(),
            Some("550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##")
        );
    }
}
