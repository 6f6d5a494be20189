//! One poll of one mailbox: connect, log in, read every configured folder, apply the action,
//! log out. Failures drop the session and retry with backoff; a message that keeps breaking the
//! session is recorded as `unparsed` and skipped instead of blocking the mailbox forever.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_imap::types::{Fetch, Flag};

use super::action::{self, Capabilities, Folders};
use super::auth;
use super::config::MailboxConfig;
use super::connect::{self, Session, timed};
use super::fetch;
use super::folder_name;
use super::sink::{Sink, Submitted};
use crate::analysis::Settings;
use crate::analysis::{Kind, Label};
use crate::ingest::{self, Message};
use crate::ledger::{Origin, Outcome};

/// What one poll of one mailbox did: the line printed per mailbox (`cli::summary`) and the
/// `runs` row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxReport {
    pub mailbox: String,
    /// The folder, when the report covers one folder of the mailbox (a `watch` task).
    pub folder: Option<String>,
    /// Messages stored for the first time.
    pub new: u64,
    /// Messages seen again (already in the ledger): not counted twice.
    pub duplicates: u64,
    /// New messages per kind.
    pub kinds: HashMap<Kind, u64>,
    /// Bounced recipients of new messages, per label (forged ones left out).
    pub labels: BTreeMap<Label, u64>,
    /// Recipients of new messages stored as forged (counted against nothing).
    pub forged: u64,
    /// Oversized messages recorded by their header only.
    pub oversized: u64,
    /// Problems met; the mailbox may still have been read completely (see `failed`).
    pub errors: Vec<String>,
    /// The mailbox could not be read to the end (unreachable, refused, kept failing).
    pub failed: bool,
}

impl MailboxReport {
    pub fn new(mailbox: &str) -> Self {
        MailboxReport {
            mailbox: mailbox.to_string(),
            ..Default::default()
        }
    }

    /// The same report, naming the one folder it covers.
    pub fn in_folder(self, folder: &str) -> Self {
        MailboxReport {
            folder: Some(folder.to_string()),
            ..self
        }
    }

    pub fn kind(&self, kind: Kind) -> u64 {
        self.kinds.get(&kind).copied().unwrap_or(0)
    }

    fn count(&mut self, stored: &Outcome) {
        if stored.duplicate {
            self.duplicates += 1;
            return;
        }
        self.new += 1;
        *self.kinds.entry(stored.kind).or_default() += 1;
        for l in &stored.labels {
            *self.labels.entry(*l).or_default() += 1;
        }
        self.forged += stored.forged as u64;
    }
}

/// Options of one poll.
#[derive(Debug, Clone, Default)]
pub struct PollOptions {
    /// Read and classify only: EXAMINE instead of SELECT, no action, nothing stored.
    pub dry_run: bool,
}

/// A message that broke the session twice in a row at the same place is "poison".
#[derive(Debug, Default)]
struct Poison {
    /// The message being read when the last session failed.
    last_failure: Option<(String, u32)>,
    /// Messages to record as `unparsed` instead of fetching their body again.
    uids: HashSet<(String, u32)>,
    last_error: String,
}

/// The state of one mailbox across sessions: `poll` uses it for one run with retries, `watch`
/// for its whole life.
pub struct Worker {
    cfg: MailboxConfig,
    sink: Sink,
    settings: Settings,
    opts: PollOptions,
    poison: Poison,
    /// The message a failure of the current session is blamed on.
    position: Option<(String, u32)>,
    /// Fires once the batch started last is queued for the writer (the next one waits for it).
    queued: Option<tokio::sync::oneshot::Receiver<()>>,
    pub report: MailboxReport,
}

impl Worker {
    pub fn new(cfg: MailboxConfig, sink: Sink, settings: Settings, opts: PollOptions) -> Worker {
        let report = MailboxReport::new(&cfg.name);
        Worker {
            cfg,
            sink,
            settings,
            opts,
            poison: Poison::default(),
            position: None,
            queued: None,
            report,
        }
    }

    pub fn config(&self) -> &MailboxConfig {
        &self.cfg
    }

    /// Hands back the report so far and starts a new one.
    pub fn take_report(&mut self) -> MailboxReport {
        std::mem::replace(&mut self.report, MailboxReport::new(&self.cfg.name))
    }

    /// Reads every configured folder over an open session.
    pub async fn sync(
        &mut self,
        session: &mut Session,
        caps: Capabilities,
        folders: &mut Folders,
    ) -> anyhow::Result<()> {
        self.position = None;
        for folder in self.cfg.folders() {
            self.sync_folder(session, caps, folders, &folder)
                .await
                .with_context(|| format!("folder {folder}"))?;
        }
        Ok(())
    }

    /// Notes a failed session. Returns false when retrying is pointless (authentication).
    pub fn failed(&mut self, e: &anyhow::Error) -> bool {
        let msg = format!("{e:#}");
        self.report.errors.push(msg.clone());
        self.report.failed = true;
        if auth::AuthError::is_in(e) {
            return false;
        }
        let position = self.position.take();
        if position.is_some() && position == self.poison.last_failure {
            tracing::warn!(mailbox = %self.cfg.name, at = ?position, "message keeps failing: it will be recorded as unparsed");
            self.poison.uids.insert(position.clone().unwrap());
        }
        self.poison.last_failure = position;
        self.poison.last_error = msg;
        true
    }

    /// One complete session: connect, log in, sync, log out.
    pub async fn session(&mut self) -> anyhow::Result<()> {
        let mut session = open(&self.cfg).await?;
        let caps = Capabilities::query(&mut session, self.cfg.timeout()).await?;
        let mut folders = Folders::default();
        self.sync(&mut session, caps, &mut folders).await?;
        let _ = timed(
            Duration::from_secs(5).min(self.cfg.timeout()),
            "LOGOUT",
            session.logout(),
        )
        .await;
        Ok(())
    }

    async fn sync_folder(
        &mut self,
        session: &mut Session,
        caps: Capabilities,
        folders: &mut Folders,
        folder: &str,
    ) -> anyhow::Result<()> {
        let cfg = &self.cfg.clone();
        let limit = cfg.timeout();
        let wire = folder_name::encode(folder);
        let mb = if self.opts.dry_run {
            timed(limit, &format!("EXAMINE {folder}"), session.examine(&wire)).await?
        } else {
            timed(limit, &format!("SELECT {folder}"), session.select(&wire)).await?
        };
        let Some(uidvalidity) = mb.uid_validity else {
            bail!("the server sent no UIDVALIDITY for {folder}")
        };
        let progress = self.sink.folder_state(&cfg.name, folder).await?;
        let stream = (cfg.name.clone(), folder.to_string());
        // A new session: whatever stopped this folder's batches in an earlier one is over.
        self.sink.resume(stream.clone()).await;
        let last_uid = match progress {
            Some(p) if p.uidvalidity == uidvalidity => p.last_uid,
            Some(p) => {
                tracing::warn!(mailbox = %cfg.name, folder, old = p.uidvalidity, new = uidvalidity, "UIDVALIDITY changed: re-scanning the folder");
                0
            }
            None => 0,
        };
        let kw = cfg.keyword.as_str();
        let keywords = mb
            .permanent_flags
            .iter()
            .any(|f| matches!(f, Flag::MayCreate) || matches!(f, Flag::Custom(c) if c == kw))
            || mb
                .flags
                .iter()
                .any(|f| matches!(f, Flag::Custom(c) if c == kw));
        let plan = fetch::plan(last_uid, mb.uid_next, keywords.then_some(kw));
        let (uids, sizes) = fetch::candidates(session, &plan, limit).await?;
        let large: HashSet<u32> = uids
            .iter()
            .copied()
            .filter(|u| sizes.get(u).is_some_and(|&s| s > cfg.max_message_bytes))
            .collect();
        let batches = fetch::batches(&uids, &sizes, &large, cfg.batch_size, cfg.batch_bytes);
        tracing::info!(mailbox = %cfg.name, folder, uidvalidity, last_uid, candidates = uids.len(), oversized = large.len(), batches = batches.len(), "search done");

        // A pipeline: batch k+1 is fetched and prepared (analysed, compressed) while batch k is
        // written by the writer thread; batch k's action is applied only once it is committed,
        // while batch k+1 is being written. Batches of a folder are written in UID order, and
        // one that fails stops those queued behind it, so the ledger and the watermark always
        // run ahead of the action, never behind it. At most IN_FLIGHT batches, and at most two
        // batches' worth of bytes, are held at once: before a batch is fetched, the oldest ones
        // are retired (waited for and acted on) until it fits, so a mailbox of huge messages
        // holds one of them at a time.
        let budget = cfg.batch_bytes.saturating_mul(2);
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        for batch in &batches {
            let bytes = fetch::batch_cost(batch, &sizes, &large, cfg.batch_size, cfg.batch_bytes);
            while !in_flight.is_empty()
                && (in_flight.len() >= IN_FLIGHT
                    || in_flight.iter().map(|b| b.bytes).sum::<u64>() + bytes > budget)
            {
                self.retire(
                    &mut in_flight,
                    session,
                    cfg,
                    caps,
                    folders,
                    keywords,
                    folder,
                )
                .await?;
            }
            let mut fetched = Batch::default();
            let started = Instant::now();
            let result = self
                .fetch_batch(session, batch, &large, folder, uidvalidity, &mut fetched)
                .await;
            tracing::debug!(
                messages = batch.len(),
                bytes,
                fetch_ms = started.elapsed().as_millis() as u64,
                in_flight = in_flight.len(),
                "batch fetched"
            );
            if let Err(e) = result {
                // Keep what was read before the failure: the retry starts after it.
                let position = self.position.take();
                let partial = self.start(fetched, bytes, &stream);
                in_flight.push_back(partial);
                self.drain(&mut in_flight, folder).await?;
                self.position = position;
                return Err(e);
            }
            self.position = None;
            let next = self.start(fetched, bytes, &stream);
            in_flight.push_back(next);
        }
        while !in_flight.is_empty() {
            self.retire(
                &mut in_flight,
                session,
                cfg,
                caps,
                folders,
                keywords,
                folder,
            )
            .await?;
        }
        Ok(())
    }

    /// Waits for the oldest batch in flight to be stored, counts it and applies the action to
    /// it. On a failure, every batch still in flight is waited for and counted before the
    /// error is returned (see [`Worker::drain`]).
    #[allow(clippy::too_many_arguments)]
    async fn retire(
        &mut self,
        in_flight: &mut VecDeque<InFlight>,
        session: &mut Session,
        cfg: &MailboxConfig,
        caps: Capabilities,
        folders: &mut Folders,
        keywords: bool,
        folder: &str,
    ) -> anyhow::Result<()> {
        let Some(oldest) = in_flight.pop_front() else {
            return Ok(());
        };
        let started = Instant::now();
        let done = match self.finish(oldest, folder).await {
            Ok(done) => done,
            Err(e) => {
                let position = self.position.take();
                let _ = self.drain(in_flight, folder).await;
                self.position = position;
                return Err(e);
            }
        };
        let stored_at = Instant::now();
        if !self.opts.dry_run
            && let Err(e) = action::apply(session, cfg, caps, folders, &done, keywords).await
        {
            // The batches behind may be committing already: wait for them and count what they
            // stored, so that the report and the `runs` row match the ledger. The failure is
            // the action's, so no message is blamed for it.
            let _ = self.drain(in_flight, folder).await;
            self.position = None;
            return Err(e).with_context(|| format!("applying action {:?}", cfg.action));
        }
        tracing::debug!(
            messages = done.len(),
            wait_ms = (stored_at - started).as_millis() as u64,
            action_ms = stored_at.elapsed().as_millis() as u64,
            "batch stored and acted on"
        );
        Ok(())
    }

    /// Waits for every batch still in flight and counts what each stored, so that the report
    /// and the `runs` row match the ledger whatever stopped the folder; returns the first
    /// failure among them.
    async fn drain(
        &mut self,
        in_flight: &mut VecDeque<InFlight>,
        folder: &str,
    ) -> anyhow::Result<()> {
        let mut first = Ok(());
        let mut blamed = None;
        while let Some(b) = in_flight.pop_front() {
            if let Err(e) = self.finish(b, folder).await
                && first.is_ok()
            {
                first = Err(e);
                blamed = self.position.clone();
            }
        }
        if first.is_err() {
            self.position = blamed;
        }
        first
    }

    /// Fetches one batch into `out`, in UID order; poison messages go in as failed ones.
    async fn fetch_batch(
        &mut self,
        session: &mut Session,
        batch: &[u32],
        large: &HashSet<u32>,
        folder: &str,
        uidvalidity: u32,
        out: &mut Batch,
    ) -> anyhow::Result<()> {
        let cfg = &self.cfg;
        let limit = cfg.timeout();
        for (header_only, run) in fetch::runs(batch, large) {
            let mut pending: &[u32] = &run;
            while let Some(&first) = pending.first() {
                let key = (folder.to_string(), first);
                // A poison message is recorded from what little is known, then skipped.
                if self.poison.uids.contains(&key) {
                    let error = format!(
                        "skipped after repeated failures: {}",
                        self.poison.last_error
                    );
                    out.notes.push(Note::Poison(error.clone()));
                    out.uids.push(first);
                    out.fetched.push(Message::failed(
                        Vec::new(),
                        Origin::imap(&cfg.name, folder, uidvalidity, first, None),
                        error,
                    ));
                    pending = &pending[1..];
                    continue;
                }
                // Fetch up to the next poison message.
                let mut end = pending
                    .iter()
                    .position(|&u| self.poison.uids.contains(&(folder.to_string(), u)))
                    .unwrap_or(pending.len());
                // After a failed session, one message per FETCH: the next failure is then
                // blamed on the message that caused it, not on the first of a batch.
                if self.poison.last_failure.is_some() {
                    end = 1;
                }
                let (now, rest) = pending.split_at(end);
                self.position = Some(key);
                let mut seen = HashSet::new();
                let position = &mut self.position;
                fetch::fetch_run(session, now, header_only, limit, |f| {
                    let Some(uid) = f.uid else { return Ok(()) };
                    if now.binary_search(&uid).is_err() || !seen.insert(uid) {
                        return Ok(()); // an unsolicited FETCH (a flag change): not an answer
                    }
                    out.uids.push(uid);
                    out.fetched
                        .push(fetched(&f, uid, header_only, cfg, folder, uidvalidity));
                    out.notes.push(if header_only {
                        Note::Oversized
                    } else {
                        Note::None
                    });
                    // The next message is the one a failure would be blamed on.
                    *position = now
                        .iter()
                        .find(|&&u| u > uid)
                        .map(|&u| (folder.to_string(), u));
                    Ok(())
                })
                .await?;
                pending = rest;
            }
        }
        Ok(())
    }

    /// Starts preparing a fetched batch on the analysis threads (in a task of its own, so
    /// that the next fetch and the oldest batch's action run meanwhile) and then queueing it
    /// for the writer, after the batch started before it: batches reach the writer in order.
    fn start(&mut self, batch: Batch, bytes: u64, stream: &ingest::Stream) -> InFlight {
        let Batch {
            fetched,
            uids,
            notes,
        } = batch;
        let (settings, sink, stream) = (self.settings.clone(), self.sink.clone(), stream.clone());
        let before = self.queued.take();
        let (queued, queued_rx) = tokio::sync::oneshot::channel::<()>();
        self.queued = Some(queued_rx);
        let task = tokio::spawn(async move {
            let prepared = tokio::task::spawn_blocking(move || ingest::prepare(fetched, &settings))
                .await
                .map_err(|e| anyhow::anyhow!("preparing a batch failed: {e}"));
            if let Some(before) = before {
                let _ = before.await;
            }
            let submitted = match prepared {
                Ok(prepared) => Ok(sink.submit(prepared, stream).await),
                Err(e) => Err(e),
            };
            let _ = queued.send(());
            submitted
        });
        InFlight {
            task,
            uids,
            notes,
            bytes,
        }
    }

    /// Waits for a batch to be stored and counts it; returns what its action applies to. The
    /// first message that could not be stored fails the session (and is blamed for it).
    async fn finish(
        &mut self,
        in_flight: InFlight,
        folder: &str,
    ) -> anyhow::Result<Vec<(u32, Kind)>> {
        let InFlight {
            task, uids, notes, ..
        } = in_flight;
        let submitted = task
            .await
            .map_err(|e| anyhow::anyhow!("a batch's preparation ended abnormally: {e}"))??;
        let results = submitted.wait().await?;
        let mut done = Vec::with_capacity(results.len());
        for ((uid, note), result) in uids.into_iter().zip(notes).zip(results) {
            let stored = match result {
                Ok(stored) => stored,
                Err(e) => {
                    self.position = Some((folder.to_string(), uid));
                    return Err(e);
                }
            };
            self.report.count(&stored);
            match note {
                Note::None => {}
                Note::Oversized => self.report.oversized += 1,
                Note::Poison(error) => self
                    .report
                    .errors
                    .push(format!("{folder} uid {uid}: {error}")),
            }
            done.push((uid, stored.kind));
        }
        Ok(done)
    }
}

/// Batches started and not yet waited for: one being prepared, one queued for the writer, one
/// being written, so that neither the analysis threads nor the writer wait for the next fetch
/// (or for the server to apply an action).
const IN_FLIGHT: usize = 3;

/// What a fetched batch holds, in UID order.
#[derive(Default)]
struct Batch {
    fetched: Vec<Message>,
    uids: Vec<u32>,
    notes: Vec<Note>,
}

/// Why a message of a batch is stored as failed, for the report.
enum Note {
    None,
    Oversized,
    Poison(String),
}

/// A batch being prepared and handed to the sink, with what its outcomes are counted against.
struct InFlight {
    task: tokio::task::JoinHandle<anyhow::Result<Submitted>>,
    uids: Vec<u32>,
    notes: Vec<Note>,
    /// What the batch was expected to hold when it was fetched (see [`fetch::batch_cost`]).
    bytes: u64,
}

/// Polls one mailbox, retrying with backoff up to `attempts` times. Never returns an error: the
/// report says what happened, so one bad mailbox cannot stop the others.
pub async fn poll_mailbox(
    cfg: &MailboxConfig,
    sink: Sink,
    settings: Settings,
    opts: &PollOptions,
) -> MailboxReport {
    let mut worker = Worker::new(cfg.clone(), sink, settings, opts.clone());
    let attempts = cfg.attempts.max(1);
    let mut attempt = 0;
    let mut budget = attempts;
    while attempt < budget {
        attempt += 1;
        match worker.session().await {
            Ok(()) => {
                worker.report.failed = false;
                break;
            }
            Err(e) => {
                let poisoned = worker.poison.uids.len();
                if !worker.failed(&e) {
                    tracing::debug!("attempt {attempt}/{budget} failed, not retried: {e:#}");
                    break;
                }
                // A message just found to be poison earns one more attempt, to record it and
                // move past it in this run (the poison list is not kept between runs).
                if worker.poison.uids.len() > poisoned && budget < attempts + 8 {
                    budget += 1;
                }
                // The final failure is printed once, by the caller; the ones retried are
                // details (`-v`).
                if attempt < budget {
                    let wait = backoff(attempt);
                    tracing::info!(
                        "attempt {attempt}/{budget} failed, retrying in {} s: {e:#}",
                        wait.as_secs()
                    );
                    tokio::time::sleep(wait).await;
                } else {
                    tracing::debug!("attempt {attempt}/{budget} failed: {e:#}");
                }
            }
        }
    }
    worker.take_report()
}

/// 1 s, 2 s, 4 s ... capped at 5 minutes.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(9)).min(Duration::from_secs(300))
}

/// Connects and logs in.
pub async fn open(cfg: &MailboxConfig) -> anyhow::Result<Session> {
    let client = connect::connect(cfg).await?;
    auth::login(client, cfg).await
}

/// A fetched message as the pipeline takes it: the whole message, or its header only (too
/// large, or the server sent no body) to be stored as `unparsed` with the reason.
fn fetched(
    f: &Fetch,
    uid: u32,
    header_only: bool,
    cfg: &MailboxConfig,
    folder: &str,
    uidvalidity: u32,
) -> Message {
    let origin = Origin::imap(
        &cfg.name,
        folder,
        uidvalidity,
        uid,
        f.internal_date().map(|d| d.to_rfc3339()),
    );
    let header = || f.header().unwrap_or_default().to_vec();
    if header_only {
        let size = f.size.map(|s| s.to_string()).unwrap_or_else(|| "?".into());
        let error = format!(
            "message of {size} bytes exceeds max_message_bytes = {}: only its header was stored",
            cfg.max_message_bytes
        );
        return Message::failed(header(), origin, error);
    }
    match f.body() {
        Some(raw) => Message::new(raw.to_vec(), origin),
        None => Message::failed(
            header(),
            origin,
            "the server returned no body for this message",
        ),
    }
}
