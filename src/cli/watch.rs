//! `rebound watch`: poll every mailbox, then stay connected (IMAP IDLE, or the poll interval
//! where the server has no IDLE), one task and one connection per folder of each mailbox, until
//! SIGINT or SIGTERM. Every round that finds something prints its line and records a `runs` row.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::imap::{self, SharedStore};
use crate::ledger::Ledger;

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
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        let out = Arc::new(Mutex::new(super::output::Lines::new()));
        for mb in mailboxes.clone() {
            let store: SharedStore = ledger.clone();
            let ledger = ledger.clone();
            let out = out.clone();
            let on_report: imap::watch::OnReport = Arc::new(move |report: imap::MailboxReport| {
                if let Err(e) = out.lock().unwrap().line(report_line(&report)) {
                    tracing::error!(error = %e, "could not print the report line");
                }
                let l = ledger.lock().unwrap();
                if let Err(e) = l.start_run(&report.mailbox).and_then(|id| l.finish_run(id, &summary(&report))) {
                    tracing::error!(mailbox = %report.mailbox, error = %e, "could not record the run");
                }
            });
            tasks.push(tokio::spawn(imap::watch::watch_mailbox(mb, store, stop_rx.clone(), on_report)));
        }
        eprintln!("rebound: watching {} mailbox(es); SIGINT or SIGTERM to stop", mailboxes.len());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("rebound: stopping");
        let _ = stop_tx.send(true);
        let all = futures::future::join_all(tasks);
        if tokio::time::timeout(Duration::from_secs(15), all).await.is_err() {
            eprintln!("rebound: some mailboxes did not stop within 15 s");
            return Ok(ExitCode::from(1));
        }
        drop(locks);
        Ok(ExitCode::SUCCESS)
    })
}
