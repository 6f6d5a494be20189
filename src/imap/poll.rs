//! One poll of one mailbox: connect, log in, read every configured folder, apply the action,
//! log out. Failures drop the session and retry with backoff; a message that keeps breaking the
//! session is recorded as `unparsed` and skipped instead of blocking the mailbox forever.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_imap::types::{Fetch, Flag};

use super::action::{self, Capabilities, Folders};
use super::auth;
use super::config::MailboxConfig;
use super::connect::{self, Session, timed};
use super::fetch;
use super::folder_name;
use super::store::{self, Fetched, MessageOrigin, Store, Stored};
use crate::analysis::{Kind, Label};

/// The store shared by the tasks of one run (SQLite writes are serialised anyway).
pub type SharedStore = Arc<Mutex<dyn Store>>;

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
    /// Bounced recipients of new messages, per label.
    pub labels: BTreeMap<Label, u64>,
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

    fn count(&mut self, stored: &Stored) {
        if stored.duplicate {
            self.duplicates += 1;
            return;
        }
        self.new += 1;
        *self.kinds.entry(stored.kind).or_default() += 1;
        for l in &stored.labels {
            *self.labels.entry(*l).or_default() += 1;
        }
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
    store: SharedStore,
    opts: PollOptions,
    poison: Poison,
    /// The message a failure of the current session is blamed on.
    position: Option<(String, u32)>,
    pub report: MailboxReport,
}

impl Worker {
    pub fn new(cfg: MailboxConfig, store: SharedStore, opts: PollOptions) -> Worker {
        let report = MailboxReport::new(&cfg.name);
        Worker {
            cfg,
            store,
            opts,
            poison: Poison::default(),
            position: None,
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
        if is_auth_failure(e) {
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
        let progress = self
            .store
            .lock()
            .unwrap()
            .folder_progress(&cfg.name, folder)?;
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
        let (uids, large) = fetch::candidates(session, &plan, cfg.max_message_bytes, limit).await?;
        tracing::info!(mailbox = %cfg.name, folder, uidvalidity, last_uid, candidates = uids.len(), oversized = large.len(), "search done");

        // A pipeline: batch k+1 is analysed as soon as it is fetched, while batch k is written;
        // it is written (on its own thread, while batch k's action runs and batch k+2 is
        // fetched) only once batch k is committed. So the ledger and the watermark always run
        // ahead of the action, never behind it, and batches are written in UID order.
        let mut ingesting: Option<Ingesting> = None;
        for batch in uids.chunks(cfg.batch_size.max(1)) {
            let mut fetched = Batch::default();
            let started = Instant::now();
            let result = self
                .fetch_batch(session, batch, &large, folder, uidvalidity, &mut fetched)
                .await;
            let fetched_at = Instant::now();
            if let Err(e) = result {
                // Keep what was read before the failure: the retry starts after it.
                let position = self.position.take();
                if let Some(previous) = ingesting.take() {
                    self.finish(previous, folder)?;
                }
                let partial = self.start(fetched);
                partial.go();
                self.finish(partial, folder)?;
                self.position = position;
                return Err(e);
            }
            let next = self.start(fetched);
            let done = ingesting
                .take()
                .map(|previous| self.finish(previous, folder))
                .transpose()?;
            self.position = None;
            let finished_at = Instant::now();
            // The previous batch is committed: this one may be written while the previous
            // one's action runs (each batch is still stored before its own action).
            next.go();
            if let Some(done) = done
                && !self.opts.dry_run
                && let Err(e) = action::apply(session, cfg, caps, folders, &done, keywords).await
            {
                // This batch may be committing already: wait for it and count what it stored,
                // so that the report and the `runs` row match the ledger. The failure is the
                // action's, so no message is blamed for it.
                let _ = self.finish(next, folder);
                self.position = None;
                return Err(e).with_context(|| format!("applying action {:?}", cfg.action));
            }
            tracing::debug!(
                messages = batch.len(),
                fetch_ms = (fetched_at - started).as_millis() as u64,
                wait_ms = (finished_at - fetched_at).as_millis() as u64,
                action_ms = finished_at.elapsed().as_millis() as u64,
                "batch fetched, previous one stored and acted on"
            );
            ingesting = Some(next);
        }
        if let Some(last) = ingesting.take() {
            let done = self.finish(last, folder)?;
            if !self.opts.dry_run {
                action::apply(session, cfg, caps, folders, &done, keywords)
                    .await
                    .with_context(|| format!("applying action {:?}", cfg.action))?;
            }
        }
        Ok(())
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
                    out.fetched.push(Fetched {
                        origin: MessageOrigin {
                            mailbox: cfg.name.clone(),
                            folder: folder.to_string(),
                            uidvalidity,
                            uid: first,
                            internal_date: None,
                        },
                        raw: Vec::new(),
                        failed: Some(error),
                    });
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

    /// Starts analysing a fetched batch on its own thread; it is written once [`Ingesting::go`]
    /// says so, and not at all when the go-ahead is dropped instead (an earlier batch failed:
    /// the watermark must not pass it).
    fn start(&self, batch: Batch) -> Ingesting {
        let store = self.store.clone();
        let Batch { fetched, notes } = batch;
        let uids = fetched.iter().map(|f| f.origin.uid).collect();
        let n = fetched.len();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ledger-batch".into())
            .spawn(move || {
                let started = Instant::now();
                let analysed = store::analyse(&fetched);
                let analysed_at = Instant::now();
                if wait.recv().is_err() {
                    return fetched
                        .iter()
                        .map(|_| {
                            Err(anyhow::anyhow!(
                                "not stored: an earlier batch of its folder failed"
                            ))
                        })
                        .collect();
                }
                let go_at = Instant::now();
                let results = store.lock().unwrap().ingest_analysed(&fetched, &analysed);
                // Where a batch's time goes (`RUST_LOG=rebound::imap::poll=debug`): analysis, waiting
                // for the previous batch's commit and action, writing.
                tracing::debug!(
                    messages = fetched.len(),
                    analysis_ms = (analysed_at - started).as_millis() as u64,
                    wait_ms = (go_at - analysed_at).as_millis() as u64,
                    write_ms = go_at.elapsed().as_millis() as u64,
                    "batch stored"
                );
                results
            });
        let thread = match thread {
            Ok(thread) => thread,
            Err(e) => {
                // Nothing was started: the batch fails as a whole, and the session with it.
                let error = format!("could not start the ledger thread: {e}");
                std::thread::spawn(move || {
                    (0..n).map(|_| Err(anyhow::anyhow!("{error}"))).collect()
                })
            }
        };
        Ingesting {
            thread,
            go: Some(go),
            uids,
            notes,
        }
    }

    /// Waits for a batch to be stored and counts it; returns what its action applies to. The
    /// first message that could not be stored fails the session (and is blamed for it).
    fn finish(&mut self, ingesting: Ingesting, folder: &str) -> anyhow::Result<Vec<(u32, Kind)>> {
        let Ingesting {
            thread,
            go,
            uids,
            notes,
        } = ingesting;
        if let Some(go) = go {
            let _ = go.send(());
        }
        let results = thread
            .join()
            .map_err(|_| anyhow::anyhow!("the ledger writer panicked"))?;
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

/// What a fetched batch holds, in UID order.
#[derive(Default)]
struct Batch {
    fetched: Vec<Fetched>,
    notes: Vec<Note>,
}

impl Ingesting {
    /// Everything before this batch is committed: it may be written.
    fn go(&self) {
        if let Some(go) = &self.go {
            let _ = go.send(());
        }
    }
}

/// Why a message of a batch is stored as failed, for the report.
enum Note {
    None,
    Oversized,
    Poison(String),
}

/// A batch being analysed, then stored, by its own thread.
struct Ingesting {
    thread: std::thread::JoinHandle<Vec<anyhow::Result<Stored>>>,
    /// The go-ahead to write, once everything before the batch is committed.
    go: Option<std::sync::mpsc::Sender<()>>,
    uids: Vec<u32>,
    notes: Vec<Note>,
}

/// Polls one mailbox, retrying with backoff up to `attempts` times. Never returns an error: the
/// report says what happened, so one bad mailbox cannot stop the others.
pub async fn poll_mailbox(
    cfg: &MailboxConfig,
    store: SharedStore,
    opts: &PollOptions,
) -> MailboxReport {
    let mut worker = Worker::new(cfg.clone(), store, opts.clone());
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

/// Authentication failures are not retried: a wrong secret does not fix itself, and retrying
/// only risks a lockout.
pub fn is_auth_failure(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        let s = c.to_string();
        s.starts_with("authentication failed") || s.contains("(password_env) is not set")
    })
}

/// Connects and logs in.
pub async fn open(cfg: &MailboxConfig) -> anyhow::Result<Session> {
    let client = connect::connect(cfg).await?;
    auth::login(client, cfg).await
}

/// A fetched message as the store takes it: the whole message, or its header only (too large,
/// or the server sent no body) to be stored as `unparsed` with the reason.
fn fetched(
    f: &Fetch,
    uid: u32,
    header_only: bool,
    cfg: &MailboxConfig,
    folder: &str,
    uidvalidity: u32,
) -> Fetched {
    let origin = MessageOrigin {
        mailbox: cfg.name.clone(),
        folder: folder.to_string(),
        uidvalidity,
        uid,
        internal_date: f.internal_date().map(|d| d.to_rfc3339()),
    };
    let header = || f.header().unwrap_or_default().to_vec();
    if header_only {
        let size = f.size.map(|s| s.to_string()).unwrap_or_else(|| "?".into());
        let error = format!(
            "message of {size} bytes exceeds max_message_bytes = {}: only its header was stored",
            cfg.max_message_bytes
        );
        return Fetched {
            origin,
            raw: header(),
            failed: Some(error),
        };
    }
    match f.body() {
        Some(raw) => Fetched {
            origin,
            raw: raw.to_vec(),
            failed: None,
        },
        None => Fetched {
            origin,
            raw: header(),
            failed: Some("the server returned no body for this message".into()),
        },
    }
}
