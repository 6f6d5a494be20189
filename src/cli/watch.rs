//! `rebound watch`: poll every mailbox, then stay connected (IMAP IDLE, or the poll interval
//! where the server has no IDLE), one task and one connection per folder of each mailbox, until
//! SIGINT or SIGTERM. Every round that finds something prints its line and records a `runs` row.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::imap::{self, Sink};
use crate::ingest;
use crate::ledger::Ledger;

use super::poll::{PollArgs, load, summary};

pub fn run(args: &PollArgs) -> anyhow::Result<ExitCode> {
    let (cfg, mailboxes, db_path) = load(&args.config, args.db.as_deref(), &args.mailbox)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let rules = cfg.rules();
    let ledger = Ledger::open(&db_path, cfg.policy.clone(), rules.fingerprint())?;
    let (writer, thread) = ingest::writer::start(ledger)?;
    let code = runtime.block_on(async move {
        // Hold every mailbox's lock for the whole watch: a timer-driven poll would wait, then
        // skip with a clear message. Taken here, once per mailbox, so that the folder tasks of
        // this process never wait for each other.
        let mut locks = Vec::new();
        for mb in &mailboxes {
            locks.push(imap::lock::acquire(&db_path, &mb.name, Duration::from_secs(args.lock_wait)).await?);
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for mb in mailboxes.clone() {
            let sink = Sink::Ledger(writer.clone());
            let recorder = writer.clone();
            let on_report: imap::watch::OnReport = Arc::new(move |report: imap::MailboxReport| {
                println!("{}", report.line());
                let recorder = recorder.clone();
                tokio::spawn(async move {
                    let recorded = match recorder.start_run(&report.mailbox).await {
                        Ok(id) => recorder.finish_run(id, summary(&report)).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = recorded {
                        tracing::error!(mailbox = %report.mailbox, error = %e, "could not record the run");
                    }
                });
            });
            tasks.push(tokio::spawn(imap::watch::watch_mailbox(mb, sink, rules.clone(), stop_rx.clone(), on_report)));
        }
        drop(writer);
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
            return Ok::<_, anyhow::Error>(ExitCode::from(1));
        }
        drop(locks);
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })?;
    // Every handle on the writer is gone with the tasks: it finishes what it was sent.
    drop(runtime);
    thread.join()?;
    Ok(code)
}
