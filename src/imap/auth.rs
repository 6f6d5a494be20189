//! Logging in: resolving the secret from where the configuration points (never from the file
//! itself), then LOGIN or AUTHENTICATE XOAUTH2.
//!
//! Tokens and passwords are fetched right before each login, so a `token_command` that refreshes
//! an OAuth access token (like aerc's or himalaya's) always hands over a fresh one.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use anyhow::{Context, bail};

use super::config::{Auth, MailboxConfig};
use super::connect::{Client, Session, timed};
use super::diagnosis::ServerSaid;

/// A failure that trying again will not fix (a wrong secret does not fix itself, and retrying
/// only risks a lockout): the server refused the credentials, or the secret is not there.
/// Callers match the type ([`AuthError::is_in`]), never the text.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("authentication failed for {user} on {host} ({said}): check username and {check}")]
    Refused {
        user: String,
        host: String,
        /// What the server answered (`NO [AUTHENTICATIONFAILED] ...`).
        said: String,
        /// Where the secret came from: what the operator should check.
        check: String,
    },
    #[error(
        "environment variable {var} (password_env) is not set: set it in rebound's environment (for systemd, in the EnvironmentFile)"
    )]
    EnvNotSet { var: String },
}

impl AuthError {
    /// Whether an error, or any cause in its chain, is an [`AuthError`].
    pub fn is_in(e: &anyhow::Error) -> bool {
        e.chain().any(|c| c.downcast_ref::<AuthError>().is_some())
    }
}

/// A secret and how to present it.
pub enum Credentials {
    Password(String),
    Xoauth2Token(String),
}

/// Reads the secret the configuration points to.
pub async fn resolve(cfg: &MailboxConfig) -> anyhow::Result<Credentials> {
    Ok(match &cfg.auth {
        Auth::PasswordEnv { var } => Credentials::Password(
            std::env::var(var).map_err(|_| AuthError::EnvNotSet { var: var.clone() })?,
        ),
        Auth::PasswordFile { path } => {
            let text = tokio::fs::read_to_string(path)
                .await
                .with_context(|| format!("reading password_file {}", path.display()))?;
            warn_once_if_exposed(path);
            Credentials::Password(first_line(&text, "password_file")?)
        }
        Auth::PasswordCommand { command } => Credentials::Password(
            run_command(command, cfg)
                .await
                .with_context(|| "password_command".to_string())?,
        ),
        Auth::Xoauth2 { token_command } => Credentials::Xoauth2Token(
            run_command(token_command, cfg)
                .await
                .with_context(|| "token_command".to_string())?,
        ),
    })
}

/// Why a password file is readable by others, with the fix; `None` when only its owner may
/// read it. rebound warns rather than refuses: container secret mounts (Kubernetes' default
/// 0644, Docker's 0444) are readable by others by design, inside a private mount namespace.
pub fn password_file_exposure(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        if mode & 0o044 != 0 {
            let who = if mode & 0o004 != 0 {
                "every local user"
            } else {
                "its group"
            };
            return Some(format!(
                "password_file {} can be read by {who} (mode {mode:04o}): chmod 600 {0}, owned by the user rebound runs as",
                path.display()
            ));
        }
    }
    let _ = path;
    None
}

/// Logs [`password_file_exposure`] once per file and process (`watch` logs in again and again).
fn warn_once_if_exposed(path: &Path) {
    static WARNED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let Some(why) = password_file_exposure(path) else {
        return;
    };
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if warned.get_or_insert_default().insert(path.to_path_buf()) {
        tracing::warn!("{why}");
    }
}

fn first_line(text: &str, what: &str) -> anyhow::Result<String> {
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        bail!("{what} gave an empty secret (its first line is empty)");
    }
    Ok(line.to_string())
}

/// Runs a secret command with `sh -c`; its first line of output is the secret. Its stderr goes
/// to ours, so an operator sees why a token refresh failed.
///
/// The command runs in a process group of its own, and the whole group is killed when it has
/// not finished in time (and whatever it left behind once it has): killing `sh` alone would
/// leave a hung `pass` or `curl` running for ever, one more after every timer run.
async fn run_command(command: &str, cfg: &MailboxConfig) -> anyhow::Result<String> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let group = child.id();
    let out = tokio::time::timeout(cfg.timeout(), child.wait_with_output()).await;
    if let Some(group) = group {
        kill_group(group);
    }
    let out = match out {
        Ok(r) => r?,
        Err(_) => bail!(
            "{command:?} did not finish within {} s (timeout_secs): it was stopped, with every process it started",
            cfg.timeout().as_secs()
        ),
    };
    if !out.status.success() {
        bail!("{command:?} failed ({})", out.status);
    }
    first_line(&String::from_utf8_lossy(&out.stdout), "the command")
}

/// SIGKILL to every process of a group (the group of a command started with
/// `process_group(0)`: its id is the command's pid). A group already gone is not an error.
pub(crate) fn kill_group(group: u32) {
    #[cfg(unix)]
    if let Ok(group) = i32::try_from(group)
        && group > 1
    {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours; a negative pid
        // names the process group.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
}

/// SASL XOAUTH2 initial response (the crate base64-encodes it).
struct Xoauth2<'a> {
    user: &'a str,
    token: &'a str,
}

impl async_imap::Authenticator for &Xoauth2<'_> {
    type Response = String;
    fn process(&mut self, _challenge: &[u8]) -> String {
        format!("user={}\x01auth=Bearer {}\x01\x01", self.user, self.token)
    }
}

/// Logs in with the configured method. A refusal says which user on which host and where the
/// secret came from, never the secret.
pub async fn login(client: Client, cfg: &MailboxConfig) -> anyhow::Result<Session> {
    let creds = resolve(cfg).await?;
    let limit = cfg.timeout();
    let what = format!("logging in as {} on {}", cfg.username, cfg.host);
    let result = match &creds {
        Credentials::Password(p) => {
            timed(limit, &what, async {
                client.login(&cfg.username, p).await.map_err(|(e, _)| e)
            })
            .await
        }
        Credentials::Xoauth2Token(t) => {
            let xo = Xoauth2 {
                user: &cfg.username,
                token: t,
            };
            timed(limit, &what, async {
                client
                    .authenticate("XOAUTH2", &xo)
                    .await
                    .map_err(|(e, _)| e)
            })
            .await
        }
    };
    result.map_err(|e| {
        let refusal = e
            .chain()
            .find_map(|c| c.downcast_ref::<ServerSaid>())
            .filter(|said| said.status == "NO");
        match refusal {
            Some(said) => AuthError::Refused {
                user: cfg.username.clone(),
                host: cfg.host.clone(),
                said: said.to_string(),
                check: secret_source(&cfg.auth),
            }
            .into(),
            None => e,
        }
    })
}

/// Where the secret came from, for a refusal: what the operator should check.
fn secret_source(auth: &Auth) -> String {
    match auth {
        Auth::PasswordEnv { var } => format!("the password in environment variable {var}"),
        Auth::PasswordFile { path } => format!("the password in {}", path.display()),
        Auth::PasswordCommand { .. } => "the password printed by password_command".to_string(),
        Auth::Xoauth2 { .. } => {
            "the access token printed by token_command (is it fresh, for this user, with the IMAP scope?)".to_string()
        }
    }
}
