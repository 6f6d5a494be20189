//! `watch`: one task per mailbox that stays connected. After each sync it waits with IMAP IDLE
//! on the first folder (or sleeps the poll interval when the server has no IDLE), then syncs
//! every folder again. Any failure drops the session and reconnects with exponential backoff;
//! a shutdown signal ends the wait, leaves IDLE cleanly and logs out.

use std::time::Duration;

use tokio::sync::watch::Receiver;

use super::action::{Capabilities, Folders};
use super::config::MailboxConfig;
use super::connect::timed;
use super::poll::{MailboxReport, PollOptions, SharedStore, Worker, backoff, open};

/// Longest IDLE before re-issuing it (RFC 2177 asks clients to re-IDLE within 29 minutes).
const MAX_IDLE: Duration = Duration::from_secs(29 * 60);

/// Watches one mailbox until `shutdown` turns true. `on_report` receives a report for every
/// round that found something or failed.
pub async fn watch_mailbox(
    cfg: MailboxConfig,
    store: SharedStore,
    mut shutdown: Receiver<bool>,
    on_report: impl Fn(MailboxReport) + Send + Sync,
) {
    let mut worker = Worker::new(cfg.clone(), store, PollOptions::default());
    let mut failures: u32 = 0;
    while !*shutdown.borrow() {
        match connected(&mut worker, &mut shutdown, &on_report, &mut failures).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(mailbox = %cfg.name, error = %format!("{e:#}"), "watch: session failed; reconnecting");
                let retry = worker.failed(&e);
                on_report(worker.take_report());
                failures += 1;
                // Authentication failures wait the longest backoff: a person must fix them.
                let wait = if retry {
                    backoff(failures)
                } else {
                    backoff(u32::MAX)
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
    tracing::info!(mailbox = %cfg.name, "watch stopped");
}

/// One connection's life. Returns Ok on shutdown, Err when the session broke.
async fn connected(
    worker: &mut Worker,
    shutdown: &mut Receiver<bool>,
    on_report: &(impl Fn(MailboxReport) + Send + Sync),
    failures: &mut u32,
) -> anyhow::Result<()> {
    let cfg = worker.config().clone();
    let limit = cfg.timeout();
    let mut session = open(&cfg).await?;
    let caps = Capabilities::query(&mut session, limit).await?;
    let mut folders = Folders::default();
    let first = cfg.folders()[0].clone();
    let wait = cfg.poll_interval().min(MAX_IDLE);
    loop {
        worker.sync(&mut session, caps, &mut folders).await?;
        *failures = 0;
        let report = worker.take_report();
        if report.new > 0 || report.duplicates > 0 || !report.errors.is_empty() {
            on_report(report);
        }
        if *shutdown.borrow() {
            break;
        }
        if caps.idle {
            if cfg.folders().len() > 1 {
                timed(limit, &format!("SELECT {first}"), session.select(&first)).await?;
            }
            let mut idle = session.idle();
            timed(limit, "IDLE", idle.init()).await?;
            let woke = {
                let (fut, _stop) = idle.wait_with_timeout(wait);
                tokio::select! {
                    r = fut => Some(r),
                    _ = tokio::time::sleep(wait) => None,
                    _ = shutdown.changed() => None,
                }
            };
            if let Some(r) = woke {
                let r = r?;
                tracing::debug!(mailbox = %cfg.name, response = ?r, "IDLE woke up");
            }
            session = timed(limit, "DONE (leaving IDLE)", idle.done()).await?;
        } else {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
        if *shutdown.borrow() {
            break;
        }
    }
    let _ = timed(
        Duration::from_secs(5).min(limit),
        "LOGOUT",
        session.logout(),
    )
    .await;
    Ok(())
}
