//! `rebound watch`: poll every mailbox, then stay connected (IMAP IDLE, or the poll interval
//! where the server has no IDLE), one task and one connection per folder of each mailbox, until
//! SIGINT or SIGTERM. Every round that finds something prints its line.
//!
//! Each folder has one open `runs` row at a time. A round that finds nothing records the
//! row's heartbeat ("read fine just now"); a round that finds something or fails closes the row
//! with its counts and opens the next one; stopping closes the open rows. So the ledger says at
//! any time when each folder was last read fine, and a watch killed outright leaves open rows
//! that the next run marks aborted. Rows are written by the ledger's writer thread, like
//! everything else (see `crate::ingest`), in the order each folder's rounds end.
//!
//! Beside the folders: the config's hooks (as changes are committed, and every minute),
//! retention's purge (at the start and every hour), and with `--metrics-file` the metrics file
//! (after rounds, at most every 10 s, and at the end).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tracing::Instrument;

use crate::imap::{self, MailboxReport, Sink};
use crate::ingest::{self, writer::Writer};
use crate::ledger::{Ledger, RunSummary};

use super::output::Lines;
use super::poll::{PollArgs, load, report_line, summary};

pub fn run(args: &PollArgs) -> anyhow::Result<ExitCode> {
    let (cfg, mailboxes, db_path) = load(&args.config, args.db.as_deref(), &args.mailbox)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let settings = cfg.settings()?;
    let ledger = Ledger::open(&db_path, cfg.policy.clone(), settings.fingerprint())?;
    let (writer, thread) = ingest::writer::start(ledger)?;
    let code = runtime.block_on(async move {
        // Hold every mailbox's lock for the whole watch: a timer-driven poll would wait, then
        // skip with a clear message. Taken here, once per mailbox, so that the folder tasks of
        // this process never wait for each other.
        let mut locks = Vec::new();
        for mb in &mailboxes {
            locks.push(imap::lock::acquire(&db_path, &mb.name, Duration::from_secs(args.lock_wait)).await?);
        }
        let hooks = crate::hooks::start(&cfg.hooks, &writer, &db_path, crate::hooks::Pace::Watch);
        let metrics = args
            .metrics_file
            .as_deref()
            .map(|file| super::upkeep::MetricsTask::start(&db_path, file, cfg.hooks.hooks()));
        let purger = {
            let (writer, retention) = (writer.clone(), cfg.retention.clone());
            tokio::spawn(async move {
                loop {
                    super::upkeep::purge(&writer, &retention).await;
                    tokio::time::sleep(PURGE_EVERY).await;
                }
            })
        };
        let out = Arc::new(Mutex::new(Lines::new()));
        // Set when a run could not be recorded: the watch goes on, but ends with exit 1.
        let unrecorded = Arc::new(AtomicBool::new(false));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        let mut all_runs = Vec::new();
        for mb in mailboxes.clone() {
            let runs = Arc::new(FolderRuns::default());
            for folder in mb.folders() {
                let id = writer.start_folder_run(&mb.name, &folder).await?;
                runs.open.lock().unwrap().insert(folder, id);
            }
            all_runs.push((mb.name.clone(), runs.clone()));
            let (recorder, out, unrecorded) = (writer.clone(), out.clone(), unrecorded.clone());
            let pinger = metrics.as_ref().map(|m| m.pinger());
            let name = mb.name.clone();
            let on_report: imap::watch::OnReport = Arc::new(move |report: MailboxReport| {
                let eventful = report.new > 0 || report.duplicates > 0 || report.failed || !report.errors.is_empty();
                if eventful && let Err(e) = out.lock().unwrap().line(report_line(&report)) {
                    tracing::error!("could not print the summary line: {e}");
                }
                let (runs, recorder, unrecorded) = (runs.clone(), recorder.clone(), unrecorded.clone());
                let pinger = pinger.clone();
                async move {
                    if let Err(e) = runs.record(&recorder, &report, eventful).await {
                        tracing::error!("could not record the run in the ledger: {e:#}");
                        unrecorded.store(true, Ordering::SeqCst);
                    }
                    if let Some(p) = pinger {
                        p.notify_one();
                    }
                }
                .boxed()
            });
            let span = tracing::error_span!("mailbox", mailbox = %name);
            let sink = Sink::Ledger(writer.clone());
            tasks.push(tokio::spawn(
                imap::watch::watch_mailbox(mb, sink, settings.clone(), stop_rx.clone(), on_report).instrument(span),
            ));
        }
        if let Some(m) = &metrics {
            m.ping();
        }
        tracing::info!("watching {} mailbox(es); SIGINT or SIGTERM to stop", mailboxes.len());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping");
        let _ = stop_tx.send(true);
        let all = futures::future::join_all(tasks);
        let stopped = tokio::time::timeout(Duration::from_secs(15), all).await.is_ok();
        if !stopped {
            tracing::error!("some mailboxes did not stop within 15 s");
        }
        for (name, runs) in all_runs {
            if let Err(e) = runs.stop(&writer).await {
                tracing::error!(mailbox = %name, "could not record the end of the run in the ledger: {e:#}");
                unrecorded.store(true, Ordering::SeqCst);
            }
        }
        purger.abort();
        if let Some(hooks) = hooks {
            hooks.finish().await;
        }
        if let (Some(m), Some(file)) = (metrics, args.metrics_file.as_deref()) {
            m.stop();
            let (d, f, h) = (db_path.clone(), file.to_path_buf(), cfg.hooks.hooks());
            let _ = tokio::task::spawn_blocking(move || super::upkeep::metrics(&d, &f, None, &h)).await;
        }
        drop(locks);
        Ok::<_, anyhow::Error>(if stopped && !unrecorded.load(Ordering::SeqCst) {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })?;
    // Every handle on the writer is gone with the runtime's tasks: it finishes what it was sent.
    drop(runtime);
    thread.join()?;
    Ok(code)
}

/// How often a watch purges what retention says is due.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// The open `runs` row of each folder of one mailbox. Each folder's task records its own
/// rounds, one after the other; the lock is never held across a write.
#[derive(Default)]
struct FolderRuns {
    open: Mutex<HashMap<String, i64>>,
}

impl FolderRuns {
    /// Records one round: a heartbeat when it found nothing; otherwise the open row is closed
    /// with the round's counts and the next one opened.
    async fn record(
        &self,
        writer: &Writer,
        report: &MailboxReport,
        eventful: bool,
    ) -> anyhow::Result<()> {
        let folder = report.folder.clone().unwrap_or_default();
        let Some(id) = self.open.lock().unwrap().get(&folder).copied() else {
            anyhow::bail!("no open run for folder {folder}");
        };
        tracing::Span::current().record("run", id);
        if !eventful {
            return writer.heartbeat(id).await;
        }
        writer.finish_run(id, summary(report)).await?;
        let next = writer.start_folder_run(&report.mailbox, &folder).await?;
        self.open.lock().unwrap().insert(folder, next);
        tracing::Span::current().record("run", next);
        Ok(())
    }

    /// Closes every open row: the watch is stopping.
    async fn stop(&self, writer: &Writer) -> anyhow::Result<()> {
        let open: Vec<(String, i64)> = self.open.lock().unwrap().drain().collect();
        for (folder, id) in open {
            let nothing = RunSummary {
                folder: Some(folder),
                ..Default::default()
            };
            writer.stop_run(id, nothing).await?;
        }
        Ok(())
    }
}
