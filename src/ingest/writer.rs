//! The one writer: a thread that owns the ledger and takes requests over a bounded channel,
//! answering each on its own one-shot channel (the shape of mini-redis's `db` task).
//!
//! Batches are written in the order they arrive, so a folder's batches keep their UID order.
//! A batch that could not store one of its messages *stops* its stream (an IMAP folder): the
//! batches of that folder already queued behind it are refused unwritten, since the folder's
//! watermark must never pass a message that is not stored, until the worker says it starts
//! over ([`Writer::resume`]). Callers never hold the ledger, so no lock is ever held across an
//! await or a commit.
//!
//! After each commit the writer publishes the head of the ledger's change log
//! (`suppression_log`, see [`Writer::log_head`]): the hooks of `crate::hooks` wake up on it and
//! read the new rows through [`Writer::call`], off this thread.

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
    Resume {
        stream: Stream,
    },
    /// Anything else the ledger does for a caller, run in turn (see [`Writer::call`]).
    Call(Job),
}

/// A piece of work for the writer thread; it sends its own answer.
type Job = Box<dyn FnOnce(&mut Ledger) + Send>;

/// Batches queued ahead of the writer: enough for the next batches to wait (and be written
/// together) while one is written, few enough that memory stays bounded by a few batches.
const QUEUE: usize = 4;

/// A handle on the writer thread. Cheap to clone; the thread ends when every handle is dropped
/// (see [`WriterThread::join`]).
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
    log_head: tokio::sync::watch::Receiver<i64>,
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
    let (head_tx, log_head) = tokio::sync::watch::channel(ledger.log_head()?);
    let handle = std::thread::Builder::new()
        .name("ledger-writer".into())
        .spawn(move || serve(ledger, rx, head_tx))?;
    Ok((Writer { tx, log_head }, WriterThread { handle }))
}

/// Most messages written in one transaction when several batches wait: a commit and the index
/// pages a batch dirties are shared by all of them (group commit).
const GROUP_MESSAGES: usize = 2000;

/// A batch waiting to be written in a group, and where its answer goes.
struct Queued {
    batch: Vec<Prepared>,
    stream: Option<Stream>,
    reply: oneshot::Sender<BatchResult>,
}

fn serve(
    mut ledger: Ledger,
    mut rx: mpsc::Receiver<Request>,
    log_head: tokio::sync::watch::Sender<i64>,
) {
    let mut stopped: VecDeque<Stream> = VecDeque::new();
    // A request taken from the channel while grouping writes, served next.
    let mut next: Option<Request> = None;
    let mut progress = Progress::new();
    loop {
        let Some(request) = next.take().or_else(|| rx.blocking_recv()) else {
            break;
        };
        match request {
            Request::Write {
                batch,
                stream,
                reply,
            } => {
                // The batches already waiting go in the same transaction.
                let mut group = vec![Queued {
                    batch,
                    stream,
                    reply,
                }];
                let mut messages = group[0].batch.len();
                while messages < GROUP_MESSAGES {
                    match rx.try_recv() {
                        Ok(Request::Write {
                            batch,
                            stream,
                            reply,
                        }) => {
                            messages += batch.len();
                            group.push(Queued {
                                batch,
                                stream,
                                reply,
                            });
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let started = std::time::Instant::now();
                write_group(&mut ledger, group, &mut stopped);
                progress.add(messages, started.elapsed());
            }
            Request::Resume { stream } => {
                stopped.retain(|s| *s != stream);
                continue;
            }
            Request::Call(job) => job(&mut ledger),
        }
        // What was just committed may have changed addresses: say so to whoever listens.
        match ledger.log_head() {
            Ok(head) => {
                log_head.send_if_modified(|h| {
                    let moved = *h != head;
                    *h = head;
                    moved
                });
            }
            Err(e) => tracing::warn!("could not read the change log's head: {e:#}"),
        }
    }
    progress.done();
}

/// The writer's own figures, logged at debug level: per 50,000 messages written, the wall time
/// since the previous mark and the time spent writing (per message), so that a long poll shows
/// whether the cost per message grows with the ledger (`bench/imap-poll.sh` reads them).
struct Progress {
    messages: usize,
    busy: std::time::Duration,
    mark: (std::time::Instant, usize, std::time::Duration),
}

const PROGRESS_EVERY: usize = 50_000;

impl Progress {
    fn new() -> Progress {
        Progress {
            messages: 0,
            busy: std::time::Duration::ZERO,
            mark: (std::time::Instant::now(), 0, std::time::Duration::ZERO),
        }
    }

    fn add(&mut self, messages: usize, busy: std::time::Duration) {
        self.messages += messages;
        self.busy += busy;
        if self.messages / PROGRESS_EVERY > self.mark.1 / PROGRESS_EVERY {
            let (at, from, busy_then) = self.mark;
            let n = (self.messages - from).max(1) as f64;
            tracing::debug!(
                from,
                to = self.messages,
                wall_us_per_message = (at.elapsed().as_secs_f64() * 1e6 / n) as u64,
                write_us_per_message = ((self.busy - busy_then).as_secs_f64() * 1e6 / n) as u64,
                "writer progress"
            );
            self.mark = (std::time::Instant::now(), self.messages, self.busy);
        }
    }

    fn done(&self) {
        if self.messages > 0 {
            tracing::debug!(
                messages = self.messages,
                write_us_per_message =
                    (self.busy.as_secs_f64() * 1e6 / self.messages as f64) as u64,
                "writer done"
            );
        }
    }
}

/// Writes batches in one transaction and answers each with its own outcomes. A batch of a
/// stopped stream is refused unwritten; a batch with a message that could not be stored stops
/// its stream. If the group cannot be written as a whole, its batches are written one by one,
/// so that one folder's bad message never fails another folder's batch.
fn write_group(ledger: &mut Ledger, group: Vec<Queued>, stopped: &mut VecDeque<Stream>) {
    let started = std::time::Instant::now();
    let (n, messages) = (
        group.len(),
        group.iter().map(|q| q.batch.len()).sum::<usize>(),
    );
    let open: Vec<Queued> = group
        .into_iter()
        .filter_map(|q| {
            if q.stream.as_ref().is_some_and(|s| stopped.contains(s)) {
                let _ = q.reply.send(Ok(q
                    .batch
                    .iter()
                    .map(|_| {
                        Err(anyhow::anyhow!(
                            "not stored: an earlier batch of its folder failed"
                        ))
                    })
                    .collect()));
                None
            } else {
                Some(q)
            }
        })
        .collect();
    if open.len() > 1 {
        let all: Vec<&Prepared> = open.iter().flat_map(|q| q.batch.iter()).collect();
        if let Ok(outcomes) = ledger.write_together(&all) {
            let mut outcomes = outcomes.into_iter();
            for q in open {
                let mine = outcomes.by_ref().take(q.batch.len()).map(Ok).collect();
                let _ = q.reply.send(Ok(mine));
            }
            tracing::debug!(
                messages,
                batches = n,
                write_ms = started.elapsed().as_millis() as u64,
                "batches written together"
            );
            return;
        }
    }
    for q in open {
        let result = if q.stream.as_ref().is_some_and(|s| stopped.contains(s)) {
            Ok(q.batch
                .iter()
                .map(|_| {
                    Err(anyhow::anyhow!(
                        "not stored: an earlier batch of its folder failed"
                    ))
                })
                .collect())
        } else {
            ledger.write(&q.batch)
        };
        let failed = match &result {
            Ok(outcomes) => outcomes.iter().any(Result::is_err),
            Err(_) => true,
        };
        if failed
            && let Some(s) = q.stream
            && !stopped.contains(&s)
        {
            stopped.push_back(s);
        }
        let _ = q.reply.send(result);
    }
    tracing::debug!(
        messages,
        batches = n,
        write_ms = started.elapsed().as_millis() as u64,
        "batches written"
    );
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
        self.call_blocking(move |l| l.known(&shas))
    }

    /// Where a folder's reading stands.
    pub async fn folder_state(
        &self,
        mailbox: &str,
        folder: &str,
    ) -> anyhow::Result<Option<FolderState>> {
        let (mailbox, folder) = (mailbox.to_string(), folder.to_string());
        self.call(move |l| l.folder_state(&mailbox, &folder)).await
    }

    /// Opens a `runs` row for a mailbox (`files` for `rebound ingest`).
    pub async fn start_run(&self, mailbox: &str) -> anyhow::Result<i64> {
        let mailbox = mailbox.to_string();
        self.call(move |l| l.start_run(&mailbox)).await
    }

    /// [`Writer::start_run`] from a thread outside any async runtime.
    pub fn start_run_blocking(&self, mailbox: &str) -> anyhow::Result<i64> {
        let mailbox = mailbox.to_string();
        self.call_blocking(move |l| l.start_run(&mailbox))
    }

    /// Opens a `runs` row for one folder of a mailbox (a `watch` folder task).
    pub async fn start_folder_run(&self, mailbox: &str, folder: &str) -> anyhow::Result<i64> {
        let (mailbox, folder) = (mailbox.to_string(), folder.to_string());
        self.call(move |l| l.start_folder_run(&mailbox, Some(&folder)))
            .await
    }

    /// Closes a `runs` row with its summary.
    pub async fn finish_run(&self, id: i64, summary: RunSummary) -> anyhow::Result<()> {
        self.call(move |l| l.finish_run(id, &summary)).await
    }

    /// [`Writer::finish_run`] from a thread outside any async runtime.
    pub fn finish_run_blocking(&self, id: i64, summary: RunSummary) -> anyhow::Result<()> {
        self.call_blocking(move |l| l.finish_run(id, &summary))
    }

    /// Closes a `runs` row because its process is stopping (see [`Ledger::stop_run`]).
    pub async fn stop_run(&self, id: i64, summary: RunSummary) -> anyhow::Result<()> {
        self.call(move |l| l.stop_run(id, &summary)).await
    }

    /// Records that a run read everything fine just now (see [`Ledger::heartbeat`]).
    pub async fn heartbeat(&self, id: i64) -> anyhow::Result<()> {
        self.call(move |l| l.heartbeat(id)).await
    }

    /// See [`Ledger::sync_every_commit`].
    pub fn sync_every_commit_blocking(&self, yes: bool) -> anyhow::Result<()> {
        self.call_blocking(move |l| l.sync_every_commit(yes))
    }

    /// The id of the newest row of the ledger's change log, updated after every commit: wait
    /// on it (`changed()`) to hear of new changes of addresses.
    pub fn log_head(&self) -> tokio::sync::watch::Receiver<i64> {
        self.log_head.clone()
    }

    /// Runs `f` on the writer thread, after everything queued before it, and returns what it
    /// returns: the one way to the ledger besides batches.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Ledger) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let (job, rx) = job(f);
        self.tx
            .send(Request::Call(job))
            .await
            .map_err(|_| stopped())?;
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// [`Writer::call`] from a thread outside any async runtime.
    pub fn call_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Ledger) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let (job, rx) = job(f);
        self.tx
            .blocking_send(Request::Call(job))
            .map_err(|_| stopped())?;
        rx.blocking_recv().unwrap_or_else(|_| Err(stopped()))
    }
}

/// A job that answers on its own channel.
fn job<T: Send + 'static>(
    f: impl FnOnce(&mut Ledger) -> anyhow::Result<T> + Send + 'static,
) -> (Job, oneshot::Receiver<anyhow::Result<T>>) {
    let (reply, rx) = oneshot::channel();
    let job: Job = Box::new(move |l| {
        let _ = reply.send(f(l));
    });
    (job, rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{Message, prepare};
    use crate::ledger::{Origin, Policy};

    fn batch(folder: &str, uids: std::ops::Range<u32>) -> Vec<Prepared> {
        let messages = uids
            .map(|uid| {
                let raw = format!(
                    "From: MAILER-DAEMON@mx.example.net\r\nTo: bounces@example.com\r\n\
                     Subject: Undelivered Mail Returned to Sender\r\n\
                     Message-ID: <{folder}-{uid}@mx.example.net>\r\n\r\n\
                     <gone{uid}@example.org>: host mx.example.org said: 550 5.1.1 \
                     <gone{uid}@example.org>: Recipient address rejected: User unknown\r\n"
                );
                Message::new(raw.into_bytes(), Origin::imap("box", folder, 7, uid, None))
            })
            .collect();
        prepare(
            messages,
            &crate::analysis::Settings::new(crate::config::builtin_rules()),
        )
    }

    fn queued(folder: &str, b: Vec<Prepared>) -> (Queued, oneshot::Receiver<BatchResult>) {
        let (reply, rx) = oneshot::channel();
        let q = Queued {
            batch: b,
            stream: Some(("box".to_string(), folder.to_string())),
            reply,
        };
        (q, rx)
    }

    fn stored(result: BatchResult) -> Vec<bool> {
        result.unwrap().iter().map(Result::is_ok).collect()
    }

    /// Batches written together answer each their own, and a folder whose message cannot be
    /// stored stops only that folder: the other folders' batches of the same group are stored,
    /// an empty batch is answered, and the stopped folder's next batch is refused unwritten.
    #[test]
    fn a_group_with_one_bad_folder_stores_the_others_and_stops_only_that_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let mut ledger = Ledger::open(&path, Policy::default(), "test").unwrap();
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN NEW.folder = 'Bad' \
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
            )
            .unwrap();
        let mut stopped = VecDeque::new();
        let (a, a_rx) = queued("Good", batch("Good", 1..4));
        let (b, b_rx) = queued("Bad", batch("Bad", 1..3));
        let (c, c_rx) = queued("Good", batch("Good", 4..5));
        let (d, d_rx) = queued("Empty", Vec::new());
        write_group(&mut ledger, vec![a, b, c, d], &mut stopped);
        assert_eq!(stored(a_rx.blocking_recv().unwrap()), [true, true, true]);
        assert_eq!(stored(b_rx.blocking_recv().unwrap()), [false, false]);
        assert_eq!(stored(c_rx.blocking_recv().unwrap()), [true]);
        assert!(stored(d_rx.blocking_recv().unwrap()).is_empty());
        assert_eq!(
            stopped,
            [("box".to_string(), "Bad".to_string())],
            "only the bad folder is stopped"
        );
        assert_eq!(
            ledger
                .folder_state("box", "Good")
                .unwrap()
                .unwrap()
                .last_uid,
            4
        );
        assert!(ledger.folder_state("box", "Bad").unwrap().is_none());

        // The stopped folder's next batch is refused before it reaches SQLite (the trigger
        // is gone, so only the stop can refuse it); the others go on being written together.
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("DROP TRIGGER refuse;")
            .unwrap();
        let (b, b_rx) = queued("Bad", batch("Bad", 3..4));
        let (c, c_rx) = queued("Good", batch("Good", 5..7));
        write_group(&mut ledger, vec![b, c], &mut stopped);
        assert_eq!(stored(b_rx.blocking_recv().unwrap()), [false]);
        assert_eq!(stored(c_rx.blocking_recv().unwrap()), [true, true]);
        assert!(ledger.folder_state("box", "Bad").unwrap().is_none());
        assert_eq!(
            ledger
                .folder_state("box", "Good")
                .unwrap()
                .unwrap()
                .last_uid,
            6
        );
    }
}
