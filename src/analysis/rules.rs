//! The classification rule table: data in `rules/rules.toml`, compiled once.
//!
//! A rule is a conjunction of optional conditions on the evidence of one recipient (enhanced
//! status, reply code, status class, a case-insensitive pattern on the diagnostic). Rules are
//! tried in order; the first that holds decides the reason, and its id is the verdict's
//! `rule`. Each pattern is its own regex, run only when the rule's other conditions hold and
//! no earlier rule decided, in time linear in the diagnostic's length (no backtracking engine:
//! a rule table must not be a ReDoS vector).
//!
//! Why not one `RegexSet` scanning the diagnostic once for every pattern: the set's lazy DFA
//! tracks all patterns at once, so almost every byte of a diagnostic it has not seen before
//! creates a new state out of hundreds of NFA states (`.*` in a few patterns keeps them alive).
//! Building those states cost about as much as the rest of the analysis of a mailbox put
//! together. One pattern's DFA stays small and is built once, and the first rule that holds
//! stops the search. A shared literal scan (the `prefilter` module) skips the patterns that cannot
//! match, so that a diagnostic is not walked once per rule either.

mod prefilter;

use std::sync::LazyLock;

use sha2::Digest;

use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use super::phase::{self, Phase};
use super::status;
use super::verdict::{Label, Reason};
use prefilter::Prefilter;

/// The rule table shipped in the binary.
pub const BUILTIN_RULES: &str = include_str!("rules/rules.toml");

static BUILTIN: LazyLock<RuleSet> =
    LazyLock::new(|| RuleSet::from_toml(BUILTIN_RULES).expect("built-in rules.toml is valid"));

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    id: String,
    #[serde(default)]
    status: Vec<String>,
    #[serde(default)]
    reply: Vec<u16>,
    class: Option<String>,
    /// One pattern, or `patterns`: alternatives, one per line, tried in order.
    pattern: Option<String>,
    #[serde(default)]
    patterns: Vec<String>,
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    #[serde(default)]
    rule: Vec<RuleSpec>,
}

#[derive(Debug)]
struct Rule {
    id: String,
    status: Vec<String>,
    reply: Vec<u16>,
    class: Option<char>,
    /// The rule's alternatives: index into [`RuleSet::patterns`] and the text as written (a
    /// decision names the alternative that matched when there are several).
    patterns: Vec<(usize, String)>,
    reason: Reason,
}

/// The evidence a rule looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Evidence<'a> {
    pub status: Option<&'a str>,
    pub reply_code: Option<u16>,
    pub diagnostic: Option<&'a str>,
    /// The failure class when neither status nor reply code gives one (from the DSN action:
    /// failed → '5', delayed → '4').
    pub default_class: Option<char>,
    /// The SMTP phase of the failure, when the report states it: see [`phase::refine`].
    pub phase: Option<Phase>,
}

/// What the rules decided for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub reason: Reason,
    pub label: Label,
    pub rule: String,
}

/// An ordered, compiled rule table: a value, built from the config (local rules before the
/// built-in ones) and handed to everything that classifies. Its [`RuleSet::fingerprint`]
/// names the exact table, so that the ledger knows which verdicts an older table decided.
///
/// It is the analysis's settings as a whole: besides the rules, the one other thing the config
/// changes in what the analysis returns, the returned original's campaign header to capture
/// ([`RuleSet::with_campaign_header`]), which the fingerprint covers too (`reclassify` then
/// re-derives the campaigns of stored messages).
#[derive(Debug)]
pub struct RuleSet {
    /// sha256 of the tables' texts, in order (hex), and of the campaign header if one is set.
    fingerprint: String,
    /// The header of the returned original whose value is its campaign.
    campaign_header: Option<String>,
    rules: Vec<Rule>,
    /// Indexed by [`Rule::pattern`].
    patterns: Vec<Regex>,
    /// Tells, in one scan of a diagnostic, which patterns cannot match it.
    prefilter: Prefilter,
}

impl RuleSet {
    /// The built-in table.
    pub fn builtin() -> &'static RuleSet {
        &BUILTIN
    }

    /// The built-in table behind a user's local rules (the text of a `[rules] file`).
    pub fn with_local(local: &str) -> Result<RuleSet, String> {
        Self::from_tomls(&[local, BUILTIN_RULES])
    }

    /// What identifies this table: the same text gives the same fingerprint, any change to
    /// the built-in table or to the local rules another one.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The same table, also capturing the value of the returned original's `name` header
    /// (`X-Campaign-ID`) as its campaign. A different header is a different fingerprint.
    pub fn with_campaign_header(mut self, name: &str) -> RuleSet {
        let mut hasher = sha2::Sha256::new();
        hasher.update(self.fingerprint.as_bytes());
        hasher.update(b"\ncampaign_header=");
        hasher.update(name.to_ascii_lowercase().as_bytes());
        self.fingerprint = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.campaign_header = Some(name.to_string());
        self
    }

    /// The header of the returned original read as its campaign, if any.
    pub fn campaign_header(&self) -> Option<&str> {
        self.campaign_header.as_deref()
    }

    /// Compiles a TOML rule table (see `rules/rules.toml` for the format).
    pub fn from_toml(text: &str) -> Result<RuleSet, String> {
        Self::from_tomls(&[text])
    }

    /// Compiles several tables into one, in order: user rules go before the built-in ones.
    pub fn from_tomls(texts: &[&str]) -> Result<RuleSet, String> {
        let mut rules = Vec::new();
        let mut sources = Vec::new();
        let mut patterns = Vec::new();
        for text in texts {
            let table: Table = toml::from_str(text).map_err(|e| format!("rule table: {e}"))?;
            for spec in table.rule {
                let reason = Reason::parse(&spec.reason)
                    .ok_or_else(|| format!("rule {}: unknown reason {:?}", spec.id, spec.reason))?;
                let class = match spec.class.as_deref() {
                    None => None,
                    Some(c @ ("2" | "4" | "5")) => c.chars().next(),
                    Some(other) => {
                        return Err(format!(
                            "rule {}: class must be 4 or 5, not {other:?}",
                            spec.id
                        ));
                    }
                };
                if spec.pattern.is_some() && !spec.patterns.is_empty() {
                    return Err(format!(
                        "rule {}: give either pattern or patterns, not both",
                        spec.id
                    ));
                }
                let mut alternatives = Vec::new();
                for p in spec.pattern.into_iter().chain(spec.patterns) {
                    let source = lowercase_pattern(&ascii_classes(&p));
                    patterns.push(compile(&source).map_err(|e| format!("rule {}: {e}", spec.id))?);
                    sources.push(source);
                    alternatives.push((patterns.len() - 1, p));
                }
                rules.push(Rule {
                    id: spec.id,
                    status: spec.status,
                    reply: spec.reply,
                    class,
                    patterns: alternatives,
                    reason,
                });
            }
        }
        let prefilter = Prefilter::new(&sources)?;
        let mut hasher = sha2::Sha256::new();
        for text in texts {
            hasher.update((text.len() as u64).to_le_bytes());
            hasher.update(text.as_bytes());
        }
        let fingerprint = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        Ok(RuleSet {
            fingerprint,
            campaign_header: None,
            rules,
            patterns,
            prefilter,
        })
    }

    /// Classifies one recipient's evidence. Always decides: when no rule holds, the reason is
    /// `undetermined` and the label follows the status class.
    pub fn classify(&self, ev: &Evidence<'_>) -> Decision {
        let class = status::class_of(ev.status, ev.reply_code).or(ev.default_class);
        let lowered = ev.diagnostic.map(str::to_lowercase);
        // Which patterns may match, computed when the first rule with a pattern is reached.
        let mut candidates: Option<Vec<bool>> = None;
        let mut pattern_matches = |i: usize| {
            let Some(d) = lowered.as_deref() else {
                return false;
            };
            candidates.get_or_insert_with(|| self.prefilter.candidates(d))[i]
                && self.patterns[i].is_match(d)
        };
        for rule in &self.rules {
            if !rule.status.is_empty()
                && !ev
                    .status
                    .is_some_and(|s| rule.status.iter().any(|p| status_matches(p, s)))
            {
                continue;
            }
            if !rule.reply.is_empty() && !ev.reply_code.is_some_and(|c| rule.reply.contains(&c)) {
                continue;
            }
            if rule.class.is_some() && rule.class != class {
                continue;
            }
            let id = if rule.patterns.is_empty() {
                rule.id.clone()
            } else {
                match rule.patterns.iter().find(|(i, _)| pattern_matches(*i)) {
                    None => continue,
                    Some(_) if rule.patterns.len() == 1 => rule.id.clone(),
                    Some((_, text)) => format!("{}: {text}", rule.id),
                }
            };
            return decision(rule.reason, id, class, ev);
        }
        let id = match class {
            Some(c) => format!("class={c}xx"),
            None => "default".to_string(),
        };
        decision(Reason::Undetermined, id, class, ev)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// The decision for the reason a rule gave, after what the SMTP phase changes (a refusal
/// before `RCPT TO` is of the sender, whatever the words said of the address).
fn decision(reason: Reason, rule: String, class: Option<char>, ev: &Evidence<'_>) -> Decision {
    let refined = ev
        .phase
        .and_then(|p| phase::refine(p, reason, class, ev.reply_code));
    let (reason, rule) = match refined {
        Some((r, id)) => (r, format!("{id} ({rule})")),
        None => (reason, rule),
    };
    Decision {
        reason,
        label: reason.label_for(class),
        rule,
    }
}

/// Compiles one rule pattern, already lowercased (see [`lowercase_pattern`]).
///
/// Case-insensitive by lowering both sides: Unicode case folding would turn every letter of
/// every pattern into a class with its non-ASCII look-alikes (K and the Kelvin sign, s and the
/// long s), which multiplies the automaton's states and hides the literals the engine could
/// search for.
fn compile(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .case_insensitive(false)
        .size_limit(64 << 20)
        .dfa_size_limit(64 << 20)
        .build()
        .map_err(|e| format!("rule pattern: {e}"))
}

/// Makes `\b` and `\w` ASCII-only. Unicode word boundaries cannot run in the lazy DFA, and a
/// set containing one falls back to the much slower PikeVM for every diagnostic; SMTP
/// diagnostics are ASCII where these classes matter, and non-ASCII words are spelled out.
pub fn ascii_classes(pattern: &str) -> String {
    pattern
        .replace(r"\b", r"(?-u:\b)")
        .replace(r"\w", r"[0-9A-Za-z_]")
}

/// Lowercases a pattern's literals, leaving escapes (`\S`, `\W`, `\B`...) as they are, so
/// that it matches lowercased text as the original would match any case.
fn lowercase_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            c
        } else {
            c.to_lowercase().next().unwrap_or(c)
        });
        if c == '\\'
            && let Some(next) = chars.next()
        {
            out.push(next);
        }
    }
    out
}

/// `5.1.1` matches `5.1.1`; `5.7.*` matches any `5.7.x`; `*.1.1` matches `4.1.1` and `5.1.1`.
fn status_matches(pattern: &str, status: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = status.split('.');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some("*"), Some(_)) => {
                if p.clone().next().is_none() {
                    return true;
                }
            }
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decision's rule id without the alternative that matched (`keyword=x: pattern`).
    fn id(rule: &str) -> &str {
        rule.split(": ").next().unwrap_or(rule)
    }

    #[test]
    fn a_decision_names_the_alternative_that_matched() {
        let d = decide(
            Some("5.7.1"),
            Some(554),
            "554 5.7.1 Client host blocked using zen.spamhaus.org",
        );
        assert_eq!(d.rule, "keyword=blocklist: spamhaus");
        let one = "[[rule]]\nid = \"local=one\"\npattern = \"acme\"\nreason = \"policy\"\n";
        let set = RuleSet::from_toml(one).unwrap();
        let d = set.classify(&Evidence {
            diagnostic: Some("acme"),
            ..Default::default()
        });
        assert_eq!(d.rule, "local=one", "a single pattern is not repeated");
        let both =
            "[[rule]]\nid = \"x\"\npattern = \"a\"\npatterns = [\"b\"]\nreason = \"policy\"\n";
        assert!(RuleSet::from_toml(both).is_err());
    }

    fn decide(status: Option<&str>, code: Option<u16>, diag: &str) -> Decision {
        RuleSet::builtin().classify(&Evidence {
            status,
            reply_code: code,
            diagnostic: Some(diag),
            default_class: Some('5'),
            phase: None,
        })
    }

    #[test]
    fn builtin_table_compiles_and_orders() {
        assert!(RuleSet::builtin().len() > 40);
        let d = decide(
            Some("5.1.1"),
            Some(550),
            "550 5.1.1 <a@example.org>: Recipient address rejected: User unknown",
        );
        assert_eq!((d.reason, d.label), (Reason::UserUnknown, Label::Hard));
        let d = decide(
            Some("5.7.1"),
            Some(550),
            "550 5.7.1 Message rejected for policy reasons",
        );
        assert_eq!((d.label, id(&d.rule)), (Label::Blocked, "keyword=policy"));
        let d = decide(Some("4.2.2"), Some(450), "450 4.2.2 Mailbox full");
        assert_eq!((d.reason, d.label), (Reason::MailboxFull, Label::Soft));
        let d = decide(
            Some("5.7.13"),
            Some(550),
            "550 5.7.13 user account disabled",
        );
        assert_eq!((d.reason, d.label), (Reason::MailboxDisabled, Label::Hard));
        let d = decide(Some("5.0.0"), Some(550), "550 5.0.0 rejected");
        assert_eq!((d.reason, d.label), (Reason::Undetermined, Label::Hard));
    }

    #[test]
    fn a_refused_message_is_blocked_unless_the_address_is_named_as_the_cause() {
        let rule = |status, code, diag| id(&decide(status, code, diag).rule).to_string();
        assert_eq!(
            rule(
                Some("5.2.0"),
                Some(550),
                "550 5.2.0 Mail rejete. Mail rejected. ofr_506"
            ),
            "keyword=message rejected"
        );
        assert_eq!(
            rule(
                Some("5.1.1"),
                Some(550),
                "550 5.1.1 Message rejected: user unknown"
            ),
            "keyword=user unknown",
            "address-level words come first"
        );
        assert_eq!(
            decide(
                Some("4.2.0"),
                Some(450),
                "450 4.2.0 Mail rejected, try later"
            )
            .label,
            Label::Soft,
            "only a permanent refusal"
        );
        assert_eq!(
            decide(
                Some("5.0.0"),
                Some(550),
                "550 5.0.0 Temporary gateway failure, message refused"
            )
            .reason,
            Reason::Undetermined,
            "a refusal that blames a failure is no verdict on the sender"
        );
        assert_eq!(
            rule(
                None,
                None,
                "Routing: Could not find a gateway for a@example.org"
            ),
            "keyword=network error"
        );
    }

    #[test]
    fn refusals_of_the_sender_and_hedges_in_the_text() {
        let rule = |status, code, diag| id(&decide(status, code, diag).rule).to_string();
        assert_eq!(
            rule(
                None,
                Some(421),
                "host mx.example.org refused to talk to me: 421 too many connections"
            ),
            "keyword=rate limited",
            "why the greeting was refused beats the refusal"
        );
        assert_eq!(
            rule(
                None,
                Some(554),
                "554 mx.example.org ESMTP not accepting connections"
            ),
            "keyword=greeting refused"
        );
        assert_eq!(
            rule(Some("5.0.0"), None, "Domain does not exist"),
            "keyword=domain does not exist"
        );
        assert_eq!(
            rule(
                None,
                None,
                "You are not a member of this mailing list <l@example.org>."
            ),
            "keyword=sender rejected"
        );
        assert_eq!(
            rule(
                Some("5.7.1"),
                None,
                "le groupe n'existe pas ou vous ne soyez pas autorisé à lui envoyer des messages"
            ),
            "keyword=sender rejected"
        );
        assert_eq!(
            rule(
                None,
                Some(550),
                "550 domain [example.com] mismatches client ip 192.0.2.1."
            ),
            "keyword=reverse dns"
        );
        assert_eq!(
            rule(None, Some(550), "550 Protocol violation"),
            "keyword=policy"
        );
    }

    #[test]
    fn status_patterns() {
        assert!(status_matches("5.7.*", "5.7.26"));
        assert!(status_matches("*.1.1", "4.1.1"));
        assert!(!status_matches("*.1.1", "5.1.10"));
        assert!(status_matches("*.3.*", "5.3.0"));
    }

    #[test]
    fn user_rules_go_first_and_bad_tables_fail() {
        let user = "[[rule]]\nid = \"local=full\"\npattern = \"acme overflow\"\nreason = \"mailbox_full\"\n";
        let set = RuleSet::from_tomls(&[user, BUILTIN_RULES]).unwrap();
        let d = set.classify(&Evidence {
            diagnostic: Some("550 acme overflow user unknown"),
            ..Default::default()
        });
        assert_eq!(d.rule, "local=full");
        assert!(RuleSet::from_toml("[[rule]]\nid = \"x\"\nreason = \"nonsense\"\n").is_err());
        assert!(
            RuleSet::from_toml("[[rule]]\nid = \"x\"\npattern = \"(\"\nreason = \"policy\"\n")
                .is_err()
        );
    }
}
