//! The ledger: a SQLite history of every inbound message and every verdict in it, projected
//! under a [`Policy`] onto per-address state and per-domain pauses.
//!
//! One path from message to ledger: `rebound ingest` (files) and the IMAP worker both call
//! [`Ledger::ingest`]. Each message is one transaction: the raw bytes, its events, the
//! recomputed projection of the addresses and domains it touched, and (for IMAP) the folder's
//! UID high-water mark land together or not at all. A crash at any point followed by a rerun
//! leaves the ledger as if there had been no crash, because the rerun's duplicates are
//! recognised by the sha256 of their bytes (or their IMAP UID) and change nothing.
//!
//! Evidence is never lost: the raw bytes are kept, a message the analysis cannot read is kept
//! as `unparsed` with its error, and `reclassify` re-derives every event from the bytes.

pub mod policy;
pub mod projection;
pub mod schema;
pub mod span;
pub mod time;

mod reclassify;
mod run;
mod workers;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};

use crate::analysis::{self, Analysis, Kind, Label};

pub use policy::{Policy, State, SuppressionReason};
pub use reclassify::ReclassifyReport;
pub use run::RunSummary;

/// Where a message came from. Everything is optional: a file has a `source_path`, an IMAP
/// message has mailbox, folder, UIDVALIDITY, UID and INTERNALDATE.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub mailbox: Option<String>,
    pub folder: Option<String>,
    pub uidvalidity: Option<u32>,
    pub uid: Option<u32>,
    pub source_path: Option<String>,
    /// IMAP INTERNALDATE, RFC 3339 UTC (`rebound ingest` gives a file's modification time).
    pub internal_date: Option<String>,
}

impl Origin {
    /// A message read from a file (or `file.mbox#N`).
    pub fn file(source: impl Into<String>) -> Origin {
        Origin {
            source_path: Some(source.into()),
            ..Origin::default()
        }
    }

    /// The IMAP identity, when all four parts are known.
    fn imap(&self) -> Option<(&str, &str, u32, u32)> {
        Some((
            self.mailbox.as_deref()?,
            self.folder.as_deref()?,
            self.uidvalidity?,
            self.uid?,
        ))
    }
}

/// What [`Ledger::ingest`] did with one message.
#[derive(Debug, Clone)]
pub struct IngestOutcome {
    /// `messages.id` of the stored (or already present) message.
    pub message_row: i64,
    /// The message was already in the ledger (same bytes, or same IMAP UID): nothing changed
    /// except, for IMAP, the folder's high-water mark.
    pub duplicate: bool,
    pub kind: Kind,
    /// The labels of the message's bounced recipients, in order.
    pub labels: Vec<Label>,
}

/// The IMAP position of one mailbox folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderState {
    pub uidvalidity: u32,
    pub last_uid: u32,
}

/// Connection settings, and why.
///
/// - `synchronous = FULL` by default: under WAL, NORMAL does not sync the log at a commit, so
///   an OS crash or power cut can undo the last commits after they returned. The IMAP worker
///   applies its action (move, delete) to a batch right after its commit, so an undone commit
///   would be a deleted message the ledger never saw: a lost event. FULL costs one fsync of the
///   log per transaction (a whole batch); see [`Ledger::sync_every_commit`] for when it is not
///   needed.
/// - `temp_store = MEMORY`: every message of a batch has a savepoint, whose journal was a
///   temporary file (three quarters of the ingest's `pwrite` calls); it holds only the pages
///   one message changes.
/// - `cache_size` 16 MiB (from 2 MiB) and `wal_autocheckpoint` 4000 pages (from 1000): a batch
///   touches more pages than the default cache holds (index pages re-read from the file), and
///   hot index pages were copied back to the database at every other commit. Both are bounds,
///   so memory stays flat; ingest of 20,000 messages: 2.7 -> 1.6 s of system time.
/// - the query planner stability guarantee (`SQLITE_DBCONFIG_ENABLE_QPSG`): the bundled SQLite
///   has STAT4, which marks statements to be re-prepared whenever a bound value might change
///   the plan; the cached statements of the replay were re-parsed on every execution (a fifth
///   of the ledger's CPU). Our queries have one good plan, the one from the indexes.
fn tune(conn: &Connection) -> anyhow::Result<()> {
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16384; PRAGMA wal_autocheckpoint = 4000;",
    )?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// The ledger database.
pub struct Ledger {
    conn: Connection,
    policy: Policy,
    path: PathBuf,
    /// Fold states of busy addresses, so that a batch does not replay their whole history.
    checkpoints: projection::Checkpoints,
}

impl Ledger {
    /// Opens (creating and migrating as needed) the ledger at `path`: WAL, foreign keys on,
    /// file mode 0600 (it holds other people's addresses and whole messages).
    pub fn open(path: &Path, policy: Policy) -> anyhow::Result<Ledger> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the directory of {}", dir.display()))?;
        }
        restrict_file_mode(path)?;
        let mut conn = Connection::open(path)
            .with_context(|| format!("opening the ledger {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode, "the ledger could not switch to WAL mode");
        }
        tune(&conn)?;
        schema::migrate(&mut conn)
            .with_context(|| format!("migrating the ledger {}", path.display()))?;
        let mut ledger = Ledger {
            conn,
            policy,
            path: path.to_path_buf(),
            checkpoints: projection::Checkpoints::default(),
        };
        ledger.follow_policy()?;
        Ok(ledger)
    }

    /// The projection is a function of the events *and the policy*: when the policy in the
    /// config differs from the one the projection was built with, rebuild it all, so that
    /// addresses no new message touches do not keep a verdict from the old policy.
    fn follow_policy(&mut self) -> anyhow::Result<()> {
        let fingerprint = sha256_hex(serde_json::to_string(&self.policy)?.as_bytes());
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stored: Option<String> = tx
            .query_row(
                "SELECT value FROM ledger_meta WHERE key = 'policy'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if stored.as_deref() != Some(fingerprint.as_str()) {
            if stored.is_some() {
                tracing::info!("the policy changed: rebuilding the projection");
                projection::rebuild_all(&tx, &self.policy)?;
            }
            tx.execute(
                "INSERT INTO ledger_meta (key, value) VALUES ('policy', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [&fingerprint],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Whether every commit is synced to disk (the default) or only checkpoints are. Not
    /// syncing is safe, and saves one fsync per batch (a tenth of a long poll's wall time on
    /// this machine's disk), when nothing irreversible follows a commit: files that stay where
    /// they are, or IMAP messages that are kept (or only flagged). A commit undone by a power
    /// cut then just means those messages are read again: the ledger stays consistent (WAL),
    /// and the IMAP watermark goes back with the events.
    pub fn sync_every_commit(&self, yes: bool) -> anyhow::Result<()> {
        let mode = if yes { "FULL" } else { "NORMAL" };
        self.conn
            .execute_batch(&format!("PRAGMA synchronous = {mode}"))?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Read access for reports (`explain`, tests). Writes go through the methods, which keep
    /// the projection consistent.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Analyses and stores one message, its events and the updated projection, in one
    /// transaction. Idempotent: the same bytes, or the same (mailbox, folder, uidvalidity, uid),
    /// are a duplicate and change nothing (except advancing the folder's last UID).
    pub fn ingest(&mut self, raw: &[u8], origin: &Origin) -> anyhow::Result<IngestOutcome> {
        single(self.ingest_batch(&[Incoming::new(raw, origin)])?)
    }

    /// Stores a message that could not be fetched whole or failed repeatedly, as `unparsed`
    /// with the error, so that it is never lost and the worker can move past it.
    pub fn ingest_failed(
        &mut self,
        raw_or_headers: &[u8],
        origin: &Origin,
        error: &str,
    ) -> anyhow::Result<IngestOutcome> {
        single(self.ingest_batch(&[Incoming::failed(raw_or_headers, origin, error)])?)
    }

    /// [`Ledger::ingest`] for many messages in ONE transaction: the same per-message
    /// idempotence and outcomes, the IMAP watermark in the same transaction, and the same
    /// ledger afterwards as ingesting them one by one in this order.
    ///
    /// Why a batch is much cheaper than its messages one by one:
    /// - the analysis is pure, so it runs before the transaction, on every core;
    /// - the projection of an address touched by many messages of the batch is replayed once,
    ///   not once per message (it is a function of the events, so only the last replay counts);
    /// - one commit instead of one per message.
    ///
    /// A message whose writing fails is rolled back alone (a savepoint each) and reported in its
    /// slot; the others are stored. The outer error means nothing of the batch was stored.
    pub fn ingest_batch(
        &mut self,
        items: &[Incoming<'_>],
    ) -> anyhow::Result<Vec<anyhow::Result<IngestOutcome>>> {
        let shas: Vec<String> = items.iter().map(|i| sha256_hex(i.raw)).collect();
        // Cheap check first: a duplicate is not worth an analysis.
        let mut todo = Vec::new();
        for (n, (item, sha)) in items.iter().zip(&shas).enumerate() {
            if item.failed.is_none() && find_duplicate(&self.conn, sha, item.origin)?.is_none() {
                todo.push(n);
            }
        }
        let raws: Vec<&[u8]> = todo.iter().map(|&n| items[n].raw).collect();
        let mut analyses: Vec<Option<Analysis>> = (0..items.len()).map(|_| None).collect();
        for (n, a) in todo.into_iter().zip(analyze_all(&raws)) {
            analyses[n] = Some(a);
        }
        self.write_batch(items, &shas, &analyses)
    }

    /// The pure half of [`Ledger::ingest_batch`], which needs no ledger: hashes and analyses
    /// every message (failed ones excepted). A caller that pipelines batches analyses the next
    /// one while the previous one is being written, then hands both halves to
    /// [`Ledger::write_analysed`]. Unlike `ingest_batch`, duplicates are analysed too: the
    /// caller expects new messages (the IMAP worker reads above its watermark).
    pub fn analyse(items: &[Incoming<'_>]) -> Analysed {
        let shas = items.iter().map(|i| sha256_hex(i.raw)).collect();
        let todo: Vec<usize> = (0..items.len())
            .filter(|&n| items[n].failed.is_none())
            .collect();
        let raws: Vec<&[u8]> = todo.iter().map(|&n| items[n].raw).collect();
        let mut analyses: Vec<Option<Analysis>> = (0..items.len()).map(|_| None).collect();
        for (n, a) in todo.into_iter().zip(analyze_all(&raws)) {
            analyses[n] = Some(a);
        }
        Analysed { shas, analyses }
    }

    /// The writing half: stores `items` as [`Ledger::ingest_batch`] does, with the hashes and
    /// analyses [`Ledger::analyse`] made of these very items.
    pub fn write_analysed(
        &mut self,
        items: &[Incoming<'_>],
        analysed: &Analysed,
    ) -> anyhow::Result<Vec<anyhow::Result<IngestOutcome>>> {
        anyhow::ensure!(
            analysed.shas.len() == items.len() && analysed.analyses.len() == items.len(),
            "{} messages but {} analyses",
            items.len(),
            analysed.analyses.len()
        );
        self.write_batch(items, &analysed.shas, &analysed.analyses)
    }

    /// Stores a message whose analysis is already known. This is `ingest` minus the analysis;
    /// it exists for tests that need verdicts the engine does not produce yet.
    #[doc(hidden)]
    pub fn ingest_analysis(
        &mut self,
        raw: &[u8],
        origin: &Origin,
        analysis: &Analysis,
    ) -> anyhow::Result<IngestOutcome> {
        let sha = sha256_hex(raw);
        let analyses = [Some(analysis.clone())];
        single(self.write_batch(&[Incoming::new(raw, origin)], &[sha], &analyses)?)
    }

    /// The stored UIDVALIDITY and the highest UID done for a mailbox folder.
    pub fn folder_state(&self, mailbox: &str, folder: &str) -> anyhow::Result<Option<FolderState>> {
        Ok(self
            .conn
            .query_row(
                "SELECT uidvalidity, last_uid FROM imap_folders WHERE mailbox = ?1 AND folder = ?2",
                [mailbox, folder],
                |r| {
                    Ok(FolderState {
                        uidvalidity: r.get(0)?,
                        last_uid: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// Records an operator's reactivation of an address (an event, so that it survives every
    /// rebuild of the projection) and recomputes it. Soft-limited, quarantined and retrying
    /// addresses may be reactivated; a permanent suppression (hard, invalid, complaint,
    /// unsubscribe, manual) needs `force`.
    pub fn reactivate(
        &mut self,
        address: &str,
        force: bool,
        note: &str,
    ) -> anyhow::Result<Reactivation> {
        let address = normalize_address(address)
            .with_context(|| format!("{address:?} is not an e-mail address"))?;
        self.checkpoints.clear();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some((state, reason)) = projection::address_state(&tx, &address)? else {
            return Ok(Reactivation::Unknown);
        };
        if state == State::Active.as_str() {
            return Ok(Reactivation::AlreadyActive);
        }
        let permanent = reason
            .as_deref()
            .and_then(SuppressionReason::parse)
            .is_some_and(SuppressionReason::is_permanent);
        if permanent && !force {
            return Ok(Reactivation::NeedsForce {
                reason: reason.unwrap_or_default(),
            });
        }
        let now = time::format(time::now());
        let note = if force {
            format!(
                "{note} (forced over suppression {})",
                reason.as_deref().unwrap_or("-")
            )
        } else {
            note.to_string()
        };
        tx.execute(
            "INSERT INTO events (message_id, recipient_index, role, address, domain, kind, action, rule,
                 event_time, time_source, sort_key, note)
             VALUES (NULL, 0, 'operator', ?1, ?2, 'manual', 'reactivate', 'manual', ?3, 'operator', ?4, ?5)",
            params![address, domain_of(&address), now, format!("~operator {now}"), note],
        )?;
        projection::refresh_address(&tx, &self.policy, &address)?;
        tx.commit()?;
        Ok(Reactivation::Done {
            from: state,
            reason,
        })
    }

    /// Re-runs the analysis on stored messages (all, or those received since `since`) and
    /// rebuilds events and the whole projection in one transaction.
    pub fn reclassify(&mut self, since: Option<&str>) -> anyhow::Result<ReclassifyReport> {
        self.checkpoints.clear();
        reclassify::run(&mut self.conn, &self.policy, since)
    }

    /// Recomputes the whole projection from the events (after a policy change).
    pub fn rebuild_projection(&mut self) -> anyhow::Result<()> {
        self.checkpoints.clear();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        projection::rebuild_all(&tx, &self.policy)?;
        tx.commit()?;
        Ok(())
    }

    /// The one writer of messages and events: one transaction for the batch, a savepoint per
    /// message, then the projection of everything the batch touched, then the commit.
    /// `analyses[i]` is `None` for a message known to be a duplicate or a failed one.
    ///
    /// When the batch as a whole fails (the projection of one of its messages cannot be
    /// written), nothing of it is kept and its messages are written again one per transaction,
    /// so that only the culprit fails, as if they had been ingested one by one.
    fn write_batch(
        &mut self,
        items: &[Incoming<'_>],
        shas: &[String],
        analyses: &[Option<Analysis>],
    ) -> anyhow::Result<Vec<anyhow::Result<IngestOutcome>>> {
        let first = self.write_batch_once(items, shas, analyses);
        if first.is_err() {
            // Checkpoints may have followed writes that were rolled back.
            self.checkpoints.clear();
        }
        match first {
            Err(e) if items.len() > 1 => {
                tracing::debug!(error = %format!("{e:#}"), "batch failed: one message per transaction");
                let mut outcomes = Vec::with_capacity(items.len());
                for n in 0..items.len() {
                    let r = n..n + 1;
                    let outcome = self
                        .write_batch_once(&items[r.clone()], &shas[r.clone()], &analyses[r])
                        .and_then(single);
                    if outcome.is_err() {
                        self.checkpoints.clear();
                    }
                    let stop = outcome.is_err() && items[n].origin.imap().is_some();
                    outcomes.push(outcome);
                    if stop {
                        break;
                    }
                }
                while outcomes.len() < items.len() {
                    outcomes.push(Err(anyhow::anyhow!(
                        "not stored: an earlier message of its folder failed"
                    )));
                }
                Ok(outcomes)
            }
            other => other,
        }
    }

    fn write_batch_once(
        &mut self,
        items: &[Incoming<'_>],
        shas: &[String],
        analyses: &[Option<Analysis>],
    ) -> anyhow::Result<Vec<anyhow::Result<IngestOutcome>>> {
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut touched = Touched::default();
        let mut outcomes = Vec::with_capacity(items.len());
        for ((item, sha), analysis) in items.iter().zip(shas).zip(analyses) {
            let what = match (item.failed, analysis) {
                (Some(error), _) => Some(Stored::Failed(error)),
                (None, Some(a)) => Some(Stored::Analysed(a)),
                (None, None) => None,
            };
            let mut sp = tx.savepoint()?;
            match write_one(&sp, item.raw, sha, item.origin, what, &mut touched) {
                Ok(outcome) => {
                    sp.commit()?;
                    outcomes.push(Ok(outcome));
                }
                Err(e) => {
                    sp.rollback()?;
                    drop(sp);
                    outcomes.push(Err(e));
                    // An IMAP folder's watermark must never pass a message that is not
                    // stored: the rest of the batch waits for the next run.
                    if item.origin.imap().is_some() {
                        break;
                    }
                }
            }
        }
        while outcomes.len() < items.len() {
            outcomes.push(Err(anyhow::anyhow!(
                "not stored: an earlier message of its folder failed"
            )));
        }
        projection::refresh_with(
            &tx,
            &self.policy,
            &touched.addresses,
            &touched.domains,
            &mut self.checkpoints,
        )?;
        tx.commit()?;
        Ok(outcomes)
    }
}

/// What [`Ledger::analyse`] made of a batch: per message, its sha256 and its analysis (none
/// for a failed message).
pub struct Analysed {
    shas: Vec<String>,
    analyses: Vec<Option<Analysis>>,
}

impl Analysed {
    /// The analysis of message `n` of the batch.
    pub fn analysis(&self, n: usize) -> Option<&Analysis> {
        self.analyses.get(n).and_then(Option::as_ref)
    }
}

/// One message handed to [`Ledger::ingest_batch`].
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub raw: &'a [u8],
    pub origin: &'a Origin,
    /// Set when the message could not be fetched whole or failed repeatedly: it is stored as
    /// `unparsed` with this error (see [`Ledger::ingest_failed`]).
    pub failed: Option<&'a str>,
}

impl<'a> Incoming<'a> {
    pub fn new(raw: &'a [u8], origin: &'a Origin) -> Incoming<'a> {
        Incoming {
            raw,
            origin,
            failed: None,
        }
    }

    pub fn failed(raw: &'a [u8], origin: &'a Origin, error: &'a str) -> Incoming<'a> {
        Incoming {
            raw,
            origin,
            failed: Some(error),
        }
    }
}

/// The outcome of a batch of one.
fn single(mut outcomes: Vec<anyhow::Result<IngestOutcome>>) -> anyhow::Result<IngestOutcome> {
    outcomes
        .pop()
        .unwrap_or_else(|| Err(anyhow::anyhow!("no outcome for the message")))
}

/// Analyses messages on every core (the analysis is pure and CPU-bound), in order, on the
/// long-lived analysis threads (see [`workers`]).
fn analyze_all(raws: &[&[u8]]) -> Vec<Analysis> {
    workers::analyze_all(raws, analyze_guarded)
}

/// Writes one message (or recognises it as a duplicate) and advances its folder's watermark;
/// adds what it touched to `touched`, whose projection the caller recomputes.
fn write_one(
    tx: &Connection,
    raw: &[u8],
    sha: &str,
    origin: &Origin,
    what: Option<Stored<'_>>,
    touched: &mut Touched,
) -> anyhow::Result<IngestOutcome> {
    let outcome = match (find_duplicate(tx, sha, origin)?, what) {
        (None, None) => anyhow::bail!("message {sha} vanished from the ledger"),
        (Some(row), _) => {
            let (kind, labels) = stored_verdicts(tx, row)?;
            IngestOutcome {
                message_row: row,
                duplicate: true,
                kind,
                labels,
            }
        }
        (None, Some(what)) => {
            let unparsed;
            let (analysis, failed) = match what {
                Stored::Analysed(a) => (a, false),
                Stored::Failed(error) => {
                    unparsed = Analysis::unparsed(error);
                    (&unparsed, true)
                }
            };
            let received_at = origin
                .internal_date
                .as_deref()
                .and_then(|d| time::parse_mail_date(d, time::now()))
                .map(time::format);
            let received = received_at
                .clone()
                .unwrap_or_else(|| time::format(time::now()));
            let row = insert_message(
                tx,
                raw,
                sha,
                origin,
                analysis,
                &Received {
                    received_at: &received,
                    internal_date: received_at.as_deref(),
                    fetch_failed: failed,
                },
            )?;
            let mine = insert_events(tx, row, sha, analysis, &received, received_at.is_some())?;
            touched.addresses.extend(mine.addresses);
            touched.domains.extend(mine.domains);
            IngestOutcome {
                message_row: row,
                duplicate: false,
                kind: analysis.kind,
                labels: mine.labels,
            }
        }
    };
    if let Some((mailbox, folder, uidvalidity, uid)) = origin.imap() {
        tx.prepare_cached(
            "INSERT INTO imap_folders (mailbox, folder, uidvalidity, last_uid, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (mailbox, folder) DO UPDATE SET
                 last_uid = CASE WHEN imap_folders.uidvalidity = excluded.uidvalidity
                                 THEN max(imap_folders.last_uid, excluded.last_uid)
                                 ELSE excluded.last_uid END,
                 uidvalidity = excluded.uidvalidity,
                 updated_at = excluded.updated_at",
        )?
        .execute(params![
            mailbox,
            folder,
            uidvalidity,
            uid,
            time::format(time::now())
        ])?;
    }
    Ok(outcome)
}

/// What [`Ledger::reactivate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reactivation {
    Done {
        from: String,
        reason: Option<String>,
    },
    AlreadyActive,
    Unknown,
    NeedsForce {
        reason: String,
    },
}

enum Stored<'a> {
    Analysed(&'a Analysis),
    Failed(&'a str),
}

/// The analysis is promised never to panic; if it does anyway, the message is still kept.
fn analyze_guarded(raw: &[u8]) -> Analysis {
    std::panic::catch_unwind(|| analysis::analyze(raw)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Analysis::unparsed(format!("analysis panicked: {what}"))
    })
}

pub fn sha256_hex(raw: &[u8]) -> String {
    let digest = Sha256::digest(raw);
    let mut s = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The row of an identical message already stored: same bytes, or same IMAP identity.
fn find_duplicate(conn: &Connection, sha: &str, origin: &Origin) -> anyhow::Result<Option<i64>> {
    let by_hash = conn
        .prepare_cached("SELECT id FROM messages WHERE sha256 = ?1")?
        .query_row([sha], |r| r.get(0))
        .optional()?;
    if by_hash.is_some() {
        return Ok(by_hash);
    }
    let Some((mailbox, folder, uidvalidity, uid)) = origin.imap() else {
        return Ok(None);
    };
    Ok(conn
        .prepare_cached(
            "SELECT id FROM messages WHERE mailbox = ?1 AND folder = ?2 AND uidvalidity = ?3 AND uid = ?4",
        )?
        .query_row(params![mailbox, folder, uidvalidity, uid], |r| r.get(0))
        .optional()?)
}

/// The kind and labels of a stored message (for a duplicate's outcome).
fn stored_verdicts(conn: &Connection, row: i64) -> anyhow::Result<(Kind, Vec<Label>)> {
    let kind: String = conn
        .prepare_cached("SELECT kind FROM messages WHERE id = ?1")?
        .query_row([row], |r| r.get(0))?;
    let labels = conn
        .prepare_cached(
            "SELECT label FROM events WHERE message_id = ?1 AND kind = 'bounce' AND label IS NOT NULL
             ORDER BY recipient_index",
        )?
        .query_map([row], |r| r.get::<_, String>(0))?
        .filter_map(|l| l.ok())
        .filter_map(|l| serde_json::from_value(serde_json::Value::String(l)).ok())
        .collect();
    Ok((Kind::parse(&kind).unwrap_or(Kind::Unparsed), labels))
}

/// When and how a message reached the ledger.
struct Received<'a> {
    /// INTERNALDATE, else the time of ingestion.
    received_at: &'a str,
    internal_date: Option<&'a str>,
    /// Stored by `ingest_failed`: the bytes may be partial.
    fetch_failed: bool,
}

fn insert_message(
    tx: &Connection,
    raw: &[u8],
    sha: &str,
    origin: &Origin,
    a: &Analysis,
    received: &Received<'_>,
) -> anyhow::Result<i64> {
    let Received {
        received_at,
        internal_date,
        fetch_failed,
    } = *received;
    let now = time::now();
    let date = a
        .envelope
        .date
        .as_deref()
        .and_then(|d| time::parse_mail_date(d, now))
        .map(time::format);
    tx.prepare_cached(
        "INSERT INTO messages (sha256, mailbox, folder, uidvalidity, uid, source_path, message_id,
             from_address, subject, date, received_at, processed_at, kind, mta, feedback_type,
             parser_version, error, fetch_failed, raw_size, raw, internal_date)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
    )?
    .execute(params![
        sha,
        origin.mailbox,
        origin.folder,
        origin.uidvalidity,
        origin.uid,
        origin.source_path,
        a.envelope.message_id,
        a.envelope.from.as_deref().and_then(normalize_address),
        a.envelope.subject,
        date,
        received_at,
        time::format(now),
        a.kind.as_str(),
        a.mta,
        a.feedback_type,
        analysis::PARSER_VERSION,
        a.error,
        fetch_failed,
        raw.len() as i64,
        raw,
        internal_date,
    ])?;
    Ok(tx.last_insert_rowid())
}

/// What a message's events touched: the projection to recompute.
#[derive(Default)]
struct Touched {
    addresses: BTreeSet<String>,
    /// Recipient domains with blocked or rate-limited events (the only ones pauses depend on).
    domains: BTreeSet<String>,
    labels: Vec<Label>,
}

/// Writes the events of one analysed message. `received_at` is the last resort for the event
/// time (it is stored with the message, so a reclassify derives the very same time).
fn insert_events(
    tx: &Connection,
    message_row: i64,
    sha: &str,
    a: &Analysis,
    received_at: &str,
    received_is_internal_date: bool,
) -> anyhow::Result<Touched> {
    let now = time::now();
    let mut touched = Touched::default();
    let message_date = a
        .envelope
        .date
        .as_deref()
        .and_then(|d| time::parse_mail_date(d, now));
    let original_sender = a.original.from.as_deref().and_then(normalize_address);
    let sender_domain = original_sender.as_deref().map(domain_of);
    let fallback = || match message_date {
        Some(t) => (time::format(t), "date"),
        None if received_is_internal_date => (received_at.to_string(), "internal_date"),
        None => (received_at.to_string(), "ingested"),
    };
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (message_id, recipient_index, role, address, domain, kind, action, label,
             reason, status, reply_code, diagnostic, remote_mta, rule, original_message_id,
             original_sender, sender_domain, event_time, time_source, sort_key, phase,
             original_recipient, final_recipient)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20,
             ?21, ?22, ?23)",
    )?;
    for (i, r) in a.recipients.iter().enumerate() {
        let Some(address) = normalize_address(&r.address) else {
            continue;
        };
        let domain = domain_of(&address);
        let kind = recipient_kind(a.kind, r.action.as_deref());
        let (event_time, source) = match r
            .last_attempt
            .as_deref()
            .and_then(|d| time::parse_mail_date(d, now))
        {
            Some(t) => (time::format(t), "last_attempt"),
            None => fallback(),
        };
        insert.execute(params![
            message_row,
            i as i64,
            "recipient",
            address,
            domain,
            kind,
            r.action,
            r.label.map(Label::as_str),
            r.reason.map(|x| x.as_str()),
            r.status,
            r.reply_code,
            r.diagnostic,
            r.remote_mta,
            r.rule,
            a.original.message_id,
            original_sender,
            sender_domain,
            event_time,
            source,
            sha,
            r.phase.map(|p| p.as_str()),
            r.original_recipient,
            r.final_recipient,
        ])?;
        if kind == "bounce"
            && let Some(label) = r.label
        {
            touched.labels.push(label);
            if label == Label::Blocked || r.reason == Some(crate::analysis::Reason::RateLimited) {
                touched.domains.insert(domain.clone());
            }
        }
        touched.addresses.insert(address);
    }
    // The message's own author: alive when it writes (auto-reply, a person's reply), or the
    // unsubscribing address when the request names nobody else.
    let sender_kind = match a.kind {
        Kind::AutoReply | Kind::Other => Some(a.kind),
        Kind::Unsubscribe if touched.addresses.is_empty() => Some(a.kind),
        _ => None,
    };
    if let (Some(kind), Some(address)) = (
        sender_kind,
        a.envelope.from.as_deref().and_then(normalize_address),
    ) {
        let (event_time, source) = fallback();
        let domain = domain_of(&address);
        insert.execute(params![
            message_row,
            -1i64,
            "sender",
            address,
            domain,
            kind.as_str(),
            None::<String>,
            None::<String>,
            None::<String>,
            None::<String>,
            None::<u16>,
            None::<String>,
            None::<String>,
            None::<String>,
            a.original.message_id,
            original_sender,
            sender_domain,
            event_time,
            source,
            sha,
            None::<String>,
            None::<String>,
            None::<String>,
        ])?;
        touched.addresses.insert(address);
    }
    Ok(touched)
}

/// The kind of one recipient's event: in a DSN each recipient has its own Action, and a
/// delivered recipient in a report that failed for another is alive, not bounced.
fn recipient_kind(message: Kind, action: Option<&str>) -> &'static str {
    match message {
        Kind::Bounce | Kind::Delay | Kind::DeliveryReport => {
            match action.map(|a| a.trim().to_ascii_lowercase()).as_deref() {
                Some("failed") => "bounce",
                Some("delayed") => "delay",
                Some("delivered" | "relayed" | "expanded") => "delivery_report",
                _ => message.as_str(),
            }
        }
        k => k.as_str(),
    }
}

/// `"Name" <User@Example.COM>`, `rfc822;user@example.com` → `user@example.com`.
pub fn normalize_address(text: &str) -> Option<String> {
    let mut s = text.trim();
    if let (Some(start), Some(end)) = (s.rfind('<'), s.rfind('>'))
        && start < end
    {
        s = &s[start + 1..end];
    }
    if let Some((kind, rest)) = s.split_once(';')
        && kind.trim().eq_ignore_ascii_case("rfc822")
    {
        s = rest;
    }
    let s = s
        .trim()
        .trim_matches(|c| c == '<' || c == '>' || c == '"' || c == '\'');
    let s = s.trim();
    if s.is_empty() || s.contains(char::is_whitespace) {
        return None;
    }
    Some(s.to_lowercase())
}

/// The domain of a normalized address (empty when it has none).
pub fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_string())
        .unwrap_or_default()
}

/// Creates the ledger file with mode 0600, or narrows an existing one to it.
fn restrict_file_mode(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if !path.exists() {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating the ledger {}", path.display()))?;
        }
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {} to mode 0600", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
