//! Requests to stop mailing that arrive as ordinary mail: replies to a `List-Unsubscribe`
//! mailto address, or people writing "unsubscribe" / "remove me" / "descadastrar" in the
//! subject or the first line of their message. Footers of newsletters say "unsubscribe" too,
//! so only the subject, the recipient address and the first lines are looked at.

use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};

use super::mail::Mail;

/// Local parts of addresses that exist only to receive unsubscribe requests.
const ADDRESS: &str =
    r"^(unsubscribe|unsub|remove|optout|opt-out|leave|list-unsubscribe|abmelden|descadastr)";

/// Phrases that ask to be removed. In a subject they must open it (after `Re:` and a
/// "please", see [`OPENING`]); in a short message they may stand anywhere in its first lines.
const PHRASES: &str = r"(?x:
      unsubscribe|unsub\b|remove\s+me|please\s+remove|take\s+me\s+off|stop\s+(sending|emailing|mailing)|opt[\s-]?out|^\s*stop\s*$
    | descadastr|cancelar\s+(a\s+)?inscri[cç][aã]o|remover\s+(meu|o\s+meu)|me\s+remova|n[aã]o\s+quero\s+(mais\s+)?receber|sair\s+da\s+lista
    | darse\s+de\s+baja|dar(me)?\s+de\s+baja|baja\b|cancelar\s+suscripci[oó]n|no\s+quiero\s+recibir
    | d[eé]sinscri|d[eé]sabonner|d[eé]sabonnement
    | abmelden|abbestellen|austragen
    | cancellami|disiscrivi|cancellazione
    | uitschrijven|afmelden
    | 配信停止|登録解除
    )";

/// What may precede the request at the start of a subject: reply prefixes and a "please".
const OPENING: &str = r"^\s*(re:\s*|aw:\s*|res:\s*|rv:\s*)*\s*((please|pls|kindly|por\s+favor|bitte|svp|s.il\s+vous\s+pla[iî]t|per\s+favore|alsjeblieft)[,!:]?\s+)?";

fn build(pattern: &str) -> Regex {
    RegexBuilder::new(&super::rules::ascii_classes(pattern))
        .case_insensitive(true)
        .build()
        .unwrap()
}

static SUBJECT_RE: LazyLock<Regex> = LazyLock::new(|| build(&format!("{OPENING}{PHRASES}")));
static PHRASE_RE: LazyLock<Regex> = LazyLock::new(|| build(PHRASES));
static ADDRESS_RE: LazyLock<Regex> = LazyLock::new(|| {
    RegexBuilder::new(&super::rules::ascii_classes(ADDRESS))
        .case_insensitive(true)
        .dfa_size_limit(32 << 20)
        .build()
        .unwrap()
});

/// Why the message is an unsubscribe request, if it is one.
pub fn detect(mail: &Mail<'_>) -> Option<&'static str> {
    let to_unsub = mail
        .msg
        .to()
        .into_iter()
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address())
        .any(|a| ADDRESS_RE.is_match(a.split('@').next().unwrap_or("")));
    if to_unsub {
        return Some("to=unsubscribe-address");
    }
    if SUBJECT_RE.is_match(mail.subject()) {
        return Some("subject");
    }
    // A person asking to be removed writes a few lines; a newsletter that mentions
    // "unsubscribe" in its footer writes many. Only short messages are read, and only their
    // first lines (quoted text and signatures after them are ignored).
    let own: Vec<&str> = mail
        .text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('>'))
        .take_while(|l| !l.starts_with("On ") || !l.ends_with("wrote:"))
        .collect();
    let length: usize = own.iter().map(|l| l.len()).sum();
    if length < 600 && own.iter().take(3).any(|l| PHRASE_RE.is_match(l)) {
        return Some("body");
    }
    None
}
