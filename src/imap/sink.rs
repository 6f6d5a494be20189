//! Where a poll's messages go: the ledger, through the ingest writer, or nowhere (`--dry-run`:
//! classified and counted, nothing stored). The worker prepares each batch itself (on the
//! analysis threads) and hands it here; it never holds the ledger.

use std::collections::HashMap;
use std::sync::Arc;

use crate::ingest::writer::BatchResult;
use crate::ingest::{Pending, Stream, Writer};
use crate::ledger::{FolderState, Outcome, Prepared};

/// The destination of a poll.
#[derive(Clone)]
pub enum Sink {
    /// The ledger's writer.
    Ledger(Writer),
    /// A dry run: where each folder stood when the run started (from the ledger, if there is
    /// one); nothing is stored.
    DryRun(Arc<HashMap<(String, String), FolderState>>),
}

/// A batch handed to the sink, whose outcome is still to come (or already known).
pub enum Submitted {
    Pending(Pending),
    Ready(BatchResult),
}

impl Submitted {
    pub async fn wait(self) -> BatchResult {
        match self {
            Submitted::Pending(p) => p.wait().await,
            Submitted::Ready(r) => r,
        }
    }
}

impl Sink {
    pub fn is_dry_run(&self) -> bool {
        matches!(self, Sink::DryRun(_))
    }

    /// Where a folder's reading stands.
    pub async fn folder_state(
        &self,
        mailbox: &str,
        folder: &str,
    ) -> anyhow::Result<Option<FolderState>> {
        match self {
            Sink::Ledger(w) => w.folder_state(mailbox, folder).await,
            Sink::DryRun(progress) => Ok(progress
                .get(&(mailbox.to_string(), folder.to_string()))
                .copied()),
        }
    }

    /// A new session reads the folder again: what stopped its stream is forgotten.
    pub async fn resume(&self, stream: Stream) {
        if let Sink::Ledger(w) = self {
            w.resume(stream).await;
        }
    }

    /// Queues a prepared batch of one folder, to be stored after everything queued before it.
    pub async fn submit(&self, batch: Vec<Prepared>, stream: Stream) -> Submitted {
        match self {
            Sink::Ledger(w) => Submitted::Pending(w.submit(batch, Some(stream)).await),
            Sink::DryRun(_) => Submitted::Ready(Ok(batch
                .iter()
                .map(|p| {
                    let recipients = &p.analysis.recipients;
                    Ok(Outcome {
                        message_row: 0,
                        duplicate: false,
                        kind: p.analysis.kind,
                        labels: if p.analysis.kind == crate::analysis::Kind::Bounce {
                            recipients
                                .iter()
                                .filter(|r| !r.forged)
                                .filter_map(|r| r.label)
                                .collect()
                        } else {
                            Vec::new()
                        },
                        forged: recipients.iter().filter(|r| r.forged).count(),
                    })
                })
                .collect())),
        }
    }
}
