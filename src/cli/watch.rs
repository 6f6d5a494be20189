//! `rebound watch`: poll every mailbox, then stay connected (IMAP IDLE, or the poll interval
//! where the server has no IDLE), one task and one connection per folder of each mailbox, until
//! SIGINT or SIGTERM. Every round that finds something prints its line.
//!
//! Each folder has one open `runs` row at a time. A round that finds nothing records the
//! row's heartbeat ("read fine just now"); a round that finds something or fails closes the row
//! with its counts and opens the next one; stopping closes the open rows. So the ledger says at
//! any time when each folder was last read fine, and a watch killed outright leaves open rows
//! that the next run marks aborted.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::Instrument;

use crate::imap::{self, MailboxReport, SharedStore};
use crate::ledger::{Ledger, RunSummary};

use super::output::Lines;
use super::poll::{PollArgs, load, report_line, summary};

pub fn run(args: &PollArgs) -> anyhow::Result<ExitCode> {
    let (cfg, mailboxes, db_path) = load(&args.config, args.db.as_deref(), &args.mailbox)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let ledger = Arc::new(Mutex::new(Ledger::open(&db_path, cfg.policy.clone())?));
        // Hold every mailbox's lock for the whole watch: a timer-driven poll would wait, then
        // skip with a clear message. Taken here, once per mailbox, so that the folder tasks of
        // this process never wait for each other.
        let mut locks = Vec::new();
        for mb in &mailboxes {
            locks.push(imap::lock::acquire(&db_path, &mb.name, Duration::from_secs(args.lock_wait)).await?);
        }
        let out = Arc::new(Mutex::new(Lines::new()));
        // Set when a run could not be recorded: the watch goes on, but ends with exit 1.
        let unrecorded = Arc::new(AtomicBool::new(false));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        let mut all_runs = Vec::new();
        for mb in mailboxes.clone() {
            let runs = Arc::new(Mutex::new(FolderRuns::default()));
            {
                let l = ledger.lock().unwrap();
                for folder in mb.folders() {
                    let id = l.start_folder_run(&mb.name, Some(&folder))?;
                    runs.lock().unwrap().open.insert(folder, id);
                }
            }
            all_runs.push((mb.name.clone(), runs.clone()));
            let store: SharedStore = ledger.clone();
            let (ledger, out, unrecorded) = (ledger.clone(), out.clone(), unrecorded.clone());
            let name = mb.name.clone();
            let on_report: imap::watch::OnReport = Arc::new(move |report: MailboxReport| {
                let eventful = report.new > 0 || report.duplicates > 0 || report.failed || !report.errors.is_empty();
                if eventful && let Err(e) = out.lock().unwrap().line(report_line(&report)) {
                    tracing::error!("could not print the summary line: {e}");
                }
                let recorded = runs.lock().unwrap().record(&ledger.lock().unwrap(), &report, eventful);
                if let Err(e) = recorded {
                    tracing::error!("could not record the run in the ledger: {e:#}");
                    unrecorded.store(true, Ordering::SeqCst);
                }
            });
            let span = tracing::error_span!("mailbox", mailbox = %name);
            tasks.push(tokio::spawn(imap::watch::watch_mailbox(mb, store, stop_rx.clone(), on_report).instrument(span)));
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
        let l = ledger.lock().unwrap();
        for (name, runs) in all_runs {
            if let Err(e) = runs.lock().unwrap().stop(&l) {
                tracing::error!(mailbox = %name, "could not record the end of the run in the ledger: {e:#}");
                unrecorded.store(true, Ordering::SeqCst);
            }
        }
        drop(locks);
        Ok(if stopped && !unrecorded.load(Ordering::SeqCst) {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}

/// The open `runs` row of each folder of one mailbox.
#[derive(Default)]
struct FolderRuns {
    open: HashMap<String, i64>,
}

impl FolderRuns {
    /// Records one round: a heartbeat when it found nothing; otherwise the open row is closed
    /// with the round's counts and the next one opened.
    fn record(
        &mut self,
        ledger: &Ledger,
        report: &MailboxReport,
        eventful: bool,
    ) -> anyhow::Result<()> {
        let folder = report.folder.clone().unwrap_or_default();
        let Some(&id) = self.open.get(&folder) else {
            anyhow::bail!("no open run for folder {folder}");
        };
        tracing::Span::current().record("run", id);
        if !eventful {
            return ledger.heartbeat(id);
        }
        ledger.finish_run(id, &summary(report))?;
        let next = ledger.start_folder_run(&report.mailbox, Some(&folder))?;
        self.open.insert(folder, next);
        tracing::Span::current().record("run", next);
        Ok(())
    }

    /// Closes every open row: the watch is stopping.
    fn stop(&mut self, ledger: &Ledger) -> anyhow::Result<()> {
        for (folder, id) in self.open.drain() {
            let nothing = RunSummary {
                folder: Some(folder),
                ..Default::default()
            };
            ledger.stop_run(id, &nothing)?;
        }
        Ok(())
    }
}
