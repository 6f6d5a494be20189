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

/// Phrases that ask to be removed, in the subject or at the start of the body.
const REQUEST: &str = r"(?x)
    ^\s*(re:\s*|aw:\s*|res:\s*|rv:\s*)*\s*(
      unsubscribe|unsub\b|remove\s+me|please\s+remove|take\s+me\s+off|stop\s+(sending|emailing|mailing)|opt[\s-]?out|^\s*stop\s*$
    | descadastr|cancelar\s+(a\s+)?inscri[cç][aã]o|remover\s+(meu|o\s+meu)|me\s+remova|n[aã]o\s+quero\s+(mais\s+)?receber|sair\s+da\s+lista
    | darse\s+de\s+baja|dar(me)?\s+de\s+baja|baja\b|cancelar\s+suscripci[oó]n|no\s+quiero\s+recibir
    | d[eé]sinscri|d[eé]sabonner|d[eé]sabonnement
    | abmelden|abbestellen|austragen
    | cancellami|disiscrivi|cancellazione
    | uitschrijven|afmelden
    | 配信停止|登録解除
    )";

static ADDRESS_RE: LazyLock<Regex> = LazyLock::new(|| {
    RegexBuilder::new(ADDRESS)
        .case_insensitive(true)
        .build()
        .unwrap()
});
static REQUEST_RE: LazyLock<Regex> = LazyLock::new(|| {
    RegexBuilder::new(REQUEST)
        .case_insensitive(true)
        .multi_line(false)
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
    if REQUEST_RE.is_match(mail.subject()) {
        return Some("subject");
    }
    let first = mail
        .text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('>'))
        .unwrap_or("");
    if first.len() < 200 && REQUEST_RE.is_match(first) {
        return Some("first-line");
    }
    None
}
