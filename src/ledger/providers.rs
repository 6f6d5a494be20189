//! Mailbox providers: which recipient domains one operator runs (Gmail and Google Workspace's
//! consumer domains, Microsoft's Outlook/Hotmail/Live, Yahoo and AOL...), so that rates and
//! pauses can be per provider as well as per domain. One reputation, one infrastructure: 30
//! blocks spread over hotmail.fr, outlook.com and live.co.uk are one provider refusing the
//! sender.
//!
//! The map is built in ([`Providers::builtin`]) and changed in the config's `[providers]`
//! table: `name = ["domain", "name.*"]` adds a provider or replaces the built-in one of that
//! name, `name = []` removes it. A pattern is a domain (`gmail.com`) or a first label followed
//! by any public-suffix-like tail (`hotmail.*`: `hotmail.com`, `hotmail.fr`, `hotmail.co.uk`,
//! `hotmail.com.br`; a tail is one label, or two whose first has at most three letters, so
//! that `live.*` never takes `live.example.org`). Domains only: no MX lookups.
//!
//! The same map says which domains are "well-known providers" for the policy's quarantine of
//! an unexplicit first hard bounce (`Policy::is_provider`).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// The built-in providers, by name.
const BUILTIN: &[(&str, &[&str])] = &[
    ("google", &["gmail.com", "googlemail.com"]),
    (
        "microsoft",
        &["outlook.*", "hotmail.*", "live.*", "msn.com"],
    ),
    (
        "yahoo",
        &["yahoo.*", "ymail.com", "rocketmail.com", "aol.*", "aim.com"],
    ),
    ("apple", &["icloud.com", "me.com", "mac.com"]),
    ("gmx", &["gmx.*", "web.de"]),
    ("mailru", &["mail.ru", "inbox.ru", "list.ru", "bk.ru"]),
    ("yandex", &["yandex.*", "ya.ru"]),
    ("uol", &["uol.com.br", "bol.com.br"]),
    ("terra", &["terra.com.br"]),
    ("ig", &["ig.com.br"]),
];

/// The domain → provider map. Serialized as the table it is built from (name → patterns), which
/// is what the policy's fingerprint needs: a change of the map replays the projection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    from = "BTreeMap<String, Vec<String>>",
    into = "BTreeMap<String, Vec<String>>"
)]
pub struct Providers {
    table: BTreeMap<String, Vec<String>>,
    /// Exact domains.
    exact: HashMap<String, String>,
    /// `label.*` patterns: first label → provider.
    wildcard: HashMap<String, String>,
}

impl Default for Providers {
    fn default() -> Providers {
        Providers::builtin()
    }
}

impl From<BTreeMap<String, Vec<String>>> for Providers {
    fn from(table: BTreeMap<String, Vec<String>>) -> Providers {
        // Only maps this module built (and so checked) are serialized.
        Providers::from_table(table).unwrap_or_else(|_| Providers::builtin())
    }
}

impl From<Providers> for BTreeMap<String, Vec<String>> {
    fn from(p: Providers) -> Self {
        p.table
    }
}

impl Providers {
    /// The built-in map.
    pub fn builtin() -> Providers {
        let table = BUILTIN
            .iter()
            .map(|(name, patterns)| {
                (
                    name.to_string(),
                    patterns.iter().map(|p| p.to_string()).collect(),
                )
            })
            .collect();
        Providers::from_table(table).expect("the built-in providers are valid")
    }

    /// The built-in map changed by a `[providers]` table: each name given replaces (or adds)
    /// that provider's patterns; an empty list removes it.
    pub fn with_overrides(overrides: &BTreeMap<String, Vec<String>>) -> Result<Providers, String> {
        let mut table = Providers::builtin().table;
        for (name, patterns) in overrides {
            if patterns.is_empty() {
                table.remove(name);
            } else {
                table.insert(name.clone(), patterns.clone());
            }
        }
        Providers::from_table(table)
    }

    fn from_table(table: BTreeMap<String, Vec<String>>) -> Result<Providers, String> {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut table_out = BTreeMap::new();
        for (name, patterns) in table {
            let name = name.trim().to_ascii_lowercase();
            if name.is_empty() {
                return Err("[providers]: a provider needs a name".into());
            }
            let mut kept = Vec::new();
            for p in patterns {
                let p = p.trim().trim_end_matches('.').to_ascii_lowercase();
                let (map, key, shape_ok) = match p.strip_suffix(".*") {
                    Some(label) => (&mut wildcard, label.to_string(), !label.contains('.')),
                    None => (&mut exact, p.clone(), p.contains('.')),
                };
                let clean = key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
                if key.is_empty() || !clean || !shape_ok {
                    return Err(format!(
                        "[providers] {name}: {p:?} is not a domain (\"example.com\") or a first label with any suffix (\"example.*\")"
                    ));
                }
                if let Some(other) = map.insert(key, name.clone())
                    && other != name
                {
                    return Err(format!(
                        "[providers]: {p:?} is in both {other} and {name}; a domain belongs to one provider (give the built-in one an empty list, `{other} = []`, or list it in one only)"
                    ));
                }
                kept.push(p);
            }
            table_out.insert(name, kept);
        }
        Ok(Providers {
            table: table_out,
            exact,
            wildcard,
        })
    }

    /// The provider a (lowercase) recipient domain belongs to.
    pub fn provider_of(&self, domain: &str) -> Option<&str> {
        let domain = domain.trim_end_matches('.');
        if let Some(p) = self.exact.get(domain) {
            return Some(p);
        }
        let (first, tail) = domain.split_once('.')?;
        let p = self.wildcard.get(first)?;
        public_suffix_like(tail).then_some(p.as_str())
    }

    /// The providers, by name, with their patterns.
    pub fn table(&self) -> &BTreeMap<String, Vec<String>> {
        &self.table
    }
}

/// `com`, `fr`, `co.uk`, `com.br`: one label, or two whose first is short (a second-level
/// registry label), never an organisation's own domain.
fn public_suffix_like(tail: &str) -> bool {
    let ok = |label: &str| !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric());
    match tail.split_once('.') {
        None => ok(tail),
        Some((second, top)) => ok(second) && second.len() <= 3 && ok(top) && !top.contains('.'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_domains_and_suffix_patterns() {
        let p = Providers::builtin();
        assert_eq!(p.provider_of("gmail.com"), Some("google"));
        assert_eq!(p.provider_of("googlemail.com"), Some("google"));
        for d in [
            "hotmail.com",
            "hotmail.co.uk",
            "hotmail.com.br",
            "live.fr",
            "outlook.com",
            "msn.com",
        ] {
            assert_eq!(p.provider_of(d), Some("microsoft"), "{d}");
        }
        assert_eq!(p.provider_of("yahoo.com.br"), Some("yahoo"));
        assert_eq!(p.provider_of("aol.com"), Some("yahoo"));
        assert_eq!(p.provider_of("icloud.com"), Some("apple"));
        assert_eq!(p.provider_of("bol.com.br"), Some("uol"));
        assert_eq!(p.provider_of("terra.com.br"), Some("terra"));
        assert_eq!(p.provider_of("ig.com.br"), Some("ig"));
        // An organisation's own domain under a provider-like first label is not the provider.
        assert_eq!(p.provider_of("live.example.org"), None);
        assert_eq!(p.provider_of("example.org"), None);
        assert_eq!(p.provider_of("mail.gmail.com"), None);
    }

    #[test]
    fn overrides_add_replace_and_remove() {
        let mut o = BTreeMap::new();
        o.insert(
            "example".to_string(),
            vec!["Example.com".to_string(), "example.net".to_string()],
        );
        o.insert("apple".to_string(), vec![]);
        o.insert("google".to_string(), vec!["gmail.com".to_string()]);
        let p = Providers::with_overrides(&o).unwrap();
        assert_eq!(p.provider_of("example.net"), Some("example"));
        assert_eq!(p.provider_of("example.com"), Some("example"));
        assert_eq!(p.provider_of("icloud.com"), None);
        assert_eq!(p.provider_of("googlemail.com"), None);
        assert_eq!(p.provider_of("gmail.com"), Some("google"));

        let mut clash = BTreeMap::new();
        clash.insert("mine".to_string(), vec!["gmail.com".to_string()]);
        let err = Providers::with_overrides(&clash).unwrap_err();
        assert!(err.contains("in both google and mine"), "{err}");
        let mut bad = BTreeMap::new();
        bad.insert("x".to_string(), vec!["*.example.com".to_string()]);
        assert!(Providers::with_overrides(&bad).is_err());
        // The serialized form is the table, and reads back as the same map.
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Providers>(&json).unwrap(), p);
    }
}
