//! What the config file may say, checked before serde reads it, and errors that point at a line
//! without quoting it.
//!
//! - **Secrets are never written in the config file.** The file is read by people and tools,
//!   copied into tickets and backups, and its parse errors go to the journal. A key that looks
//!   like a secret (`password`, `pass`, `secret`, `token`, `api_key`... in any spelling) is
//!   refused with a sentence saying where secrets go; its value is never repeated, not even in
//!   a syntax error elsewhere in the file (errors name a line and column, never quote it).
//! - **Unknown top-level tables and keys are errors**, with the nearest known name: a typo such
//!   as `[databse]` would otherwise silently write to the default ledger, `[polcy]` run the
//!   default policy, `[rule]` drop the local rules. Keys inside the tables are checked by serde
//!   (`deny_unknown_fields`); its messages get the same "did you mean" hint here.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The top-level tables rebound reads, and how each is written.
const TOP_LEVEL: &[(&str, &str)] = &[
    ("database", "[database]"),
    ("policy", "[policy]"),
    ("rules", "[rules]"),
    ("verp", "[verp]"),
    ("mailbox", "[[mailbox]]"),
    ("providers", "[providers]"),
    ("report", "[report]"),
    ("alerts", "[alerts]"),
    ("hooks", "[hooks]"),
    ("retention", "[retention]"),
];

/// Words that make a key look like it holds a secret, matched as parts of the key
/// (`imap_password`, `clientSecret`, `access-token`)...
const SECRET_PARTS: &[&str] = &[
    "pass",
    "passwd",
    "pwd",
    "pw",
    "secret",
    "secrets",
    "token",
    "tokens",
    "apikey",
    "credential",
    "credentials",
    // `[verp]` signing keys (`key_env` and `key_file` say where they are, and pass).
    "key",
    "keys",
];
/// ...or anywhere in it (`imappassword`).
const SECRET_INFIXES: &[&str] = &["password", "passwd", "passphrase", "secret", "token"];
/// A key ending in one of these names the place a secret comes from, not the secret itself
/// (`token_command`).
const POINTER_SUFFIXES: &[&str] = &["command", "cmd", "file", "path", "env", "var"];

/// Checks the text of a config file: secret-looking keys first (so that nothing else is
/// reported about such a file), then TOML syntax, then the top-level names. Errors name the
/// line; none quotes a value.
pub fn screen(text: &str) -> Result<(), String> {
    let (doc, syntax) = DeTable::parse_recoverable(text);
    let mut secrets = Vec::new();
    find_secrets(doc.get_ref(), "", &mut secrets);
    if let Some((key, span)) = secrets.first() {
        return Err(secret_refusal(key, line_of(text, span.start)));
    }
    if let Some(e) = syntax.first() {
        return Err(describe(e, text));
    }
    for (key, value) in doc.get_ref() {
        let name = key.get_ref().as_ref();
        let at = line_of(text, key.span().start);
        match TOP_LEVEL.iter().find(|(known, _)| *known == name) {
            Some(("mailbox", _)) if !matches!(value.get_ref(), DeValue::Array(_)) => {
                return Err(format!(
                    "line {at}: write each mailbox as a [[mailbox]] table (two brackets), one per mailbox"
                ));
            }
            Some(_) => {}
            None => {
                let written = written_as(name, value.get_ref());
                let known = TOP_LEVEL.iter().map(|(_, w)| *w).collect::<Vec<_>>();
                let hint = match suggest(name, TOP_LEVEL.iter().map(|(k, _)| *k)) {
                    Some(near) => {
                        let how = TOP_LEVEL.iter().find(|(k, _)| *k == near).unwrap().1;
                        format!("did you mean {how}?")
                    }
                    None => format!("rebound reads {}", known.join(", ")),
                };
                return Err(format!(
                    "line {at}: unknown {written}: {hint} (an unknown name would be ignored, and its settings silently replaced by defaults)"
                ));
            }
        }
    }
    Ok(())
}

/// A TOML or serde error as "line N, column C: message", with a "did you mean" for unknown
/// fields. The message never quotes the line (it might hold a secret meant for elsewhere).
pub fn describe(e: &toml::de::Error, text: &str) -> String {
    let mut message = e.message().trim().to_string();
    if message.starts_with("unknown field `providers`") {
        message = "`providers` is no longer a [policy] key: mailbox providers have their own \
                   table, [providers], one line per provider (google = [\"gmail.com\", \
                   \"googlemail.com\"]), over a built-in map (see config.example.toml)"
            .to_string();
    } else if let Some(hint) = unknown_field_hint(&message) {
        message.push_str(&format!("; did you mean `{hint}`?"));
    }
    match e.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

fn secret_refusal(key: &str, line: usize) -> String {
    if key.starts_with("verp.") {
        return format!(
            "line {line}: `{key}` looks like a secret, and secrets are never written in the config \
             file (it is copied, shared and quoted in logs). Remove that line and keep the VERP \
             keys where only rebound reads them: key_env = \"VARIABLE\" (an environment variable \
             holding them) or key_file = \"/etc/rebound/verp.keys\" (mode 0600, one key per \
             line); see config.example.toml"
        );
    }
    format!(
        "line {line}: `{key}` looks like a secret, and secrets are never written in the config \
         file (it is copied, shared and quoted in logs). Remove that line and keep the secret \
         where only rebound reads it: an environment variable (auth = {{ method = \"password_env\", \
         var = \"...\" }}), a file only rebound's user can read (auth = {{ method = \
         \"password_file\", path = \"...\" }}, mode 0600) or a command that prints it (auth = {{ \
         method = \"password_command\", command = \"...\" }}; for OAuth, method = \"xoauth2\" with \
         token_command); see config.example.toml"
    )
}

/// Every key, at any depth, that looks like a secret, with its dotted path and span.
fn find_secrets(table: &DeTable<'_>, prefix: &str, out: &mut Vec<(String, Range<usize>)>) {
    for (key, value) in table {
        let name = key.get_ref().as_ref();
        let path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        };
        if looks_secret(name) {
            out.push((path.clone(), key.span()));
        }
        find_secrets_in(value, &path, out);
    }
}

fn find_secrets_in(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    out: &mut Vec<(String, Range<usize>)>,
) {
    match value.get_ref() {
        DeValue::Table(t) => find_secrets(t, path, out),
        DeValue::Array(items) => {
            for item in items {
                find_secrets_in(item, path, out);
            }
        }
        _ => {}
    }
}

/// True for `password`, `imap_pass`, `clientSecret`, `access-token`, `apiKey`...; false for
/// `token_command` and other keys that say where a secret is.
pub fn looks_secret(key: &str) -> bool {
    let parts = words(key);
    if parts
        .last()
        .is_some_and(|last| POINTER_SUFFIXES.contains(&last.as_str()))
    {
        return false;
    }
    let joined = parts.concat();
    parts.iter().any(|p| SECRET_PARTS.contains(&p.as_str()))
        || SECRET_INFIXES.iter().any(|w| joined.contains(w))
        || joined.ends_with("apikey")
}

/// A key's words, lowercased: split at `_`, `-`, `.`, spaces and lower-to-upper case changes.
fn words(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut previous_lower = false;
    for c in key.chars() {
        if !c.is_alphanumeric() {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower && !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        word.extend(c.to_lowercase());
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// How a top-level entry was written, for the message: `[name]`, `[[name]]` or `name = ...`.
fn written_as(name: &str, value: &DeValue<'_>) -> String {
    match value {
        DeValue::Table(_) => format!("table [{name}]"),
        DeValue::Array(items)
            if !items.is_empty()
                && items
                    .iter()
                    .all(|i| matches!(i.get_ref(), DeValue::Table(_))) =>
        {
            format!("table [[{name}]]")
        }
        _ => format!("key `{name}`"),
    }
}

/// The known name nearest to `name`, when it is near enough to be a typo.
pub fn suggest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_lowercase();
    known
        .into_iter()
        .map(|k| (distance(&lower, k), k))
        .filter(|(d, k)| *d <= (k.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance with adjacent transpositions counted as one edit (`databse`).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// From serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a`"), the expected
/// name nearest to `x`.
fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, expected) = rest.split_once('`')?;
    let names: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    suggest(field, names).map(str::to_string)
}

fn line_of(text: &str, offset: usize) -> usize {
    line_column(text, offset).0
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_keys() {
        for key in [
            "password",
            "Password",
            "pass",
            "passwd",
            "imap_password",
            "imappassword",
            "clientSecret",
            "client_secret",
            "access-token",
            "token",
            "api_key",
            "apiKey",
            "pw",
            "passphrase",
            "credentials",
            "key",
            "signing_key",
            "hmacKeys",
        ] {
            assert!(looks_secret(key), "{key}");
        }
        for key in [
            "token_command",
            "password_file",
            "path",
            "var",
            "keyword",
            "passive",
            "bypass_dns",
            "compass",
            "host",
            "username",
            "max_message_bytes",
            "key_env",
            "key_file",
            "keyword",
            "keys_file",
        ] {
            assert!(!looks_secret(key), "{key}");
        }
    }

    #[test]
    fn a_secret_is_refused_without_its_value_even_in_a_broken_file() {
        for text in [
            "[[mailbox]]\nname = \"a\"\npassword = \"hunter2-value\"\n",
            "[[mailbox]]\nauth = { method = \"password_env\", token = \"hunter2-value\" }\n",
            // A syntax error further down: the secret is still what is reported.
            "[[mailbox]]\npass = \"hunter2-value\"\nport = = 3\n",
            "secret = \"hunter2-value\n",
        ] {
            let err = screen(text).unwrap_err();
            assert!(err.contains("looks like a secret"), "{err}");
            assert!(err.contains("password_env"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        let err = screen("[[mailbox]]\nname = \"a\"\n\npassword = \"x\"\n").unwrap_err();
        assert!(err.starts_with("line 4: `mailbox.password`"), "{err}");
        let err = screen("[verp]\nreturn_paths = [\"b@example.com\"]\nkey = \"hunter2-value\"\n")
            .unwrap_err();
        assert!(err.starts_with("line 3: `verp.key`"), "{err}");
        assert!(err.contains("key_env"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        screen("[verp]\nreturn_paths = [\"b@example.com\"]\nkey_env = \"K\"\n").unwrap();
        screen("[verp]\nreturn_paths = [\"b@example.com\"]\nkey_file = \"k\"\n").unwrap();
    }

    #[test]
    fn unknown_top_level_names_get_the_nearest_known_one() {
        let err = screen("[databse]\npath = \"x.db\"\n").unwrap_err();
        assert!(
            err.contains("unknown table [databse]: did you mean [database]?"),
            "{err}"
        );
        assert!(err.starts_with("line 1:"), "{err}");
        let err = screen("[polcy]\nsoft_limit = 2\n").unwrap_err();
        assert!(err.contains("did you mean [policy]?"), "{err}");
        let err = screen("[rule]\nfile = \"r.toml\"\n").unwrap_err();
        assert!(err.contains("did you mean [rules]?"), "{err}");
        let err = screen("[[mailboxes]]\nname = \"a\"\n").unwrap_err();
        assert!(err.contains("did you mean [[mailbox]]?"), "{err}");
        let err = screen("verbose = true\n").unwrap_err();
        assert!(
            err.contains("unknown key `verbose`: rebound reads [database]"),
            "{err}"
        );
        let err = screen("[mailbox]\nname = \"a\"\n").unwrap_err();
        assert!(err.contains("[[mailbox]] table (two brackets)"), "{err}");
        screen(
            "[database]\npath = \"a.db\"\n[policy]\n[rules]\n[verp]\n[[mailbox]]\nname = \"a\"\n",
        )
        .unwrap();
        let err = screen("[vrep]\nreturn_paths = []\n").unwrap_err();
        assert!(err.contains("did you mean [verp]?"), "{err}");
        screen("").unwrap();
    }

    #[test]
    fn nearest_names() {
        assert_eq!(
            suggest("soft_limt", ["soft_limit", "soft_backoff"]),
            Some("soft_limit")
        );
        assert_eq!(suggest("databse", ["database", "policy"]), Some("database"));
        assert_eq!(suggest("zzz", ["database", "policy"]), None);
        assert_eq!(
            unknown_field_hint(
                "unknown field `soft_limt`, expected one of `soft_backoff`, `soft_limit`"
            ),
            Some("soft_limit".into())
        );
    }

    #[test]
    fn syntax_errors_name_the_place_not_the_text() {
        let err = screen("[database]\npath = \"unterminated-value\n").unwrap_err();
        assert!(err.starts_with("line 2, column"), "{err}");
        assert!(!err.contains("unterminated-value"), "{err}");
    }
}
