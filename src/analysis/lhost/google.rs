//! Google: Gmail, Google Workspace (G Suite) and Google Groups bounces.
//!
//! All of them come from `mailer-daemon@googlemail.com` (older ones from `@google.com`), and
//! Google has used three templates over the years:
//!
//! * the classic plain-text one: "Delivery to the following recipient failed permanently:"
//!   (or "has been delayed:"), the recipients indented on the next lines, then "Technical
//!   details of permanent failure:" and Google's explanation, in which "The error that the
//!   other server returned was:" introduces the remote server's own reply;
//! * the current one, usually wrapped in an RFC 3464 report: a headline such as
//!   "** Address not found **" or "** Delivery incomplete **", a sentence naming the recipient,
//!   then "The response was:" (or "The response from the remote server was:") and the reply;
//! * Google Groups' refusal of a post, written in the sender's language: the group is named in
//!   parentheses, the text ends with a link to groups.google.com, and `X-Failed-Recipients`
//!   names the group address.
//!
//! The remote reply is what the rule table must read, so the diagnostic is cut down to it
//! whenever the template marks where it starts. Two Google texts carry no code; they get the
//! status Google itself writes for them in its RFC 3464 reports, so that a plain-text notice
//! and a structured one about the same failure are classified alike (see `implied_status`).

use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};

use super::super::mail::Mail;
use super::super::verdict::{Action, Recipient};
use super::super::{original, recipient_address, status};
use super::Found;
use super::text::{self, Exclusions};

/// The classic template's recipient list header; group 1 tells a delay from a failure.
static LIST_HEADER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^\s*Delivery to the following recipients? (failed permanently|(?:has|have) been delayed|failed)").unwrap()
});

/// Where Google's explanation starts, in the classic template.
static TECHNICAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^\s*Technical details of (?:permanent|temporary) failure:?").unwrap()
});

/// Where the remote server's own reply starts, in either template.
static RESPONSE: LazyLock<Regex> = LazyLock::new(|| {
    RegexBuilder::new(r"The error that the other server returned was:|^\s*The response (?:from the remote server )?was:")
        .multi_line(true)
        .build()
        .unwrap()
});

/// The current template names the recipient in its first sentence.
static NAMED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:delivered to|delivering your message to|message to) <?([^\s<>]+@[^\s<>]+?)>?(?:\.?\s| because|$)")
        .unwrap()
});

/// Notices that announce a retry, not a failure.
static DELAYED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:has|have) been delayed|\*\* Delivery incomplete \*\*|temporary problem delivering|Technical details of temporary failure")
        .unwrap()
});

pub fn parse(mail: &Mail<'_>) -> Option<Found> {
    let from = mail.from_address_str().unwrap_or_default();
    let from_google = from.starts_with("mailer-daemon@")
        && (from.ends_with("@googlemail.com") || from.ends_with("@google.com"));
    static PERMANENT: text::Literals =
        text::Literals::new(&["Technical details of permanent failure"]);
    if !from_google && !PERMANENT.any_in(&mail.text) {
        return None;
    }
    let (notice, returned) = mail.split_original();
    let original = original::pasted_or_attached(returned, mail);
    let mut excl = Exclusions::for_mail(mail, &[original.as_ref().and_then(|o| o.from.as_deref())]);
    excl.add(from);
    let failed_header: Vec<String> = mail
        .headers("X-Failed-Recipients")
        .iter()
        .flat_map(|h| h.split(','))
        .filter_map(recipient_address)
        .collect();

    if notice.contains("groups.google.com") && !failed_header.is_empty() {
        return Some(Found {
            mta: "googlegroups",
            recipients: failed_header
                .iter()
                .map(|a| group_refusal(a, notice))
                .collect(),
            original,
        });
    }

    let action = if DELAYED.is_match(notice) {
        "delayed"
    } else {
        "failed"
    };
    let diagnostic = diagnostic_of(notice);
    let mut addresses = failed_header;
    if addresses.is_empty() {
        addresses = listed(notice, &excl);
    }
    if addresses.is_empty()
        && let Some(c) = NAMED.captures(notice)
        && let Some(a) = recipient_address(&c[1])
        && !excl.excludes(&a)
    {
        addresses.push(a);
    }
    let recipients: Vec<Recipient> = addresses
        .iter()
        .filter_map(|a| {
            let mut r = text::recipient(a, &diagnostic, action)?;
            if r.status.is_none() {
                r.status = implied_status(&diagnostic).map(str::to_string);
            }
            Some(r)
        })
        .collect();
    if recipients.is_empty() {
        return None;
    }
    Some(Found {
        mta: "gmail",
        recipients,
        original,
    })
}

/// The recipients indented under the classic template's list header.
fn listed(notice: &str, excl: &Exclusions) -> Vec<String> {
    let Some(m) = LIST_HEADER.find(notice) else {
        return Vec::new();
    };
    let rest = notice[m.end()..]
        .split_once('\n')
        .map(|(_, r)| r)
        .unwrap_or("");
    rest.lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty() && !TECHNICAL.is_match(l))
        .flat_map(text::addresses)
        .filter_map(recipient_address)
        .filter(|a| !excl.excludes(a))
        .collect()
}

/// The remote reply when the template marks it, else Google's own technical explanation, else
/// the whole notice.
fn diagnostic_of(notice: &str) -> String {
    if let Some(m) = RESPONSE.find(notice) {
        // Google follows some replies with its own advice as a bulleted list: not the reply.
        let reply: Vec<&str> = notice[m.end()..]
            .lines()
            .skip_while(|l| l.trim().is_empty())
            .take_while(|l| !l.trim_start().starts_with("* ") && !l.starts_with("Learn more"))
            .collect();
        return text::squash(&reply.join(" "));
    }
    if let Some(m) = TECHNICAL.find(notice) {
        return text::squash(&notice[m.end()..]);
    }
    text::squash(notice)
}

/// The status Google writes in its own RFC 3464 reports for two texts that carry no code.
fn implied_status(diagnostic: &str) -> Option<&'static str> {
    if diagnostic.contains("did not accept our requests to connect") {
        // "The recipient server did not accept our requests to connect": Status 4.4.1.
        Some("4.4.1")
    } else {
        None
    }
}

/// A Google Groups refusal: the paragraph that names the group (without the greeting, which
/// names the sender) is the diagnostic. The notice means the group refused the post (it may
/// not exist, or the sender may not post to it): RFC 3463 X.7.1, delivery not authorised.
fn group_refusal(group: &str, notice: &str) -> Recipient {
    let local = group.split('@').next().unwrap_or(group).to_lowercase();
    let paragraphs: Vec<&str> = notice
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let named = paragraphs
        .iter()
        .find(|p| !p.contains('@') && p.to_lowercase().contains(&local))
        .or_else(|| paragraphs.get(1))
        .or_else(|| paragraphs.first())
        .copied()
        .unwrap_or("");
    let diagnostic = text::squash(named);
    Recipient {
        address: group.to_string(),
        action: Some(Action::Failed),
        status: status::find_enhanced(&diagnostic).or_else(|| Some("5.7.1".into())),
        diagnostic: (!diagnostic.is_empty()).then_some(diagnostic),
        ..Recipient::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(raw: &str) -> Found {
        let mail = Mail::parse(raw.as_bytes()).unwrap();
        parse(&mail).expect("recognised")
    }

    #[test]
    fn classic_template_keeps_the_remote_reply() {
        let f = found(
            "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\n\
             To: alice@example.net\n\
             Subject: Delivery Status Notification (Failure)\n\n\
             Delivery to the following recipient failed permanently:\n\n\
             \x20    bob@example.org\n\n\
             Technical details of permanent failure:\n\
             Google tried to deliver your message, but it was rejected by the server for the\n\
             recipient domain example.org by mx.example.org. [192.0.2.9].\n\n\
             The error that the other server returned was:\n\
             550 5.1.1 <bob@example.org>: Recipient address rejected: no such user\n\n\
             ----- Original message -----\n\n\
             From: alice@example.net\nTo: bob@example.org\nSubject: hi\n\nhello\n",
        );
        assert_eq!(f.mta, "gmail");
        let r = &f.recipients[0];
        assert_eq!(r.address, "bob@example.org");
        assert_eq!(r.action, Some(Action::Failed));
        assert_eq!(r.status.as_deref(), Some("5.1.1"));
        assert_eq!(r.reply_code, Some(550));
        assert_eq!(
            r.diagnostic.as_deref(),
            Some("550 5.1.1 <bob@example.org>: Recipient address rejected: no such user")
        );
        assert_eq!(f.recipients.len(), 1);
    }

    #[test]
    fn connection_failure_and_delay() {
        let f = found(
            "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\n\
             To: alice@example.net\n\
             Subject: Delivery Status Notification (Delay)\n\n\
             Delivery to the following recipient has been delayed:\n\n\
             \x20    carol@example.com\n\n\
             Technical details of temporary failure:\n\
             The recipient server did not accept our requests to connect.\n\
             [example.com 192.0.2.1: socket error]\n",
        );
        let r = &f.recipients[0];
        assert_eq!(r.address, "carol@example.com");
        assert_eq!(r.action, Some(Action::Delayed));
        assert_eq!(r.status.as_deref(), Some("4.4.1"));
        assert_eq!(r.reply_code, None);
        assert!(r.diagnostic.as_deref().unwrap().ends_with("socket error]"));
    }

    #[test]
    fn current_template_names_the_recipient() {
        let f = found(
            "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\n\
             To: alice@example.net\n\
             Subject: Delivery Status Notification (Failure)\n\n\
             ** Message not delivered **\n\n\
             There was a problem delivering your message to dave@example.com. See below.\n\n\
             The response was:\n\n\
             Your message to dave@example.com was refused as spam.\n\
             * Ask the owner to review the filter.\n",
        );
        let r = &f.recipients[0];
        assert_eq!(r.address, "dave@example.com");
        assert_eq!(
            r.diagnostic.as_deref(),
            Some("Your message to dave@example.com was refused as spam.")
        );
        assert_eq!(r.status, None);
    }

    #[test]
    fn google_groups_refusal() {
        let f = found(
            "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\n\
             To: alice@example.net\n\
             X-Failed-Recipients: cats@googlegroups.com\n\
             Subject: Delivery Status Notification (Failure)\n\n\
             Hi alice@example.net,\n\n\
             The group (cats) refused your post: it may not exist, or you may not post to it.\n\n\
             Help: https://groups.google.com/support/\n\n\
             ----- Original message -----\n\n\
             From: alice@example.net\nTo: cats@googlegroups.com\n\nhello\n",
        );
        assert_eq!(f.mta, "googlegroups");
        let r = &f.recipients[0];
        assert_eq!(r.address, "cats@googlegroups.com");
        assert_eq!(r.status.as_deref(), Some("5.7.1"));
        assert!(
            r.diagnostic
                .as_deref()
                .unwrap()
                .starts_with("The group (cats)")
        );
    }
}
