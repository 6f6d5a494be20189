//! What was sent: send counts per hour × recipient domain × sender domain × campaign (the
//! denominator of every rate), what was imported from where, and the mail log queues in
//! flight.
//!
//! An import is read and parsed outside any transaction (`crate::sends`), then committed in
//! one ([`Ledger::commit_import`]): the counts, where the input was read up to, the queue
//! state and the replay of the pauses the new sends touch land together or not at all, so a
//! crash or an error re-imports the same lines next time, never some of them twice.
//!
//! Inputs are known by their first kilobyte: an input whose first KB (or whole content, when
//! it is shorter) is that of one imported before is the same input, continued, and is read on
//! from the byte offset the last import reached. A log that grows imports only its new lines,
//! a rotated copy (`mail.log.1`, `mail.log.2.gz`: the same first KB) imports nothing again,
//! and the same CSV or standard input given twice changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Context;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Ledger, projection, sha256_hex, time};

/// How much of an input's beginning identifies it.
pub const HEAD_BYTES: usize = 1024;

/// One aggregate of sends.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SendKey {
    /// The start of the hour (UTC).
    pub hour: DateTime<Utc>,
    pub recipient_domain: String,
    /// `""` when the input does not say.
    pub sender_domain: String,
    /// `""` when none.
    pub campaign: String,
}

/// Send counts, aggregated.
pub type Sends = BTreeMap<SendKey, u64>;

/// What identifies an input.
#[derive(Debug, Clone)]
pub struct InputIdentity {
    /// `csv`, `jsonl`, `postfix`, `exim`.
    pub format: String,
    /// As given (`-` for standard input).
    pub path: String,
    pub device: Option<u64>,
    pub inode: Option<u64>,
    /// The first [`HEAD_BYTES`] of the (decompressed) content, or all of a shorter one.
    pub head: Vec<u8>,
}

/// Where an earlier import of the same input stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRecord {
    pub id: i64,
    /// Bytes of the content imported.
    pub offset: u64,
    /// Lines read up to `offset`.
    pub lines: u64,
}

/// A message a mail log showed in flight.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueEntry {
    /// The envelope sender (`""`: the null sender); `None` until its line is seen.
    pub sender: Option<String>,
    /// The recipients already counted as sends.
    pub recipients: BTreeSet<String>,
    pub seen_at: Option<DateTime<Utc>>,
}

/// A log's queue: (host, queue id) → what is known of the message.
pub type Queue = HashMap<(String, String), QueueEntry>;

/// Queue entries not mentioned for this long are dropped (their log lines are gone; Postfix
/// gives a message up after 5 days by default, Exim after 4).
const QUEUE_MEMORY_DAYS: i64 = 30;

/// One input read, ready to commit.
#[derive(Debug)]
pub struct Imported {
    pub identity: InputIdentity,
    /// The earlier import this one continues (`None`: a new input).
    pub previous: Option<ImportRecord>,
    /// Bytes of the content read (through the last line taken).
    pub offset: u64,
    /// Lines read up to `offset`, all imports together.
    pub lines: u64,
    pub sends: Sends,
    /// Rows refused (CSV, JSON lines) in this import.
    pub bad_rows: u64,
    /// A log's queue after the import (log name and entries), to store.
    pub queue: Option<(String, Queue)>,
}

/// What a commit changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportOutcome {
    /// Sends added.
    pub sends: u64,
    /// Aggregate rows written (new or added to).
    pub rows: usize,
    /// Pause folds replayed because of the new sends.
    pub replayed: usize,
}

impl Ledger {
    /// The earlier import this input continues, if any (see the module docs).
    pub fn find_import(&self, id: &InputIdentity) -> anyhow::Result<Option<ImportRecord>> {
        find_import(&self.conn, id)
    }

    /// The stored queue of a log (`postfix`, `exim`).
    pub fn load_queue(&self, log: &str) -> anyhow::Result<Queue> {
        let mut stmt = self.conn.prepare(
            "SELECT host, queue_id, sender, recipients, seen_at FROM send_queue WHERE log = ?1",
        )?;
        let rows = stmt.query_map([log], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut queue = Queue::new();
        for row in rows {
            let (host, id, sender, recipients, seen_at) = row?;
            let recipients: BTreeSet<String> =
                serde_json::from_str(&recipients).with_context(|| {
                    format!("the stored queue entry {id} of the {log} log is corrupt")
                })?;
            queue.insert(
                (host, id),
                QueueEntry {
                    sender,
                    recipients,
                    seen_at: time::parse_stored(&seen_at),
                },
            );
        }
        Ok(queue)
    }

    /// Commits one import in one transaction: the sends, where the input was read up to, the
    /// queue, and the replay of every pause decision the new sends touch. Fails, changing
    /// nothing, when another import of the same input committed since this one was read.
    pub fn commit_import(&mut self, imported: &Imported) -> anyhow::Result<ImportOutcome> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = time::format(time::now());
        let current = find_import(&tx, &imported.identity)?;
        anyhow::ensure!(
            current == imported.previous,
            "{} was imported by another run meanwhile: nothing from it was stored, run the import again",
            imported.identity.path
        );
        let (rows, changes) = insert_sends(&tx, &imported.sends)?;
        let id = &imported.identity;
        let head_sha = sha256_hex(&id.head);
        let sends: u64 = imported.sends.values().sum();
        match &imported.previous {
            Some(prev) => {
                tx.execute(
                    "UPDATE send_imports SET path = ?2, device = ?3, inode = ?4, head_len = ?5,
                         head_sha256 = ?6, offset = ?7, lines = ?8, sends = sends + ?9,
                         bad_rows = bad_rows + ?10, last_at = ?11
                     WHERE id = ?1",
                    params![
                        prev.id,
                        id.path,
                        id.device.map(|d| d as i64),
                        id.inode.map(|i| i as i64),
                        id.head.len() as i64,
                        head_sha,
                        imported.offset as i64,
                        imported.lines as i64,
                        sends as i64,
                        imported.bad_rows as i64,
                        now,
                    ],
                )?;
            }
            None => {
                tx.execute(
                    "INSERT INTO send_imports (format, path, device, inode, head_len, head_sha256,
                         offset, lines, sends, bad_rows, first_at, last_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
                    params![
                        id.format,
                        id.path,
                        id.device.map(|d| d as i64),
                        id.inode.map(|i| i as i64),
                        id.head.len() as i64,
                        head_sha,
                        imported.offset as i64,
                        imported.lines as i64,
                        sends as i64,
                        imported.bad_rows as i64,
                        now,
                    ],
                )?;
            }
        }
        if let Some((log, queue)) = &imported.queue {
            save_queue(&tx, log, queue)?;
        }
        let replayed = projection::sends_changed(&tx, &self.policy, &changes)?;
        tx.commit()?;
        Ok(ImportOutcome {
            sends,
            rows,
            replayed,
        })
    }

    /// Adds sends (from anywhere: tests, a caller with its own bookkeeping) and replays the
    /// pause decisions they touch, in one transaction.
    pub fn add_sends(&mut self, sends: &Sends) -> anyhow::Result<ImportOutcome> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (rows, changes) = insert_sends(&tx, sends)?;
        let replayed = projection::sends_changed(&tx, &self.policy, &changes)?;
        tx.commit()?;
        Ok(ImportOutcome {
            sends: sends.values().sum(),
            rows,
            replayed,
        })
    }
}

/// The recipient domains sends were added to, each with its first and last hour.
type Changes = BTreeMap<String, (DateTime<Utc>, DateTime<Utc>)>;

fn insert_sends(conn: &rusqlite::Connection, sends: &Sends) -> anyhow::Result<(usize, Changes)> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO sends (hour, recipient_domain, sender_domain, campaign, count)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (hour, recipient_domain, sender_domain, campaign)
         DO UPDATE SET count = count + excluded.count",
    )?;
    let mut changes = Changes::new();
    let mut rows = 0;
    for (k, &n) in sends {
        if n == 0 {
            continue;
        }
        insert.execute(params![
            time::format(k.hour),
            k.recipient_domain,
            k.sender_domain,
            k.campaign,
            n as i64
        ])?;
        rows += 1;
        let span = changes
            .entry(k.recipient_domain.clone())
            .or_insert((k.hour, k.hour));
        span.0 = span.0.min(k.hour);
        span.1 = span.1.max(k.hour);
    }
    Ok((rows, changes))
}

fn find_import(
    conn: &rusqlite::Connection,
    id: &InputIdentity,
) -> anyhow::Result<Option<ImportRecord>> {
    let head_sha = sha256_hex(&id.head);
    let mut best: Option<ImportRecord> = None;
    let mut consider = |rec: ImportRecord| {
        if best.as_ref().is_none_or(|b| rec.offset > b.offset) {
            best = Some(rec);
        }
    };
    // The same first KB (or the same whole short content).
    let mut same = conn.prepare_cached(
        "SELECT id, offset, lines FROM send_imports
         WHERE format = ?1 AND head_sha256 = ?2 AND head_len = ?3",
    )?;
    for rec in same.query_map(params![id.format, head_sha, id.head.len() as i64], |r| {
        Ok(ImportRecord {
            id: r.get(0)?,
            offset: r.get::<_, i64>(1)? as u64,
            lines: r.get::<_, i64>(2)? as u64,
        })
    })? {
        consider(rec?);
    }
    // A short input imported before, grown since: its whole content then is a prefix of this
    // one. Looked for under the same path or file only (a prefix of a few bytes is no identity).
    let mut grown = conn.prepare_cached(
        "SELECT id, offset, lines, head_len, head_sha256 FROM send_imports
         WHERE format = ?1 AND head_len < ?2 AND (path = ?3 OR (device = ?4 AND inode = ?5))",
    )?;
    let rows = grown.query_map(
        params![
            id.format,
            id.head.len() as i64,
            id.path,
            id.device.map(|d| d as i64),
            id.inode.map(|i| i as i64)
        ],
        |r| {
            Ok((
                ImportRecord {
                    id: r.get(0)?,
                    offset: r.get::<_, i64>(1)? as u64,
                    lines: r.get::<_, i64>(2)? as u64,
                },
                r.get::<_, i64>(3)? as usize,
                r.get::<_, String>(4)?,
            ))
        },
    )?;
    for row in rows {
        let (rec, len, sha) = row?;
        if id
            .head
            .get(..len)
            .is_some_and(|prefix| sha256_hex(prefix) == sha)
        {
            consider(rec);
        }
    }
    Ok(best)
}

fn save_queue(conn: &rusqlite::Connection, log: &str, queue: &Queue) -> anyhow::Result<()> {
    conn.execute("DELETE FROM send_queue WHERE log = ?1", [log])?;
    let newest = queue.values().filter_map(|e| e.seen_at).max();
    let horizon = newest.map(|t| t - chrono::Duration::days(QUEUE_MEMORY_DAYS));
    let mut insert = conn.prepare_cached(
        "INSERT INTO send_queue (log, host, queue_id, sender, recipients, seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for ((host, id), e) in queue {
        let seen = e.seen_at.or(newest);
        if let (Some(seen), Some(horizon)) = (seen, horizon)
            && seen < horizon
        {
            continue;
        }
        insert.execute(params![
            log,
            host,
            id,
            e.sender,
            serde_json::to_string(&e.recipients)?,
            seen.map(time::format).unwrap_or_default(),
        ])?;
    }
    Ok(())
}

/// The sends recorded per recipient domain, all time (for tests and checks).
pub fn totals_by_recipient_domain(ledger: &Ledger) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut stmt = ledger
        .conn
        .prepare("SELECT recipient_domain, sum(count) FROM sends GROUP BY recipient_domain")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (d, n) = row?;
        out.insert(d, n.max(0) as u64);
    }
    Ok(out)
}

/// Whether the ledger has any send data (reports say when it has none).
pub fn has_sends(conn: &rusqlite::Connection) -> anyhow::Result<bool> {
    Ok(conn
        .query_row("SELECT EXISTS (SELECT 1 FROM sends)", [], |r| r.get(0))
        .optional()?
        .unwrap_or(false))
}
