//! What `poll`, `watch` and `ingest` do besides storing mail: retention's purge (through the
//! writer, in small transactions) and the metrics file. The hooks are in `crate::hooks`.
//! Neither changes a run's exit code: a failure is logged, once, as an error.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hooks::Hook;
use crate::ingest::Writer;
use crate::ledger::{Purged, Retention, time};
use crate::metrics::RunFacts;

/// Purges what `retention` says is due, [`super::purge::STEP`] messages per writer job.
pub async fn purge(writer: &Writer, retention: &Retention) {
    if !retention.is_set() {
        return;
    }
    let now = time::now();
    let mut all = Purged::default();
    loop {
        let r = retention.clone();
        match writer
            .call(move |l| l.purge_raw(&r, now, super::purge::STEP))
            .await
        {
            Ok(p) => {
                let more = p.messages() >= super::purge::STEP as u64;
                all.merge(&p);
                if !more {
                    break;
                }
            }
            Err(e) => {
                tracing::error!("retention: could not purge old raw bytes: {e:#}");
                break;
            }
        }
    }
    if all.messages() > 0 {
        tracing::info!("retention: purged {}", super::purge::describe(&all));
    }
}

/// Writes the metrics file, logging a failure.
pub fn metrics(database: &Path, file: &Path, run: Option<&RunFacts>, hooks: &[Hook]) {
    if let Err(e) = crate::metrics::write(database, file, run, hooks) {
        tracing::error!("{e:#}");
    }
}

/// Least time between two metrics files of a `watch`.
pub const METRICS_EVERY: Duration = Duration::from_secs(10);

/// A `watch`'s metrics: [`MetricsTask::ping`] after each round; the file is written at most
/// every [`METRICS_EVERY`], and once more after the last ping.
pub struct MetricsTask {
    ping: Arc<tokio::sync::Notify>,
    handle: tokio::task::JoinHandle<()>,
}

impl MetricsTask {
    pub fn start(database: &Path, file: &Path, hooks: Vec<Hook>) -> MetricsTask {
        let ping = Arc::new(tokio::sync::Notify::new());
        let (database, file, wake) = (database.to_path_buf(), file.to_path_buf(), ping.clone());
        let handle = tokio::spawn(async move {
            loop {
                wake.notified().await;
                let (d, f, h) = (database.clone(), file.clone(), hooks.clone());
                let started = Instant::now();
                let _ = tokio::task::spawn_blocking(move || metrics(&d, &f, None, &h)).await;
                tokio::time::sleep(METRICS_EVERY.saturating_sub(started.elapsed())).await;
            }
        });
        MetricsTask { ping, handle }
    }

    /// Something changed: write the file soon.
    pub fn ping(&self) {
        self.ping.notify_one();
    }

    /// A handle to ping from elsewhere.
    pub fn pinger(&self) -> Arc<tokio::sync::Notify> {
        self.ping.clone()
    }

    /// Stops the task (the caller writes the last file itself).
    pub fn stop(self) {
        self.handle.abort();
    }
}
