//! `rebound poll`: read every configured mailbox once, ingest what is new, apply the action,
//! print one line per mailbox, exit. Exit code 0 when every mailbox was read completely, 1 when
//! one could not be reached, authenticated, locked or read to the end (the others are still
//! done). The config's hooks run as batches are committed; at the end, retention's purge and
//! (`--metrics-file`) the metrics file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tracing::Instrument;

use crate::analysis::Settings;
use crate::config::Config;
use crate::hooks::{self, Pace};
use crate::imap::{self, Action, MailboxConfig, MailboxReport, PollOptions, Sink};
use crate::ingest;
use crate::ledger::{FolderState, Ledger, RunSummary};

#[derive(clap::Args, Debug, Clone)]
pub struct PollArgs {
    /// The config file (TOML): `[[mailbox]]` tables, `[database]`, `[policy]`.
    #[arg(long, value_name = "FILE", default_value = "rebound.toml")]
    pub config: PathBuf,
    /// The ledger database file (overrides `[database] path`).
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Only this mailbox (by name); may be repeated.
    #[arg(long, value_name = "NAME")]
    pub mailbox: Vec<String>,
    /// Seconds to wait for another run holding a mailbox's lock before skipping it.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub lock_wait: u64,
    /// Write a Prometheus textfile (node_exporter's textfile collector) after the run (watch:
    /// after its rounds, at most every 10 s; not with --dry-run).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

/// The loaded config, its mailboxes (filtered by `--mailbox`) and the database path.
pub(crate) fn load(
    config: &Path,
    db: Option<&Path>,
    only: &[String],
) -> anyhow::Result<(Config, Vec<MailboxConfig>, PathBuf)> {
    let cfg = Config::load(config)?;
    imap::config::validate_all(&cfg.mailbox)
        .with_context(|| format!("in the config file {}", config.display()))?;
    if cfg.mailbox.is_empty() {
        bail!("no [[mailbox]] in {}", config.display());
    }
    for name in only {
        if !cfg.mailbox.iter().any(|m| &m.name == name) {
            bail!("no mailbox named {name:?} in {}", config.display());
        }
    }
    let mailboxes = cfg
        .mailbox
        .iter()
        .filter(|m| only.is_empty() || only.contains(&m.name))
        .cloned()
        .collect();
    let path = cfg.database_path(db);
    Ok((cfg, mailboxes, path))
}

pub fn run(args: &PollArgs, dry_run: bool) -> anyhow::Result<ExitCode> {
    let begun = std::time::Instant::now();
    let (cfg, mailboxes, db_path) = load(&args.config, args.db.as_deref(), &args.mailbox)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let reports = runtime.block_on(poll_all(
        &cfg,
        &mailboxes,
        &db_path,
        dry_run,
        Duration::from_secs(args.lock_wait),
    ))?;
    let mut ok = true;
    let mut out = super::output::Lines::new();
    for r in &reports {
        out.line(format_args!(
            "{}{}",
            if dry_run { "(dry run) " } else { "" },
            report_line(r)
        ))?;
        ok &= !r.failed;
    }
    if let Some(file) = args.metrics_file.as_deref().filter(|_| !dry_run) {
        let run = crate::metrics::RunFacts {
            command: "poll",
            duration: begun.elapsed(),
            errors: reports.iter().map(|r| r.errors.len() as u64).sum(),
        };
        super::upkeep::metrics(&db_path, file, Some(&run), &cfg.hooks.hooks());
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Polls every mailbox concurrently, one task each, and returns their reports in config order.
/// One writer thread stores what every task reads (see `crate::ingest`).
async fn poll_all(
    cfg: &Config,
    mailboxes: &[MailboxConfig],
    db_path: &Path,
    dry_run: bool,
    lock_wait: Duration,
) -> anyhow::Result<Vec<MailboxReport>> {
    let settings = cfg.settings()?;
    let (sink, thread, writer) = if dry_run {
        (
            Sink::DryRun(Arc::new(dry_run_progress(db_path, mailboxes)?)),
            None,
            None,
        )
    } else {
        let ledger = Ledger::open(db_path, cfg.policy.clone(), settings.fingerprint())?;
        // Moved or deleted messages exist only in the ledger once acted on: their commits
        // must survive a power cut (see Ledger::sync_every_commit).
        ledger.sync_every_commit(
            mailboxes
                .iter()
                .any(|m| matches!(m.action, Action::Move | Action::Delete)),
        )?;
        let (writer, thread) = ingest::writer::start(ledger)?;
        (Sink::Ledger(writer.clone()), Some(thread), Some(writer))
    };
    let hooks = writer
        .as_ref()
        .and_then(|w| hooks::start(&cfg.hooks, w, db_path, Pace::Run));
    let mut tasks = Vec::new();
    for mb in mailboxes.iter().cloned() {
        let (sink, settings, db_path) = (sink.clone(), settings.clone(), db_path.to_path_buf());
        // Every log line of the mailbox's task names it, and its run once one is open.
        let span = tracing::error_span!("mailbox", mailbox = %mb.name, run = tracing::field::Empty);
        tasks.push(tokio::spawn(
            async move {
                let report = poll_one(&mb, sink, settings, &db_path, lock_wait, dry_run).await;
                // The failure, printed once; the report line only counts it.
                if report.failed {
                    let error = report.errors.last().map(String::as_str).unwrap_or("failed");
                    tracing::error!("{error}");
                }
                report
            }
            .instrument(span),
        ));
    }
    drop(sink);
    let mut reports = Vec::new();
    for (task, mb) in tasks.into_iter().zip(mailboxes) {
        reports.push(task.await.unwrap_or_else(|e| {
            let mut r = MailboxReport::new(&mb.name);
            tracing::error!(mailbox = %mb.name, "internal error: {e}");
            r.errors.push(format!("internal error: {e}"));
            r.failed = true;
            r
        }));
    }
    if let Some(hooks) = hooks {
        hooks.finish().await;
    }
    if let Some(writer) = writer {
        super::upkeep::purge(&writer, &cfg.retention).await;
    }
    if let Some(thread) = thread {
        // Every handle on the writer is gone with the tasks: it finishes what it was sent.
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|e| anyhow::anyhow!("the ledger writer: {e}"))??;
    }
    Ok(reports)
}

/// One mailbox of a poll: its lock, its `runs` row, the poll itself.
async fn poll_one(
    mb: &MailboxConfig,
    sink: Sink,
    settings: Settings,
    db_path: &Path,
    lock_wait: Duration,
    dry_run: bool,
) -> MailboxReport {
    let opts = PollOptions { dry_run };
    let Sink::Ledger(writer) = &sink else {
        return imap::poll_mailbox(mb, sink, settings, &opts).await;
    };
    let writer = writer.clone();
    let failed = |error: String| {
        let mut r = MailboxReport::new(&mb.name);
        r.errors.push(error);
        r.failed = true;
        r
    };
    let lock = match imap::lock::acquire(db_path, &mb.name, lock_wait).await {
        Ok(l) => l,
        Err(e) => return failed(format!("{e:#}")),
    };
    // A run the ledger cannot record is a failed run: the operator's view of when each
    // mailbox last ran fine must never be silently wrong.
    let id = match writer.start_run(&mb.name).await {
        Ok(id) => id,
        Err(e) => {
            return failed(format!(
                "could not record the run in the ledger, so the mailbox was not read: {e:#}"
            ));
        }
    };
    tracing::Span::current().record("run", id);
    let mut report = imap::poll_mailbox(mb, sink, settings, &opts).await;
    if let Err(e) = writer.finish_run(id, summary(&report)).await {
        report.errors.push(format!(
            "could not record the end of run {id} in the ledger: {e:#}"
        ));
        report.failed = true;
    }
    drop(lock);
    report
}

/// A dry run starts from the ledger's progress when there is a ledger, without opening it for
/// writing (opening would create or migrate it).
fn dry_run_progress(
    db_path: &Path,
    mailboxes: &[MailboxConfig],
) -> anyhow::Result<HashMap<(String, String), FolderState>> {
    let mut progress = HashMap::new();
    if !db_path.exists() {
        return Ok(progress);
    }
    let conn =
        rusqlite::Connection::open_with_flags(db_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("opening {} read-only", db_path.display()))?;
    for mb in mailboxes {
        for folder in mb.folders() {
            let row = conn.query_row(
                "SELECT uidvalidity, last_uid FROM imap_folders WHERE mailbox = ?1 AND folder = ?2",
                [&mb.name, &folder],
                |r| {
                    Ok(FolderState {
                        uidvalidity: r.get(0)?,
                        last_uid: r.get(1)?,
                    })
                },
            );
            if let Ok(p) = row {
                progress.insert((mb.name.clone(), folder), p);
            }
        }
    }
    Ok(progress)
}

/// The ledger's `runs` row for a mailbox report.
pub(crate) fn summary(r: &MailboxReport) -> RunSummary {
    RunSummary {
        new: r.new,
        duplicates: r.duplicates,
        kinds: r.kinds.clone(),
        bounces_by_label: r.labels.clone(),
        forged: r.forged,
        errors: r.errors.clone(),
        folder: r.folder.clone(),
    }
}

/// The summary line of a mailbox report (`name [folder]` for a watch folder).
pub(crate) fn report_line(r: &MailboxReport) -> String {
    let name = match &r.folder {
        Some(folder) => format!("{} [{folder}]", r.mailbox),
        None => r.mailbox.clone(),
    };
    super::summary::line(&name, r.failed, &summary(r))
}
