//! The configuration file (TOML). Every section is optional; an empty file is a valid config.
//!
//! ```toml
//! [database]
//! path = "rebound.db"        # relative to this file; default: rebound.db beside it
//!
//! [retention]
//! raw_days = 90              # drop raw bytes after 90 days (facts and events stay)
//!
//! [hooks]
//! on_change = ["/usr/local/bin/sync-suppressions"]
//!
//! [policy]
//! soft_backoff = ["4h", "24h", "72h"]
//! soft_limit = 3
//! [policy.blocked]
//! threshold = 5
//! window = "1h"
//! pause = "24h"
//!
//! [verp]
//! return_paths = ["bounces@mail.example.com"]
//! key_env = "REBOUND_VERP_KEYS"
//! ```
//!
//! Everything is strict: a typo in a table name or a policy number is an error with the nearest
//! known name, not a silently ignored default; a key that looks like a secret is refused, and
//! errors name a line without quoting it (see [`keys`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;
use std::collections::BTreeMap;

use crate::analysis::rules::RuleSet;
use crate::analysis::{Settings, Verp, verp};
use crate::ledger::Policy;
use crate::ledger::percent::Percent;
use crate::ledger::providers::Providers;

pub mod keys;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub policy: Policy,
    /// IMAP mailboxes, one `[[mailbox]]` table each.
    pub mailbox: Vec<crate::imap::MailboxConfig>,
    /// `[rules]`: local classification rules, tried before the built-in table.
    pub rules: RulesConfig,
    /// `[providers]`: mailbox providers by name, each a list of domain patterns, over the
    /// built-in map (see [`Providers`]); merged into `policy.providers` when the file is read.
    pub providers: BTreeMap<String, Vec<String>>,
    /// `[report]`: what `rebound report` (and the ingest, for campaigns) reads.
    pub report: ReportConfig,
    /// `[alerts]`: the rates `rebound report --alert` fails on.
    pub alerts: AlertsConfig,
    /// `[hooks]`: commands run as addresses change state (see [`crate::hooks`]).
    pub hooks: crate::hooks::HooksConfig,
    /// `[retention]`: when the raw bytes of old messages are dropped.
    pub retention: crate::ledger::Retention,
    /// `[verp]`: the return paths bounces come back to, and the keys that sign them.
    pub verp: VerpConfig,
    /// Where the file was loaded from. Relative paths in it (`[database] path`, `[rules] file`,
    /// `ca_file`, `password_file`) are resolved against its directory.
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// The rule table: the `[rules] file` before the built-in rules (compiled once, at load).
    #[serde(skip)]
    rule_set: Option<Arc<RuleSet>>,
}

/// `[database]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// The ledger file. Relative paths are relative to the config file's directory.
    pub path: Option<PathBuf>,
}

/// `[rules]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// A TOML file of `[[rule]]` tables (the format of the built-in `rules.toml`), tried in
    /// order before the built-in rules. Relative to the config file's directory.
    pub file: Option<PathBuf>,
}

/// `[report]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportConfig {
    /// A header of the messages you send naming their campaign (`X-Campaign-ID`): its value in
    /// a bounce's returned original is stored with the bounce, for rates per campaign.
    pub campaign_header: Option<String>,
}

/// One alert: a rate that fails `rebound report --alert` once the group it is measured on
/// had at least `min_sends` sends in the period (a tiny sample says nothing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertRule {
    /// `"0%"` turns the alert off.
    pub rate: Percent,
    pub min_sends: u64,
}

/// `[alerts]`: the defaults are the guidance's. A table may set either key; the other keeps
/// its own default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "AlertsFile")]
pub struct AlertsConfig {
    /// Blocked bounces per provider (a provider refusing the sender).
    pub blocked: AlertRule,
    /// Hard and invalid bounces together, per sending domain and per campaign (a list gone
    /// stale, or fed bad data).
    pub hard_invalid: AlertRule,
    /// Complaints, per sending domain and per campaign.
    pub complaints: AlertRule,
}

impl Default for AlertsConfig {
    fn default() -> AlertsConfig {
        AlertsConfig {
            blocked: AlertRule {
                rate: Percent::whole(2),
                min_sends: 200,
            },
            hard_invalid: AlertRule {
                rate: Percent::whole(5),
                min_sends: 200,
            },
            complaints: AlertRule {
                rate: Percent::ppm(1_000),
                min_sends: 1_000,
            },
        }
    }
}

/// `[alerts]` as written: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AlertsFile {
    blocked: AlertWritten,
    hard_invalid: AlertWritten,
    complaints: AlertWritten,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AlertWritten {
    rate: Option<Percent>,
    min_sends: Option<u64>,
}

impl AlertWritten {
    fn over(&self, default: AlertRule) -> AlertRule {
        AlertRule {
            rate: self.rate.unwrap_or(default.rate),
            min_sends: self.min_sends.unwrap_or(default.min_sends),
        }
    }
}

impl From<AlertsFile> for AlertsConfig {
    fn from(f: AlertsFile) -> AlertsConfig {
        let d = AlertsConfig::default();
        AlertsConfig {
            blocked: f.blocked.over(d.blocked),
            hard_invalid: f.hard_invalid.over(d.hard_invalid),
            complaints: f.complaints.over(d.complaints),
        }
    }
}

/// `[verp]`: VERP return paths (`bounces+carl=example.org@mail.example.com`) and their
/// signing keys. Keys are never written here: `key_env` names an environment variable and
/// `key_file` a file that hold them, read when a command analyses or encodes
/// ([`Config::settings`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerpConfig {
    /// The return-path addresses whose local part VERP extends. Empty: no VERP decoding.
    pub return_paths: Vec<String>,
    /// The delimiter before the recipient (and before the tag), and the one before the
    /// recipient's domain. Default `+=`.
    pub delimiters: Option<String>,
    /// An environment variable holding the keys (separated by spaces or commas; the first
    /// signs, all verify).
    pub key_env: Option<String>,
    /// A file holding the keys, one per line (`#` comments). Relative to the config file.
    pub key_file: Option<PathBuf>,
    /// Count a bounce without a valid tag only when its DSN names the address.
    pub require_signature: bool,
}

impl VerpConfig {
    /// Checks everything but the keys themselves (read later, by the commands that use them).
    fn check(&self) -> Result<(), String> {
        let keyed = self.key_env.is_some() || self.key_file.is_some();
        if self.return_paths.is_empty() {
            if keyed || self.require_signature || self.delimiters.is_some() {
                return Err("[verp]: list the return paths your mail is sent from, e.g. return_paths = [\"bounces@mail.example.com\"]".into());
            }
            return Ok(());
        }
        if self.key_env.is_some() && self.key_file.is_some() {
            return Err("[verp]: give key_env or key_file, not both".into());
        }
        if self.require_signature && !keyed {
            return Err(
                "[verp]: require_signature = true needs a key: set key_env or key_file".into(),
            );
        }
        Verp::new(&self.return_paths, self.delimiters(), Vec::new(), false)
            .map(drop)
            .map_err(|e| format!("[verp] {e}"))
    }

    fn delimiters(&self) -> &str {
        self.delimiters
            .as_deref()
            .unwrap_or(verp::DEFAULT_DELIMITERS)
    }

    /// The keys, read from `key_env` or `key_file` (none configured: no keys). Errors say
    /// where the keys were looked for and never show one.
    pub fn keys(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        if let Some(var) = &self.key_env {
            let text = std::env::var(var).map_err(|_| {
                anyhow::anyhow!(
                    "[verp] key_env names the environment variable {var}, which is not set: set it in rebound's environment (for systemd, Environment= or EnvironmentFile= in the unit)"
                )
            })?;
            return verp::parse_keys(&text)
                .map_err(|e| anyhow::anyhow!("[verp] key_env {var}: {e}"));
        }
        if let Some(path) = &self.key_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("[verp] key_file: reading {}", path.display()))?;
            if let Some(why) = crate::imap::auth::password_file_exposure(path) {
                tracing::warn!(
                    "[verp] key_file {}",
                    why.trim_start_matches("password_file ")
                );
            }
            return verp::parse_keys(&text)
                .map_err(|e| anyhow::anyhow!("[verp] key_file {}: {e}", path.display()));
        }
        Ok(Vec::new())
    }
}

/// The built-in rule table, shared (compiled once per process).
pub fn builtin_rules() -> Arc<RuleSet> {
    static BUILTIN: std::sync::OnceLock<Arc<RuleSet>> = std::sync::OnceLock::new();
    BUILTIN
        .get_or_init(|| {
            Arc::new(RuleSet::from_toml(crate::analysis::rules::BUILTIN_RULES).expect("valid"))
        })
        .clone()
}

/// The ledger's file name when nothing else says where it is.
pub const DEFAULT_DATABASE: &str = "rebound.db";

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        let mut config = Config::parse(&text)
            .map_err(|e| anyhow::anyhow!("in the config file {}, {e}", path.display()))?;
        config.source = Some(path.to_path_buf());
        // Every relative path in the file is relative to the file's directory, not to the
        // current directory (a service's is usually `/`).
        let dir = path.parent().unwrap_or(Path::new(""));
        for mailbox in &mut config.mailbox {
            mailbox.resolve_paths(dir);
        }
        config
            .hooks
            .validate()
            .map_err(|e| anyhow::anyhow!("in the config file {}, {e}", path.display()))?;
        config.hooks.resolve_paths(dir);
        if let Some(file) = config.verp.key_file.as_mut().filter(|f| f.is_relative()) {
            *file = dir.join(&*file);
        }
        if let Some(file) = &config.rules.file {
            let file = if file.is_relative() {
                dir.join(file)
            } else {
                file.clone()
            };
            let rules = std::fs::read_to_string(&file)
                .with_context(|| format!("reading the rules file {}", file.display()))?;
            let mut set = RuleSet::with_local(&rules)
                .map_err(|e| anyhow::anyhow!("in the rules file {}: {e}", file.display()))?;
            if let Some(h) = &config.report.campaign_header {
                set = set.with_campaign_header(h);
            }
            config.rule_set = Some(Arc::new(set));
        }
        Ok(config)
    }

    /// The rule table to classify with: the local rules of `[rules] file` before the
    /// built-in ones, or the built-in table alone.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rule_set.clone().unwrap_or_else(builtin_rules)
    }

    /// What the analysis is given: the rule table, and the `[verp]` settings with their keys
    /// (read now from `key_env` or `key_file`). The commands that analyse or encode call it;
    /// the others never need the keys.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let settings = Settings::new(self.rules());
        let v = &self.verp;
        if v.return_paths.is_empty() {
            return Ok(settings);
        }
        let verp = Verp::new(
            &v.return_paths,
            v.delimiters(),
            v.keys()?,
            v.require_signature,
        )
        .map_err(|e| anyhow::anyhow!("[verp] {e}"))?;
        Ok(settings.with_verp(verp))
    }

    /// Parses the text of a config file: screened first ([`keys::screen`]), then read by serde.
    /// Errors start with the line they are about and never quote it.
    pub fn parse(text: &str) -> Result<Config, String> {
        keys::screen(text)?;
        let mut config: Config = toml::from_str(text).map_err(|e| keys::describe(&e, text))?;
        config.verp.check()?;
        config.policy.providers = Providers::with_overrides(&config.providers)?;
        if let Some(h) = &config.report.campaign_header {
            let name = h.trim();
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                return Err(format!(
                    "[report] campaign_header {h:?} is not a header name (letters, digits and dashes, e.g. \"X-Campaign-ID\")"
                ));
            }
            let set = RuleSet::from_toml(crate::analysis::rules::BUILTIN_RULES)?
                .with_campaign_header(name);
            config.report.campaign_header = Some(name.to_string());
            config.rule_set = Some(Arc::new(set));
        }
        Ok(config)
    }

    /// The config file if one is given, else the defaults.
    pub fn load_or_default(path: Option<&Path>) -> anyhow::Result<Config> {
        path.map(Config::load)
            .unwrap_or_else(|| Ok(Config::default()))
    }

    /// The ledger file: `override_path` (from `--db`) if given, else `[database] path`
    /// resolved against the config file's directory, else `rebound.db` beside the config file
    /// (or in the current directory when there is no config file).
    pub fn database_path(&self, override_path: Option<&Path>) -> PathBuf {
        if let Some(p) = override_path {
            return p.to_path_buf();
        }
        let dir = self
            .source
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        match &self.database.path {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => dir.join(p),
            None => dir.join(DEFAULT_DATABASE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::span::Span;

    #[test]
    fn loads_policy_resolves_database_and_tolerates_new_sections() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rebound.toml");
        std::fs::write(
            &file,
            "[policy]\nsoft_limit = 5\nsoft_backoff = [\"1h\", \"2d\"]\n[policy.blocked]\nthreshold = 2\n\n[[mailbox]]\nname = \"x\"\nhost = \"imap.example.com\"\nusername = \"u\"\nauth = { method = \"password_env\", var = \"P\" }\n",
        )
        .unwrap();
        let c = Config::load(&file).unwrap();
        assert_eq!(c.policy.soft_limit, 5);
        assert_eq!(c.policy.soft_backoff, vec![Span::hours(1), Span::days(2)]);
        assert_eq!(c.policy.blocked.threshold, 2);
        assert_eq!(
            c.policy.blocked.pause,
            Span::hours(24),
            "unset numbers keep their defaults"
        );
        assert_eq!(c.database_path(None), dir.path().join("rebound.db"));
        assert_eq!(
            c.database_path(Some(Path::new("/x/y.db"))),
            PathBuf::from("/x/y.db")
        );

        std::fs::write(&file, "[policy]\nsoft_limt = 5\n").unwrap();
        let err = format!("{:#}", Config::load(&file).unwrap_err());
        assert!(err.contains("soft_limt"), "{err}");
        std::fs::write(&file, "[database]\npath = \"data/l.db\"\n").unwrap();
        assert_eq!(
            Config::load(&file).unwrap().database_path(None),
            dir.path().join("data/l.db")
        );
    }

    /// A pause table that sets some keys keeps its own defaults for the others.
    #[test]
    fn a_partial_pause_table_keeps_its_own_defaults() {
        let c = Config::parse(
            "[policy.rate_limited]\nthreshold = 20\n\n[policy.blocked]\npause = \"12h\"\n",
        )
        .unwrap();
        let d = Policy::default();
        assert_eq!(c.policy.rate_limited.threshold, 20);
        assert_eq!(
            c.policy.rate_limited.pause, d.rate_limited.pause,
            "2 h, not 24 h"
        );
        assert_eq!(c.policy.rate_limited.max_pause, d.rate_limited.max_pause);
        assert_eq!(c.policy.blocked.threshold, d.blocked.threshold);
        assert_ne!(c.policy.blocked.pause, d.blocked.pause);
        let err = Config::parse("[policy.rate_limited]\nthreshhold = 20\n").unwrap_err();
        assert!(err.contains("threshhold"), "{err}");
    }

    #[test]
    fn providers_report_and_alerts() {
        let c = Config::parse(
            "[providers]\nexample = [\"example.com\"]\napple = []\n\n[report]\ncampaign_header = \"X-Campaign-ID\"\n\n[alerts.complaints]\nrate = \"0.3%\"\n[alerts]\nblocked = { min_sends = 50 }\n",
        )
        .unwrap();
        assert!(c.policy.is_provider("example.com"));
        assert!(!c.policy.is_provider("icloud.com"));
        assert!(c.policy.is_provider("gmail.com"));
        assert_eq!(c.rules().campaign_header(), Some("X-Campaign-ID"));
        assert_ne!(c.rules().fingerprint(), builtin_rules().fingerprint());
        assert_eq!(c.alerts.complaints.rate, Percent::ppm(3_000));
        assert_eq!(c.alerts.complaints.min_sends, 1_000, "its own default kept");
        assert_eq!(c.alerts.blocked.min_sends, 50);
        assert_eq!(c.alerts.blocked.rate, Percent::whole(2));
        // Without them: the built-in map, no campaign, the guidance's alerts.
        let d = Config::parse("").unwrap();
        assert!(d.policy.is_provider("hotmail.co.uk"));
        assert_eq!(d.rules().campaign_header(), None);
        assert_eq!(d.alerts, AlertsConfig::default());

        let err = Config::parse("[policy]\nproviders = [\"gmail.com\"]\n").unwrap_err();
        assert!(err.contains("[providers]"), "{err}");
        let err = Config::parse("[report]\ncampaign_header = \"X Campaign\"\n").unwrap_err();
        assert!(err.contains("not a header name"), "{err}");
        let err = Config::parse("[providers]\nmine = [\"gmail.com\"]\n").unwrap_err();
        assert!(err.contains("in both google and mine"), "{err}");
        let err = Config::parse("[policy.blocked]\nrate = \"2\"\n").unwrap_err();
        assert!(err.contains("percentage"), "{err}");
    }

    #[test]
    fn verp_is_checked_at_load_and_its_keys_read_only_when_asked() {
        let ok = Config::parse(
            "[verp]\nreturn_paths = [\"bounces@mail.example.com\"]\nkey_env = \"REBOUND_UNIT_TEST_UNSET_VAR\"\n",
        )
        .unwrap();
        // Loading never reads the key; asking for the settings does, and says where it looked.
        let err = format!("{:#}", ok.settings().unwrap_err());
        assert!(
            err.contains("REBOUND_UNIT_TEST_UNSET_VAR") && err.contains("not set"),
            "{err}"
        );
        assert!(
            Config::parse("")
                .unwrap()
                .settings()
                .unwrap()
                .verp()
                .is_none()
        );
        for (text, expected) in [
            ("key_env = \"K\"\n", "list the return paths"),
            (
                "return_paths = [\"b@example.com\"]\nkey_env = \"K\"\nkey_file = \"f\"\n",
                "not both",
            ),
            (
                "return_paths = [\"b@example.com\"]\nrequire_signature = true\n",
                "needs a key",
            ),
            (
                "return_paths = [\"b@example.com\"]\ndelimiters = \"+\"\n",
                "two characters",
            ),
            ("return_paths = [\"b\"]\n", "return_paths"),
            (
                "return_paths = [\"b@example.com\"]\nkeys_file = \"f\"\n",
                "key_file",
            ),
        ] {
            let err = Config::parse(&format!("[verp]\n{text}")).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    /// Every `[verp]` key config.example.toml documents (commented out) is one rebound reads.
    #[test]
    fn the_documented_verp_keys_load() {
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml"),
        )
        .unwrap();
        let table = example
            .split("\n[verp]\n")
            .nth(1)
            .and_then(|rest| rest.split("\n[").next())
            .expect("a [verp] table in config.example.toml");
        let keys: Vec<&str> = table
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.contains(" = ") && !l.starts_with("key_env"))
            .collect();
        assert_eq!(keys.len(), 4, "{keys:?}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rebound.toml");
        std::fs::write(&file, format!("[verp]\n{}\n", keys.join("\n"))).unwrap();
        let c = Config::load(&file).unwrap();
        assert_eq!(c.verp.return_paths.len(), 2);
        assert_eq!(
            c.verp.key_file.as_deref(),
            Some(Path::new("/etc/rebound/verp.keys"))
        );
    }
}
