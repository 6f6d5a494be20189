//! Biglobe (Japan). A plain-text notice from `postmaster@biglobe.ne.jp` with two dashed
//! headings: the failed addresses, then the reason in prose, without an SMTP code:
//!
//! ```text
//!    ----- The following addresses had delivery problems -----
//! rcpt@example.org
//!
//!    ----- Non-delivered information -----
//! The recipient's mailbox is over its limit.
//! ```
//!
//! Recognised by the second heading, which no other template uses. The addresses under the
//! first heading are an explicit list: they are kept even when one is a role mailbox.

use super::super::mail::Mail;
use super::Found;
use super::notice::{Notice, first_address};
use super::text;

const LIST: &str = "----- The following addresses had delivery problems -----";
const INFO: &str = "----- Non-delivered information -----";

pub fn parse(mail: &Mail<'_>) -> Option<Found> {
    let t = &mail.text;
    static INFO_AT: text::Literals = text::Literals::new(&[INFO]);
    let info_at = INFO_AT.find(t)?;
    let list_at = t[..info_at].find(LIST)?;
    let notice = Notice::of(mail, t);
    let listed: Vec<String> = t[list_at + LIST.len()..info_at]
        .lines()
        .filter_map(first_address)
        .map(str::to_ascii_lowercase)
        .collect();
    let reason: Vec<&str> = t[info_at + INFO.len()..]
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty() && !l.trim_start().starts_with("-----"))
        .collect();
    let reason = reason.join(" ");
    let recipients = listed
        .iter()
        .filter_map(|a| text::recipient(a, &reason, "failed"))
        .collect();
    let parties = |a: &str| notice.excl.names_a_party(a);
    let explicit: std::collections::HashSet<String> =
        listed.iter().filter(|a| !parties(a)).cloned().collect();
    notice.found_keeping("biglobe", recipients, |a| explicit.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_list_and_the_prose_reason() {
        let raw = "From: postmaster@isp.example.jp\nTo: alice@sender.example\nSubject: Returned mail: Service unavailable\n\n   ----- The following addresses had delivery problems -----\npostmaster@mx.rcpt.example\n\n   ----- Non-delivered information -----\nThe mailbox of the recipient is full:\nno more messages fit.\n\n";
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        let f = parse(&mail).unwrap();
        assert_eq!(f.mta, "biglobe");
        assert_eq!(f.recipients.len(), 1);
        assert_eq!(f.recipients[0].address, "postmaster@mx.rcpt.example");
        assert_eq!(
            f.recipients[0].diagnostic.as_deref(),
            Some("The mailbox of the recipient is full: no more messages fit.")
        );
    }
}
