//! `watch`: stays connected and ingests mail as it arrives.
//!
//! IMAP IDLE only reports changes to the *selected* folder, so each configured folder of a
//! mailbox gets its own task and its own connection: the task syncs its folder, waits with
//! IDLE on it (or sleeps the poll interval when the server has no IDLE), then syncs again. A
//! message appended to any folder is therefore picked up within seconds, not at the next IDLE
//! refresh of some other folder. One connection per folder is simpler and more robust than
//! NOTIFY (RFC 5465), which few servers offer; the price is `folders.len()` connections per
//! mailbox, well within the usual per-user limits (Dovecot's default is 10).
//!
//! Any failure drops that folder's session and reconnects it with exponential backoff; the other
//! folders keep running. A shutdown signal ends every wait, leaves IDLE cleanly and logs out.
//!
//! The mailbox's lock ([`super::lock`]) is taken once per process by the caller, before the
//! tasks start, and held for the whole watch: it keeps other rebound processes away from the
//! mailbox, while the folder tasks of this process never compete for it (an OS file lock taken
//! twice by one process through two open files would make them wait on each other).

use std::sync::Arc;
use std::time::Duration;

use async_imap::types::UnsolicitedResponse;
use tokio::sync::watch::Receiver;
use tracing::Instrument;

use super::action::{Capabilities, Folders};
use super::config::MailboxConfig;
use super::connect::{Session, timed};
use super::poll::{MailboxReport, PollOptions, Worker, backoff, open};
use super::sink::Sink;
use crate::analysis::Settings;

/// Longest IDLE before re-issuing it (RFC 2177 asks clients to re-IDLE within 29 minutes).
const MAX_IDLE: Duration = Duration::from_secs(29 * 60);

/// Receives a report for every round: one that found something, one that failed, and one that
/// found nothing (the folder was read fine: a heartbeat). The folder task waits for what it
/// returns (the recording of the round) before the next round.
pub type OnReport =
    Arc<dyn Fn(MailboxReport) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// Watches every folder of one mailbox until `shutdown` turns true, one task per folder.
pub async fn watch_mailbox(
    cfg: MailboxConfig,
    sink: Sink,
    settings: Settings,
    shutdown: Receiver<bool>,
    on_report: OnReport,
) {
    let tasks: Vec<_> = cfg
        .folders()
        .into_iter()
        .map(|folder| {
            // The task's log lines carry its folder, and the run it is recording (the caller
            // records `run` into this span as it opens runs).
            let span =
                tracing::error_span!("folder", folder = %folder, run = tracing::field::Empty);
            let one = MailboxConfig {
                folders: vec![folder],
                ..cfg.clone()
            };
            tokio::spawn(
                watch_folder(
                    one,
                    sink.clone(),
                    settings.clone(),
                    shutdown.clone(),
                    on_report.clone(),
                )
                .instrument(span),
            )
        })
        .collect();
    for task in futures::future::join_all(tasks).await {
        if let Err(e) = task {
            tracing::error!("a folder task of the watch ended abnormally: {e}");
        }
    }
    tracing::info!("watch stopped");
}

/// Watches the single folder of `cfg` (see [`watch_mailbox`]) until `shutdown` turns true.
async fn watch_folder(
    cfg: MailboxConfig,
    sink: Sink,
    settings: Settings,
    mut shutdown: Receiver<bool>,
    on_report: OnReport,
) {
    let folder = cfg.folders()[0].clone();
    let mut worker = Worker::new(cfg.clone(), sink, settings, PollOptions::default());
    let mut failures: u32 = 0;
    while !*shutdown.borrow() {
        match connected(&mut worker, &mut shutdown, &on_report, &mut failures).await {
            Ok(()) => break,
            Err(e) => {
                let retry = worker.failed(&e);
                failures += 1;
                // Authentication failures wait the longest backoff: a person must fix them.
                let wait = if retry {
                    backoff(failures)
                } else {
                    backoff(u32::MAX)
                };
                // Printed once per failure (the mailbox and folder come from the task's span);
                // the report line that follows only counts it.
                tracing::warn!(
                    "session failed, reconnecting in {} s: {e:#}",
                    wait.as_secs()
                );
                on_report(worker.take_report().in_folder(&folder)).await;
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
    tracing::info!("watch of the folder stopped");
}

/// True when the server announced new mail (`* n EXISTS`) while the sync was running. IDLE
/// does not announce it again, so without this check the message would wait for the next IDLE
/// refresh. Drains the unsolicited responses, which nothing else reads.
fn arrived_during_sync(session: &Session) -> bool {
    let mut arrived = false;
    while let Ok(response) = session.unsolicited_responses.try_recv() {
        arrived |= matches!(response, UnsolicitedResponse::Exists(_));
    }
    arrived
}

/// One connection's life. Returns Ok on shutdown, Err when the session broke.
async fn connected(
    worker: &mut Worker,
    shutdown: &mut Receiver<bool>,
    on_report: &OnReport,
    failures: &mut u32,
) -> anyhow::Result<()> {
    let cfg = worker.config().clone();
    let limit = cfg.timeout();
    let mut session = open(&cfg).await?;
    let caps = Capabilities::query(&mut session, limit).await?;
    let mut folders = Folders::default();
    let wait = cfg.poll_interval().min(MAX_IDLE);
    loop {
        // The sync ends with the task's only folder selected: IDLE then watches it.
        worker.sync(&mut session, caps, &mut folders).await?;
        *failures = 0;
        // Every complete round is reported, empty ones too: the caller records them as the
        // folder's heartbeat ("last read fine"), and prints those that found something.
        on_report(worker.take_report().in_folder(&cfg.folders()[0])).await;
        if *shutdown.borrow() {
            break;
        }
        if arrived_during_sync(&session) {
            tracing::debug!("new mail announced during the sync: syncing again");
            continue;
        }
        if caps.idle {
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
                tracing::debug!(response = ?r, "IDLE woke up");
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
