//! The one writer: a thread that owns the ledger and takes requests over a bounded channel,
//! answering each on its own one-shot channel (the shape of mini-redis's `db` task).
//!
//! Batches are written in the order they arrive, so a folder's batches keep their UID order.
//! A batch that could not store one of its messages *stops* its stream (an IMAP folder): the
//! batches of that folder already queued behind it are refused unwritten, since the folder's
//! watermark must never pass a message that is not stored, until the worker says it starts
//! over ([`Writer::resume`]). Callers never hold the ledger, so no lock is ever held across an
//! await or a commit.

use std::collections::{HashSet, VecDeque};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use crate::ledger::{FolderState, Ledger, Outcome, Prepared, RunSummary};

/// A stream of batches that must be stored in order with no gap: an IMAP (mailbox, folder).
pub type Stream = (String, String);

/// What a batch's writing gives back: an error for the batch as a whole (nothing stored), or
/// each message's outcome.
pub type BatchResult = anyhow::Result<Vec<anyhow::Result<Outcome>>>;

enum Request {
    Write {
        batch: Vec<Prepared>,
        stream: Option<Stream>,
        reply: oneshot::Sender<BatchResult>,
    },
    Known {
        shas: Vec<String>,
        reply: oneshot::Sender<anyhow::Result<HashSet<String>>>,
    },
    Folder {
        mailbox: String,
        folder: String,
        reply: oneshot::Sender<anyhow::Result<Option<FolderState>>>,
    },
    Resume {
        stream: Stream,
    },
    StartRun {
        mailbox: String,
        reply: oneshot::Sender<anyhow::Result<i64>>,
    },
    FinishRun {
        id: i64,
        summary: RunSummary,
        reply: oneshot::Sender<anyhow::Result<()>>,
    },
    SyncEveryCommit {
        yes: bool,
        reply: oneshot::Sender<anyhow::Result<()>>,
    },
}

/// Batches queued ahead of the writer: enough for the next batch to wait while one is
/// written, few enough that memory stays bounded by a few batches.
const QUEUE: usize = 2;

/// A handle on the writer thread. Cheap to clone; the thread ends when every handle is dropped
/// (see [`WriterThread::join`]).
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
}

/// The writer thread itself.
pub struct WriterThread {
    handle: JoinHandle<()>,
}

impl WriterThread {
    /// Waits for the writer to finish what it was sent (every [`Writer`] handle must be dropped
    /// first), then closes the ledger.
    pub fn join(self) -> anyhow::Result<()> {
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("the ledger writer panicked"))
    }
}

/// A batch sent to the writer, whose outcome is still to come.
pub struct Pending {
    reply: oneshot::Receiver<BatchResult>,
}

impl Pending {
    /// Waits for the batch to be written.
    pub async fn wait(self) -> BatchResult {
        self.reply.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// [`Pending::wait`] from a thread outside any async runtime.
    pub fn wait_blocking(self) -> BatchResult {
        self.reply
            .blocking_recv()
            .unwrap_or_else(|_| Err(stopped()))
    }
}

fn stopped() -> anyhow::Error {
    anyhow::anyhow!("the ledger writer stopped before answering (see the error above)")
}

/// Starts the writer thread with the ledger it owns from now on.
pub fn start(ledger: Ledger) -> anyhow::Result<(Writer, WriterThread)> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let handle = std::thread::Builder::new()
        .name("ledger-writer".into())
        .spawn(move || serve(ledger, rx))?;
    Ok((Writer { tx }, WriterThread { handle }))
}

fn serve(mut ledger: Ledger, mut rx: mpsc::Receiver<Request>) {
    let mut stopped: VecDeque<Stream> = VecDeque::new();
    while let Some(request) = rx.blocking_recv() {
        match request {
            Request::Write {
                batch,
                stream,
                reply,
            } => {
                let result = match &stream {
                    Some(s) if stopped.contains(s) => Ok(batch
                        .iter()
                        .map(|_| {
                            Err(anyhow::anyhow!(
                                "not stored: an earlier batch of its folder failed"
                            ))
                        })
                        .collect()),
                    _ => {
                        let started = std::time::Instant::now();
                        let result = ledger.write(&batch);
                        tracing::debug!(
                            messages = batch.len(),
                            write_ms = started.elapsed().as_millis() as u64,
                            "batch written"
                        );
                        result
                    }
                };
                let failed = match &result {
                    Ok(outcomes) => outcomes.iter().any(Result::is_err),
                    Err(_) => true,
                };
                if failed
                    && let Some(s) = stream
                    && !stopped.contains(&s)
                {
                    stopped.push_back(s);
                }
                let _ = reply.send(result);
            }
            Request::Known { shas, reply } => {
                let _ = reply.send(ledger.known(&shas));
            }
            Request::Folder {
                mailbox,
                folder,
                reply,
            } => {
                let _ = reply.send(ledger.folder_state(&mailbox, &folder));
            }
            Request::Resume { stream } => stopped.retain(|s| *s != stream),
            Request::StartRun { mailbox, reply } => {
                let _ = reply.send(ledger.start_run(&mailbox));
            }
            Request::FinishRun { id, summary, reply } => {
                let _ = reply.send(ledger.finish_run(id, &summary));
            }
            Request::SyncEveryCommit { yes, reply } => {
                let _ = reply.send(ledger.sync_every_commit(yes));
            }
        }
    }
}

impl Writer {
    /// Queues a batch (waiting while the queue is full) and returns at once: the batch is
    /// written after everything queued before it.
    pub async fn submit(&self, batch: Vec<Prepared>, stream: Option<Stream>) -> Pending {
        let (reply, rx) = oneshot::channel();
        let _ = self
            .tx
            .send(Request::Write {
                batch,
                stream,
                reply,
            })
            .await;
        Pending { reply: rx }
    }

    /// [`Writer::submit`] from a thread outside any async runtime.
    pub fn submit_blocking(&self, batch: Vec<Prepared>, stream: Option<Stream>) -> Pending {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.blocking_send(Request::Write {
            batch,
            stream,
            reply,
        });
        Pending { reply: rx }
    }

    /// A stream starts over (a new IMAP session of its folder): what stopped it is forgotten.
    pub async fn resume(&self, stream: Stream) {
        let _ = self.tx.send(Request::Resume { stream }).await;
    }

    /// Which of these sha256s the ledger holds already.
    pub fn known_blocking(&self, shas: Vec<String>) -> anyhow::Result<HashSet<String>> {
        self.ask_blocking(|reply| Request::Known { shas, reply })
    }

    /// Where a folder's reading stands.
    pub async fn folder_state(
        &self,
        mailbox: &str,
        folder: &str,
    ) -> anyhow::Result<Option<FolderState>> {
        self.ask(|reply| Request::Folder {
            mailbox: mailbox.to_string(),
            folder: folder.to_string(),
            reply,
        })
        .await
    }

    /// Opens a `runs` row for a mailbox (`files` for `rebound ingest`).
    pub async fn start_run(&self, mailbox: &str) -> anyhow::Result<i64> {
        self.ask(|reply| Request::StartRun {
            mailbox: mailbox.to_string(),
            reply,
        })
        .await
    }

    /// [`Writer::start_run`] from a thread outside any async runtime.
    pub fn start_run_blocking(&self, mailbox: &str) -> anyhow::Result<i64> {
        self.ask_blocking(|reply| Request::StartRun {
            mailbox: mailbox.to_string(),
            reply,
        })
    }

    /// Closes a `runs` row with its summary.
    pub async fn finish_run(&self, id: i64, summary: RunSummary) -> anyhow::Result<()> {
        self.ask(|reply| Request::FinishRun { id, summary, reply })
            .await
    }

    /// [`Writer::finish_run`] from a thread outside any async runtime.
    pub fn finish_run_blocking(&self, id: i64, summary: RunSummary) -> anyhow::Result<()> {
        self.ask_blocking(|reply| Request::FinishRun { id, summary, reply })
    }

    /// See [`Ledger::sync_every_commit`].
    pub fn sync_every_commit_blocking(&self, yes: bool) -> anyhow::Result<()> {
        self.ask_blocking(|reply| Request::SyncEveryCommit { yes, reply })
    }

    async fn ask<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<anyhow::Result<T>>) -> Request,
    ) -> anyhow::Result<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(request(reply)).await.map_err(|_| stopped())?;
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    fn ask_blocking<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<anyhow::Result<T>>) -> Request,
    ) -> anyhow::Result<T> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .blocking_send(request(reply))
            .map_err(|_| stopped())?;
        rx.blocking_recv().unwrap_or_else(|_| Err(stopped()))
    }
}
