//! The `[[mailbox]]` tables of the configuration file: where a return-path mailbox lives, how
//! to log in, which folders to read and what to do with a message once it is safely stored.
//!
//! Secrets are never part of this file: [`Auth`] only says *where* the password or token comes
//! from (an environment variable, a file, or a command such as `pass show ...`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::analysis::Kind;

/// One return-path mailbox.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MailboxConfig {
    /// Short unique name, used in the ledger, the logs, the lock file and `--mailbox`.
    pub name: String,
    pub host: String,
    /// Defaults to 993 for implicit TLS, 143 otherwise.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: Tls,
    /// Extra PEM CA file trusted beside the system roots (private servers).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    pub username: String,
    pub auth: Auth,
    /// Folders to read; `INBOX` when empty. Names as people read them (`Rückläufer`), encoded
    /// for the server only on the wire.
    #[serde(default = "default_folders")]
    pub folders: Vec<String>,
    #[serde(default)]
    pub action: Action,
    /// Keyword set on messages that stay in the folder (`keep`, `seen`, unrecognised mail).
    #[serde(default = "default_keyword")]
    pub keyword: String,
    /// Destination folders for `action = "move"`.
    #[serde(default)]
    pub move_to: MoveTo,
    /// Messages larger than this are recorded by their header only, as `unparsed`.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: u64,
    /// UIDs fetched per `UID FETCH` command (bounds memory and the work lost on a failure).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// ...and at most this many bytes of mail per batch (by the messages' `RFC822.SIZE`; a
    /// single larger message is a batch of its own), so that memory stays bounded whatever the
    /// mailbox holds.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: u64,
    /// Seconds any single IMAP call (or one message of a fetch) may take.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// `watch`: seconds between polls when the server has no IDLE, and the IDLE refresh period.
    #[serde(default = "default_poll_interval_secs")]
    pub poll_interval_secs: u64,
    /// Attempts per mailbox in one `poll` run before it is reported as failed.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
}

/// How the connection is secured.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    /// TLS from the first byte (port 993).
    #[default]
    Implicit,
    /// Plain connection upgraded with STARTTLS before login (port 143).
    Starttls,
    /// No encryption at all: refused unless the host is loopback.
    None,
}

/// Where the secret comes from. Exactly one method per mailbox.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// IMAP LOGIN with the password in an environment variable.
    PasswordEnv { var: String },
    /// IMAP LOGIN with the password in a file (first line; keep it mode 0600).
    PasswordFile { path: PathBuf },
    /// IMAP LOGIN with the password printed by a command (`sh -c`), e.g. `pass show imap`.
    PasswordCommand { command: String },
    /// AUTHENTICATE XOAUTH2 with an access token printed by a command, run before every login
    /// so the token is always fresh (Gmail, Microsoft 365).
    Xoauth2 { token_command: String },
}

/// What happens to a message after it is committed to the ledger.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Leave it, marked with the keyword (default).
    #[default]
    Keep,
    /// Mark it `\Seen` (and with the keyword).
    Seen,
    /// Move it to the folder for its kind (see [`MoveTo`]); folders are created when missing.
    Move,
    /// Expunge recognised reports; mail that is not recognised is kept with the keyword.
    Delete,
}

/// Destination folders per group of kinds for `action = "move"`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MoveTo {
    /// Bounces, delays and delivery reports.
    #[serde(default = "default_bounces")]
    pub bounces: String,
    #[serde(default = "default_auto_replies")]
    pub auto_replies: String,
    /// Complaints and unsubscribe requests.
    #[serde(default = "default_complaints")]
    pub complaints: String,
    /// Everything not recognised (other, unparsed).
    #[serde(default = "default_other")]
    pub other: String,
}

impl Default for MoveTo {
    fn default() -> Self {
        MoveTo {
            bounces: default_bounces(),
            auto_replies: default_auto_replies(),
            complaints: default_complaints(),
            other: default_other(),
        }
    }
}

impl MoveTo {
    /// The destination folder for a message of this kind.
    pub fn folder_for(&self, kind: Kind) -> &str {
        match kind {
            Kind::Bounce | Kind::Delay | Kind::DeliveryReport => &self.bounces,
            Kind::AutoReply | Kind::Challenge => &self.auto_replies,
            Kind::Complaint | Kind::Unsubscribe => &self.complaints,
            Kind::Other | Kind::Unparsed => &self.other,
        }
    }
}

fn default_folders() -> Vec<String> {
    vec!["INBOX".to_string()]
}
fn default_keyword() -> String {
    "$Rebound".to_string()
}
fn default_max_message_bytes() -> u64 {
    25 * 1024 * 1024
}
fn default_batch_size() -> usize {
    500
}
fn default_batch_bytes() -> u64 {
    16 * 1024 * 1024
}
fn default_timeout_secs() -> u64 {
    60
}
fn default_poll_interval_secs() -> u64 {
    300
}
fn default_attempts() -> u32 {
    3
}
fn default_bounces() -> String {
    "Processed/Bounces".to_string()
}
fn default_auto_replies() -> String {
    "Processed/AutoReplies".to_string()
}
fn default_complaints() -> String {
    "Processed/Complaints".to_string()
}
fn default_other() -> String {
    "Processed/Other".to_string()
}

impl MailboxConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            Tls::Implicit => 993,
            Tls::Starttls | Tls::None => 143,
        })
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_interval_secs.max(1))
    }

    pub fn folders(&self) -> Vec<String> {
        if self.folders.is_empty() {
            default_folders()
        } else {
            self.folders.clone()
        }
    }

    /// Makes the file paths of this table (`ca_file`, `password_file`) absolute against `base`,
    /// the config file's directory: a service's working directory (`/` under systemd) has
    /// nothing to do with where its config and secrets live.
    pub fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(ca) = &mut self.ca_file {
            resolve(ca);
        }
        if let Auth::PasswordFile { path } = &mut self.auth {
            resolve(path);
        }
    }

    /// Checks what serde cannot: refused combinations and values that would misbehave.
    pub fn validate(&self) -> anyhow::Result<()> {
        let name = &self.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            bail!("mailbox name {name:?}: use letters, digits, '-', '_' or '.' only");
        }
        if self.tls == Tls::None && !is_loopback(&self.host) {
            bail!(
                "mailbox {name}: tls = \"none\" is only allowed for a loopback host, not {:?}",
                self.host
            );
        }
        if self.batch_size == 0 {
            bail!("mailbox {name}: batch_size must be at least 1");
        }
        if self.keyword.is_empty()
            || self
                .keyword
                .contains(|c: char| c.is_whitespace() || "(){%*\"\\]".contains(c))
        {
            bail!(
                "mailbox {name}: keyword {:?} is not a valid IMAP keyword",
                self.keyword
            );
        }
        for folder in self.folders().iter().chain([
            &self.move_to.bounces,
            &self.move_to.auto_replies,
            &self.move_to.complaints,
            &self.move_to.other,
        ]) {
            if folder.is_empty() {
                bail!("mailbox {name}: a folder name is empty");
            }
            // Names are encoded for the server by rebound; one already encoded by hand would be
            // encoded twice and name another folder.
            if super::folder_name::looks_encoded(folder) {
                let human = super::folder_name::decode(folder).unwrap_or_default();
                bail!(
                    "mailbox {name}: folder {folder:?} is written in IMAP's modified UTF-7; write it as {human:?} (rebound encodes names itself)"
                );
            }
        }
        if let Some(ca) = &self.ca_file {
            std::fs::metadata(ca)
                .with_context(|| format!("mailbox {name}: ca_file {}", ca.display()))?;
        }
        Ok(())
    }
}

/// True for `localhost` and loopback addresses: the only hosts allowed without TLS.
pub fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Checks a list of mailboxes: each valid, names unique.
pub fn validate_all(mailboxes: &[MailboxConfig]) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for m in mailboxes {
        m.validate()?;
        if !seen.insert(&m.name) {
            bail!("mailbox name {:?} is used twice", m.name);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> MailboxConfig {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn defaults_are_safe() {
        let m = parse(
            "name='a'\nhost='imap.example.com'\nusername='u'\nauth={method='password_env', var='P'}\n",
        );
        assert_eq!(m.tls, Tls::Implicit);
        assert_eq!(m.port(), 993);
        assert_eq!(m.action, Action::Keep);
        assert_eq!(m.folders(), vec!["INBOX"]);
        assert_eq!(m.max_message_bytes, 25 * 1024 * 1024);
        m.validate().unwrap();
    }

    #[test]
    fn plaintext_only_on_loopback() {
        let base =
            "name='a'\nusername='u'\nauth={method='xoauth2', token_command='echo t'}\ntls='none'\n";
        assert!(
            parse(&format!("{base}host='imap.example.com'"))
                .validate()
                .is_err()
        );
        for host in ["127.0.0.1", "localhost", "::1", "[::1]"] {
            parse(&format!("{base}host='{host}'")).validate().unwrap();
        }
    }

    #[test]
    fn unknown_keys_and_auth_methods_are_errors() {
        assert!(
            toml::from_str::<MailboxConfig>(
                "name='a'\nhost='h'\nusername='u'\nauth={method='password', password='x'}"
            )
            .is_err()
        );
        assert!(toml::from_str::<MailboxConfig>("name='a'\nhost='h'\nusername='u'\npassword='x'\nauth={method='password_env', var='P'}").is_err());
    }

    #[test]
    fn relative_paths_are_resolved_against_the_config_directory() {
        let mut m = parse(
            "name='a'\nhost='h'\nusername='u'\nca_file='certs/ca.pem'\nauth={method='password_file', path='a.pw'}\n",
        );
        m.resolve_paths(Path::new("/etc/rebound"));
        assert_eq!(m.ca_file, Some(PathBuf::from("/etc/rebound/certs/ca.pem")));
        assert_eq!(
            m.auth,
            Auth::PasswordFile {
                path: "/etc/rebound/a.pw".into()
            }
        );
        let mut m = parse(
            "name='a'\nhost='h'\nusername='u'\nca_file='/srv/ca.pem'\nauth={method='password_file', path='/run/keys/a.pw'}\n",
        );
        m.resolve_paths(Path::new("/etc/rebound"));
        assert_eq!(
            m.ca_file,
            Some(PathBuf::from("/srv/ca.pem")),
            "absolute paths stay"
        );
        assert_eq!(
            m.auth,
            Auth::PasswordFile {
                path: "/run/keys/a.pw".into()
            }
        );
    }

    #[test]
    fn unrecognised_mail_moves_to_other() {
        let m = MoveTo::default();
        assert_eq!(m.folder_for(Kind::Unparsed), "Processed/Other");
        assert_eq!(m.folder_for(Kind::Bounce), "Processed/Bounces");
    }
}

#[cfg(test)]
mod example_file {
    /// `config.example.toml` documents every key: it must load and validate as it is.
    #[test]
    fn example_config_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let cfg = crate::config::Config::load(&path).unwrap();
        assert_eq!(cfg.mailbox.len(), 2);
        super::validate_all(&cfg.mailbox).unwrap();
        assert_eq!(cfg.mailbox[0].move_to, super::MoveTo::default());
    }
}
