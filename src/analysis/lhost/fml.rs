//! fml, the Japanese mailing-list manager. When someone who is not subscribed posts to a
//! members-only list, fml returns a notice instead of distributing the post:
//!
//! ```text
//! Subject: You alice@sender.example are not member (team ML)
//! X-MLServer: fml [fml 4.0.3 release]
//!
//! You are not a member of this mailing list <team@lists.example.org>.
//! ```
//!
//! Recognised by the `X-MLServer: fml` header and that sentence. The refused recipient is the
//! list; the diagnostic is the sentence (a refusal of the sender, not of an address).

use super::super::mail::Mail;
use super::Found;
use super::notice::{Notice, first_address};
use super::text;

const NOT_MEMBER: &str = "You are not a member of this mailing list";

pub fn parse(mail: &Mail<'_>) -> Option<Found> {
    if !mail
        .msg
        .header_raw("X-MLServer")
        .is_some_and(|h| h.trim_start().starts_with("fml"))
    {
        return None;
    }
    let line = mail.text.lines().find(|l| l.contains(NOT_MEMBER))?;
    let list = first_address(line)?;
    let notice = Notice::of(mail, &mail.text);
    let recipients = text::recipient(list, line, "failed").into_iter().collect();
    notice.found("fml", recipients)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_by_a_non_member_is_refused_for_the_list() {
        let raw = "From: team-admin@lists.example.org\nTo: alice@sender.example\nSubject: You alice@sender.example are not member (team ML)\nX-MLServer: fml [fml 4.0.3 release (20011202/4.0.3)]\n\nYou are not a member of this mailing list <team@lists.example.org>.\n\nIf you know the general guide of this list, please send mail with\nthe mail body\n";
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        let f = parse(&mail).unwrap();
        assert_eq!(f.mta, "fml");
        assert_eq!(f.recipients.len(), 1);
        assert_eq!(f.recipients[0].address, "team@lists.example.org");
        assert_eq!(
            f.recipients[0].diagnostic.as_deref(),
            Some("You are not a member of this mailing list <team@lists.example.org>.")
        );
    }
}
