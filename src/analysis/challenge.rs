//! Challenge-response: a filter on the recipient's side holds the message and asks the sender
//! to prove it is a person (TMDA, cPanel BoxTrapper, Spam Arrest, Boxbe, Mailinblack...).
//!
//! Nothing failed: the address is alive and the message waits for an answer a bulk sender
//! will not give. Such a notice is never a bounce, even when a gateway shapes it as a DSN
//! with `Action: delayed` and a 4.7.x status, so this question is asked before the report is
//! read. A notice is a challenge when its text both *asks* the sender to verify or confirm
//! itself and says the message is *held* until then: a bounce names a failure, a double
//! opt-in asks for a confirmation but holds no message of ours.
//!
//! What the services write was read in their documentation and code: TMDA's
//! `templates/confirm_request.txt` ("Your message attached below is being held because the
//! address ... has not been verified"), cPanel's BoxTrapper docs ("requires verification of
//! your address before your message can be delivered"), Spam Arrest and Boxbe help pages
//! ("verify that you are a person", "Guest List"), Mailinblack (French: "vous authentifier").

use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};

use super::lhost::text::Literals;
use super::mail::Mail;

/// Words without which no notice is a challenge: a cheap gate before the patterns.
static GATE: Literals = Literals::new(&[
    "verif",
    "Verif",
    "VERIF",
    "confirm",
    "Confirm",
    "CONFIRM",
    "authentif",
    "Authentif",
    "prove",
    "Prove",
    "guest list",
    "Guest List",
    "bestätig",
    "Bestätig",
    "verifiz",
    "confirme",
    "Confirme",
    "verifique",
    "Verifique",
]);

/// The sender is asked to verify or confirm itself.
static ASKS: LazyLock<Regex> = LazyLock::new(|| {
    pattern(&[
        r"(verify|prove|confirm)( that)? you are (a |an )?(real )?(human|person|people)",
        r"not an? (automated|automatic) (sender|mailer|program|system)",
        r"(verify|confirm|authenticate) (your|the) (e-?mail )?(address|identity|message|sender)",
        r"(please )?confirm your (e-?mail|message)",
        r"requires? (the )?verification of your",
        r"(address|sender)\W{0,3} (has not been|is not|isn.t|was not) (yet )?verified",
        r"(only )?accepts? (e-?mail|mail|messages) (only )?from (verified|approved|known) senders",
        r"sender verification (is )?(required|request)",
        r"complete the verification( process)?",
        r"guest list",
        r"confirmation request",
        // French, Spanish, Portuguese, German
        r"vous authentifier|authentification (requise|de l.exp[ée]diteur)|confirme[rz] (votre|que vous)",
        r"verifi(ca|que|car) (que (eres|es|você é)|(tu|su|seu) (direcci[oó]n|identidad|endere[cç]o|remetente))",
        r"confirm(e|ar) (seu|su|tu) (e-?mail|mensaje|mensagem|endere[cç]o|direcci[oó]n)",
        r"(bestätigen|verifizieren) sie (ihre|bitte|dass)",
    ])
});

/// The message is held until the sender answers.
static HOLDS: LazyLock<Regex> = LazyLock::new(|| {
    pattern(&[
        r"(message|e-?mail|mail)\b[^.]{0,80}\b(is|has been|was|being|are) (being )?(held|waitlisted|quarantined|kept|pending|on hold|waiting)",
        r"before (your|the|their) (message|e-?mail|mail)s? (is|are|can be|will be) delivered",
        r"(release|deliver) (your|the held) (message|e-?mail)",
        r"(message|e-?mail)s? will (only )?be delivered (once|after|when|as soon as)",
        r"your messages? will (then )?be delivered",
        r"(message|e-?mail)s? (you have )?(already )?sent will remain",
        r"waiting list",
        r"held (pending|until)",
        // French, Spanish, Portuguese, German
        r"message (est )?en attente|sera (d[ée]livr[ée]|remis)",
        r"mensaje (est[aá] )?(retenido|en espera)|ser[aá] entregado",
        r"mensagem (est[aá] )?(retida|aguardando|em espera)|ser[aá] entregue",
        r"nachricht (wird )?(zurückgehalten|zugestellt, sobald)",
    ])
});

fn pattern(alternatives: &[&str]) -> Regex {
    // A space in a pattern is any run of whitespace: notices wrap their sentences.
    RegexBuilder::new(&alternatives.join("|").replace(' ', r"\s+"))
        .case_insensitive(true)
        .build()
        .expect("challenge patterns compile")
}

/// True if the message is a challenge-response request: its notice (or subject) asks the
/// sender to verify itself, and its notice says the message is held until then.
pub fn detect(mail: &Mail<'_>) -> bool {
    let (notice, _) = mail.split_original();
    let notice = &notice[..floor_char_boundary(notice, NOTICE_BYTES)];
    let subject = mail.subject();
    if !(GATE.any_in(notice) || GATE.any_in(subject)) {
        return false;
    }
    (ASKS.is_match(notice) || ASKS.is_match(subject)) && HOLDS.is_match(notice)
}

/// How much of a notice is read: a challenge says what it wants at the top.
const NOTICE_BYTES: usize = 8 * 1024;

fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    (0..=at).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(subject: &str, body: &str) -> bool {
        let raw = format!(
            "From: a@example.org\nTo: news@example.com\nSubject: {subject}\nAuto-Submitted: auto-replied\n\n{body}\n"
        );
        detect(&Mail::parse(raw.as_bytes()).unwrap())
    }

    #[test]
    fn asks_and_holds() {
        assert!(mail(
            "Please confirm your message",
            "Your message attached below is being held because the address <news@example.com> has not been verified."
        ));
        assert!(mail(
            "Verification required",
            "Click the link to verify that you are a person. Your message will be delivered once you do."
        ));
    }

    #[test]
    fn a_bounce_or_an_opt_in_is_no_challenge() {
        assert!(!mail(
            "Undelivered Mail Returned to Sender",
            "550 5.7.1 Sender verify failed: your message could not be delivered."
        ));
        assert!(!mail(
            "Please confirm your subscription",
            "Please confirm your email address by clicking the link below to join the list."
        ));
    }
}
