//! `rebound check [--config FILE]`: the first thing to run after writing a config. It reads
//! the config, tests that the ledger's place is writable, resolves every mailbox's secret
//! (never printing it), connects and logs in, and looks for every folder the mailbox would
//! read; one line per check, `ok`, `warn` or `FAIL`, the failures with what to change. Nothing
//! is written: no ledger is created, no message touched (folders are EXAMINEd, read-only).
//!
//! Exit 0 when nothing failed (warnings allowed), 1 otherwise.

use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::Config;
use crate::imap::{self, Action, Auth, MailboxConfig, Tls};
use crate::ledger::schema::MIGRATIONS;

#[derive(clap::Args, Debug, Clone)]
pub struct CheckArgs {
    /// The config file to check.
    #[arg(long, value_name = "FILE", default_value = "rebound.toml")]
    pub config: PathBuf,
    /// The ledger database file (overrides `[database] path`), as for poll.
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Only this mailbox (by name); may be repeated.
    #[arg(long, value_name = "NAME")]
    pub mailbox: Vec<String>,
}

/// The lines printed, and whether any failed.
struct Report {
    failed: bool,
}

impl Report {
    fn line(&mut self, status: &str, subject: &str, detail: impl Display) -> std::io::Result<()> {
        writeln!(std::io::stdout().lock(), "{status:<4}  {subject}: {detail}")
    }
    fn ok(&mut self, subject: &str, detail: impl Display) -> std::io::Result<()> {
        self.line("ok", subject, detail)
    }
    fn warn(&mut self, subject: &str, detail: impl Display) -> std::io::Result<()> {
        self.line("warn", subject, detail)
    }
    fn fail(&mut self, subject: &str, detail: impl Display) -> std::io::Result<()> {
        self.failed = true;
        self.line("FAIL", subject, detail)
    }
}

pub fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let mut report = Report { failed: false };
    let subject = format!("config {}", args.config.display());
    let cfg = match Config::load(&args.config).and_then(|cfg| {
        imap::config::validate_all(&cfg.mailbox)?;
        Ok(cfg)
    }) {
        Ok(cfg) => cfg,
        Err(e) => {
            report.fail(&subject, format!("{e:#}"))?;
            return Ok(ExitCode::from(1));
        }
    };
    for name in &args.mailbox {
        if !cfg.mailbox.iter().any(|m| &m.name == name) {
            report.fail(&subject, format!("no mailbox named {name:?}"))?;
        }
    }
    let rules = cfg
        .rules
        .file
        .as_ref()
        .map_or(String::new(), |f| format!(", local rules {}", f.display()));
    report.ok(
        &subject,
        format!("valid, {} mailbox(es){rules}", cfg.mailbox.len()),
    )?;
    if cfg.mailbox.is_empty() {
        report.warn(
            &subject,
            "no [[mailbox]]: poll and watch have nothing to read (ingest and classify work)",
        )?;
    }

    check_verp(&mut report, &cfg)?;

    let db = cfg.database_path(args.db.as_deref());
    check_database(&mut report, &db)?;

    let mailboxes: Vec<&MailboxConfig> = cfg
        .mailbox
        .iter()
        .filter(|m| args.mailbox.is_empty() || args.mailbox.contains(&m.name))
        .collect();
    if !mailboxes.is_empty() {
        let runtime = tokio::runtime::Runtime::new()?;
        for mb in mailboxes {
            runtime.block_on(check_mailbox(&mut report, mb))?;
        }
    }
    Ok(if report.failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `[verp]`: its keys are read (never shown) the way poll and ingest will read them.
fn check_verp(report: &mut Report, cfg: &Config) -> std::io::Result<()> {
    let v = &cfg.verp;
    if v.return_paths.is_empty() {
        return Ok(());
    }
    let subject = "verp";
    let source = match (&v.key_env, &v.key_file) {
        (Some(var), _) => format!("key_env {var}"),
        (_, Some(path)) => format!("key_file {}", path.display()),
        _ => String::new(),
    };
    match cfg.settings() {
        Err(e) => report.fail(subject, format!("{e:#}")),
        Ok(settings) => {
            let verp = settings.verp().expect("return paths are configured");
            let paths = verp.return_paths().collect::<Vec<_>>().join(", ");
            if verp.signs() {
                report.ok(
                    subject,
                    format!(
                        "return paths {paths}; {} key(s) from {source} (read, not shown), the first signs{}",
                        verp.key_count(),
                        if verp.require_signature() {
                            "; a valid tag is required"
                        } else {
                            ""
                        }
                    ),
                )
            } else {
                report.warn(
                    subject,
                    format!(
                        "return paths {paths}, unsigned: anyone can send a bounce that suppresses an address; set key_env or key_file"
                    ),
                )
            }
        }
    }
}

/// The ledger and its lock files: an existing ledger must open for writing at a schema this
/// rebound knows; a new one needs a directory rebound can write in.
fn check_database(report: &mut Report, db: &Path) -> std::io::Result<()> {
    let subject = format!("database {}", db.display());
    if db.exists() {
        match open_for_writing(db) {
            Ok(version) if version as usize > MIGRATIONS.len() => report.fail(
                &subject,
                format!(
                    "schema version {version} is newer than this rebound knows ({}): upgrade rebound",
                    MIGRATIONS.len()
                ),
            )?,
            Ok(version) => report.ok(
                &subject,
                format!("writable (schema version {version}, this rebound's is {})", MIGRATIONS.len()),
            )?,
            Err(e) => report.fail(
                &subject,
                format!(
                    "cannot be written ({e}): give the file and its directory to the user rebound runs as (chown; the file 0600)"
                ),
            )?,
        }
        if let Some(why) = wider_than_private(db) {
            report.warn(&subject, why)?;
        }
    }
    // The directory holds the ledger's journal (WAL) and the mailbox locks.
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let subject_dir = format!("directory {}", dir.display());
    match directory_writable(dir) {
        Ok(true) if db.exists() => report.ok(&subject_dir, "writable (journal and lock files)"),
        Ok(true) => report.ok(
            &subject,
            "does not exist yet; its directory is writable, the first run creates it (mode 0600)",
        ),
        Ok(false) => report.ok(
            &subject,
            "does not exist yet; neither does its directory, which the first run creates",
        ),
        Err(e) => report.fail(
            &subject_dir,
            format!(
                "not writable ({e}): create it and give it to the user rebound runs as (install -d -o rebound -g rebound -m 0750 {})",
                dir.display()
            ),
        ),
    }
}

/// Opens an existing ledger, takes and releases the write lock, returns its schema version.
fn open_for_writing(db: &Path) -> anyhow::Result<i64> {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
    Ok(version)
}

/// `Ok(true)`: the directory exists and a file can be created in it; `Ok(false)`: it does not
/// exist but its nearest existing parent is writable (the first run creates it).
fn directory_writable(dir: &Path) -> std::io::Result<bool> {
    let (probe_dir, exists) = if dir.is_dir() {
        (dir.to_path_buf(), true)
    } else {
        let parent = dir
            .ancestors()
            .skip(1)
            .find(|a| a.is_dir())
            .unwrap_or(Path::new("/"))
            .to_path_buf();
        (parent, false)
    };
    let probe = probe_dir.join(format!(".rebound-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)?;
    Ok(exists)
}

fn wider_than_private(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "mode {mode:04o}: other users can read the ledger (addresses, whole messages): chmod 600 {}",
            path.display()
        )
    })
}

/// Secret, connection, login, folders of one mailbox; stops at the first step that fails.
async fn check_mailbox(report: &mut Report, mb: &MailboxConfig) -> anyhow::Result<()> {
    let subject = format!("mailbox {}", mb.name);
    let source = secret_source(&mb.auth);
    match imap::auth::resolve(mb).await {
        Ok(_) => report.ok(&subject, format!("secret from {source} (read, not shown)"))?,
        Err(e) => {
            report.fail(&subject, format!("secret from {source}: {e:#}"))?;
            return Ok(());
        }
    }
    if let Auth::PasswordFile { path } = &mb.auth
        && let Some(why) = imap::auth::password_file_exposure(path)
    {
        report.warn(&subject, why)?;
    }
    let client = match imap::connect::connect(mb).await {
        Ok(c) => c,
        Err(e) => {
            report.fail(&subject, format!("{e:#}"))?;
            return Ok(());
        }
    };
    let how = match mb.tls {
        Tls::Implicit => "TLS, certificate verified",
        Tls::Starttls => "STARTTLS, certificate verified",
        Tls::None => "no encryption: loopback only",
    };
    report.ok(
        &subject,
        format!("connected to {}:{} ({how})", mb.host, mb.port()),
    )?;
    let mut session = match imap::auth::login(client, mb).await {
        Ok(s) => s,
        Err(e) => {
            report.fail(&subject, format!("{e:#}"))?;
            return Ok(());
        }
    };
    report.ok(&subject, format!("logged in as {}", mb.username))?;
    let limit = mb.timeout();
    for folder in mb.folders() {
        let wire = imap::folder_name::encode(&folder);
        let what = format!("EXAMINE {folder}");
        match imap::connect::timed(limit, &what, session.examine(&wire)).await {
            Ok(m) => report.ok(
                &subject,
                format!(
                    "folder {folder:?} exists ({} message{}), will be read",
                    m.exists,
                    if m.exists == 1 { "" } else { "s" }
                ),
            )?,
            Err(e) => report.fail(&subject, format!("folder {folder}: {e:#}"))?,
        }
    }
    if mb.action == Action::Move {
        let mut targets = vec![
            &mb.move_to.bounces,
            &mb.move_to.auto_replies,
            &mb.move_to.complaints,
            &mb.move_to.other,
        ];
        targets.dedup();
        for target in targets {
            let wire = imap::folder_name::encode(target);
            let status =
                imap::connect::timed(limit, "STATUS", session.status(&wire, "(MESSAGES)")).await;
            let detail = match status {
                Ok(_) => format!("move_to folder {target:?} exists"),
                Err(_) => format!(
                    "move_to folder {target:?} does not exist yet: the first move creates it"
                ),
            };
            report.ok(&subject, detail)?;
        }
    }
    let _ = imap::connect::timed(
        std::time::Duration::from_secs(5).min(limit),
        "LOGOUT",
        session.logout(),
    )
    .await;
    Ok(())
}

/// Where a mailbox's secret comes from, for the report (never the secret).
fn secret_source(auth: &Auth) -> String {
    match auth {
        Auth::PasswordEnv { var } => format!("environment variable {var}"),
        Auth::PasswordFile { path } => format!("password_file {}", path.display()),
        Auth::PasswordCommand { .. } => "password_command".to_string(),
        Auth::Xoauth2 { .. } => "token_command (XOAUTH2)".to_string(),
    }
}
