//! Writing a batch of prepared messages: one transaction holding their rows, their events, the
//! IMAP folders' watermarks and the projection of everything they touched.
//!
//! A message is new or a duplicate by the database's own word: its row is inserted with
//! `ON CONFLICT DO NOTHING` against the unique sha256 and the unique IMAP position, so the
//! common case (a new message) costs no lookup. Nothing in the batch has a savepoint: when any
//! part of it fails, the whole transaction is rolled back and the batch is written again one
//! message per transaction, so that only the culprit fails (and, for an IMAP folder, nothing
//! after it is stored: its watermark never passes a message that is not).

use std::collections::{BTreeMap, HashSet};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::projection::{self, NewEvent};
use super::raw::StoredRaw;
use super::vocabulary::Role;
use super::{Ledger, Origin, domain_of, normalize_address, time};
use crate::analysis::{self, Action, Analysis, Kind, Label};

/// One message ready for the ledger: hashed, analysed, its raw bytes in their stored form (see
/// `crate::ingest`, which prepares them on the analysis threads).
#[derive(Debug, Clone)]
pub struct Prepared {
    /// sha256 of the raw bytes as received (hex): the idempotency key.
    pub sha256: String,
    pub origin: Origin,
    pub analysis: Analysis,
    pub raw: StoredRaw,
    /// Stored because the message could not be fetched whole, or failed again and again: its
    /// bytes may be partial, `analysis` is `unparsed` with the reason.
    pub fetch_failed: bool,
}

/// What the ledger did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `messages.id` of the stored (or already present) message.
    pub message_row: i64,
    /// The message was already in the ledger (same bytes, or same IMAP position): nothing
    /// changed except, for IMAP, the folder's watermark.
    pub duplicate: bool,
    pub kind: Kind,
    /// The labels of the message's bounced recipients that count, in order.
    pub labels: Vec<Label>,
    /// Recipients stored as forged: evidence that counts against nothing (see
    /// `analysis::Settings::analyze`).
    pub forged: usize,
}

/// The wall clock of one batch, read and formatted once: `processed_at`, `updated_at` and the
/// fallback `received_at` of every row of the batch.
#[derive(Debug, Clone)]
pub struct Clock {
    pub now: chrono::DateTime<chrono::Utc>,
    pub text: String,
}

impl Clock {
    pub fn now() -> Clock {
        let now = time::now();
        Clock {
            now,
            text: time::format(now),
        }
    }
}

impl Ledger {
    /// Writes a batch of prepared messages in one transaction (see the module docs); each
    /// message's outcome in its slot. A batch that fails as a whole is written again one message
    /// per transaction.
    pub fn write(&mut self, batch: &[Prepared]) -> anyhow::Result<Vec<anyhow::Result<Outcome>>> {
        match self.write_once(batch) {
            Err(e) if batch.len() > 1 => {
                tracing::debug!(error = %format!("{e:#}"), "batch failed: one message per transaction");
                let mut outcomes = Vec::with_capacity(batch.len());
                for n in 0..batch.len() {
                    let outcome = self
                        .write_once(&batch[n..n + 1])
                        .and_then(|mut o| o.pop().context("no outcome for the message"));
                    let stop = outcome.is_err() && batch[n].origin.imap_key().is_some();
                    outcomes.push(outcome.map_err(|e| e.context("not stored")));
                    if stop {
                        break;
                    }
                }
                while outcomes.len() < batch.len() {
                    outcomes.push(Err(anyhow::anyhow!(
                        "not stored: an earlier message of its folder failed"
                    )));
                }
                Ok(outcomes)
            }
            Err(e) => Ok(vec![Err(e)]),
            Ok(outcomes) => Ok(outcomes.into_iter().map(Ok).collect()),
        }
    }

    /// Writes a batch in one transaction, all or nothing (the fast path of [`Ledger::write`],
    /// for callers that group batches and fall back to writing them one by one).
    pub fn write_together(&mut self, batch: &[&Prepared]) -> anyhow::Result<Vec<Outcome>> {
        self.write_once(batch)
    }

    fn write_once<P: std::borrow::Borrow<Prepared>>(
        &mut self,
        batch: &[P],
    ) -> anyhow::Result<Vec<Outcome>> {
        let clock = Clock::now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut events: Vec<NewEvent> = Vec::new();
        let mut outcomes = Vec::with_capacity(batch.len());
        // The highest UID per folder (and UIDVALIDITY): one watermark update per folder.
        let mut folders: BTreeMap<(&str, &str), (u32, u32)> = BTreeMap::new();
        for p in batch {
            let p: &Prepared = p.borrow();
            let outcome = match insert_message(&tx, p, &clock, &self.rules)? {
                Some((row, received)) => {
                    let Counted { labels, forged } = insert_events(
                        &tx,
                        row,
                        &p.sha256,
                        &p.analysis,
                        &received,
                        &clock,
                        &mut events,
                    )?;
                    Outcome {
                        message_row: row,
                        duplicate: false,
                        kind: p.analysis.kind,
                        labels,
                        forged,
                    }
                }
                None => duplicate_outcome(&tx, &p.sha256, &p.origin)?,
            };
            outcomes.push(outcome);
            if let Some((mailbox, folder, uidvalidity, uid)) = p.origin.imap_key() {
                let w = folders
                    .entry((mailbox, folder))
                    .or_insert((uidvalidity, uid));
                if w.0 != uidvalidity {
                    *w = (uidvalidity, uid);
                } else {
                    w.1 = w.1.max(uid);
                }
            }
        }
        for ((mailbox, folder), (uidvalidity, uid)) in folders {
            advance_folder(&tx, mailbox, folder, uidvalidity, uid, &clock)?;
        }
        projection::apply(&tx, &self.policy, &events, &clock)?;
        tx.commit()?;
        Ok(outcomes)
    }

    /// Which of these sha256s are stored already: a caller about to analyse a batch skips
    /// what the ledger has (a rescan of files is then nearly free).
    pub fn known(&self, shas: &[String]) -> anyhow::Result<HashSet<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM messages WHERE sha256 = ?1")?;
        let mut out = HashSet::new();
        for sha in shas {
            if stmt.exists([sha])? {
                out.insert(sha.clone());
            }
        }
        Ok(out)
    }

    /// The stored UIDVALIDITY and the highest UID done for a mailbox folder.
    pub fn folder_state(
        &self,
        mailbox: &str,
        folder: &str,
    ) -> anyhow::Result<Option<super::FolderState>> {
        Ok(self
            .conn
            .query_row(
                "SELECT uidvalidity, last_uid FROM imap_folders WHERE mailbox = ?1 AND folder = ?2",
                [mailbox, folder],
                |r| {
                    Ok(super::FolderState {
                        uidvalidity: r.get(0)?,
                        last_uid: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }
}

/// Advances a folder's watermark (a new UIDVALIDITY starts it over).
fn advance_folder(
    tx: &Connection,
    mailbox: &str,
    folder: &str,
    uidvalidity: u32,
    uid: u32,
    clock: &Clock,
) -> anyhow::Result<()> {
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
    .execute(params![mailbox, folder, uidvalidity, uid, clock.text])?;
    Ok(())
}

/// When a message reached the ledger, as stored with it: its `received_at` (INTERNALDATE, else
/// the time of ingestion), and whether that is the INTERNALDATE.
pub(super) struct Received {
    pub at: String,
    pub is_internal_date: bool,
}

/// Inserts a message's row; `None` when it is a duplicate (same sha256, or same IMAP
/// position), which the unique indexes tell.
fn insert_message(
    tx: &Connection,
    p: &Prepared,
    clock: &Clock,
    rules: &str,
) -> anyhow::Result<Option<(i64, Received)>> {
    let a = &p.analysis;
    let origin = &p.origin;
    let internal_date = origin
        .internal_date
        .as_deref()
        .and_then(|d| time::parse_mail_date(d, clock.now))
        .map(time::format);
    let received_at = internal_date.as_deref().unwrap_or(&clock.text);
    let date = a
        .envelope
        .date
        .as_deref()
        .and_then(|d| time::parse_mail_date(d, clock.now))
        .map(time::format);
    let inserted = tx
        .prepare_cached(
            "INSERT INTO messages (sha256, mailbox, folder, uidvalidity, uid, source_path, message_id,
                 from_address, subject, date, received_at, processed_at, kind, mta, feedback_type,
                 parser_version, error, fetch_failed, raw_size, raw, internal_date, raw_encoding, rules)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
                 ?19, ?20, ?21, ?22, ?23)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            p.sha256,
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
            clock.text,
            a.kind,
            a.mta,
            a.feedback_type,
            analysis::PARSER_VERSION,
            a.error,
            p.fetch_failed,
            p.raw.size as i64,
            p.raw.bytes,
            internal_date,
            p.raw.encoding.column(),
            rules,
        ])?;
    Ok((inserted == 1).then(|| {
        (
            tx.last_insert_rowid(),
            Received {
                at: received_at.to_string(),
                is_internal_date: internal_date.is_some(),
            },
        )
    }))
}

/// The outcome of a message that is already stored: its row, kind and labels.
fn duplicate_outcome(tx: &Connection, sha: &str, origin: &Origin) -> anyhow::Result<Outcome> {
    let by_hash: Option<(i64, Kind)> = tx
        .prepare_cached("SELECT id, kind FROM messages WHERE sha256 = ?1")?
        .query_row([sha], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let found = match (by_hash, origin.imap_key()) {
        (Some(f), _) => Some(f),
        (None, Some((mailbox, folder, uidvalidity, uid))) => tx
            .prepare_cached(
                "SELECT id, kind FROM messages
                 WHERE mailbox = ?1 AND folder = ?2 AND uidvalidity = ?3 AND uid = ?4",
            )?
            .query_row(params![mailbox, folder, uidvalidity, uid], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?,
        (None, None) => None,
    };
    let (row, kind) = found.with_context(|| format!("message {sha} vanished from the ledger"))?;
    let labels = tx
        .prepare_cached(
            "SELECT label FROM events
             WHERE message_id = ?1 AND kind = 'bounce' AND label IS NOT NULL AND forged = 0
             ORDER BY recipient_index",
        )?
        .query_map([row], |r| r.get::<_, Label>(0))?
        .collect::<Result<_, _>>()?;
    let forged: i64 = tx
        .prepare_cached(
            "SELECT count(*) FROM events WHERE message_id = ?1 AND role = 'recipient' AND forged = 1",
        )?
        .query_row([row], |r| r.get(0))?;
    Ok(Outcome {
        message_row: row,
        duplicate: true,
        kind,
        labels,
        forged: forged as usize,
    })
}

/// What a message's events count: the labels of its bounced recipients that count, and how
/// many recipients were stored as forged.
pub(super) struct Counted {
    pub labels: Vec<Label>,
    pub forged: usize,
}

/// Writes the events of one analysed message and adds them to `new` for the projection;
/// returns the labels of its bounced recipients that count. The event time is the report's
/// Last-Attempt-Date, else the message's Date, else its `received_at` (stored with it, so that a
/// reclassify derives the very same time).
pub(super) fn insert_events(
    tx: &Connection,
    message_row: i64,
    sha: &str,
    a: &Analysis,
    received: &Received,
    clock: &Clock,
    new: &mut Vec<NewEvent>,
) -> anyhow::Result<Counted> {
    let (received_at, received_is_internal) = (&received.at, received.is_internal_date);
    let message_date = a
        .envelope
        .date
        .as_deref()
        .and_then(|d| time::parse_mail_date(d, clock.now));
    let original_sender = a.original.from.as_deref().and_then(normalize_address);
    let sender_domain = original_sender.as_deref().map(domain_of);
    let fallback = || match message_date {
        Some(t) => (time::format(t), "date"),
        None if received_is_internal => (received_at.clone(), "internal_date"),
        None => (received_at.clone(), "ingested"),
    };
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (message_id, recipient_index, role, address, domain, kind, action, label,
             reason, status, reply_code, diagnostic, remote_mta, rule, original_message_id,
             original_sender, sender_domain, event_time, time_source, sort_key, phase,
             original_recipient, final_recipient, return_path, signature, forged, campaign)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20,
             ?21, ?22, ?23, ?24, ?25, ?26, ?27)",
    )?;
    let return_path = a.verp.as_ref().map(|v| v.return_path.as_str());
    let mut labels = Vec::new();
    let mut forged = 0;
    for (i, r) in a.recipients.iter().enumerate() {
        let Some(address) = normalize_address(&r.address) else {
            continue;
        };
        let domain = domain_of(&address);
        let kind = recipient_kind(a.kind, r.action.as_ref());
        let (event_time, source) = match r
            .last_attempt
            .as_deref()
            .and_then(|d| time::parse_mail_date(d, clock.now))
        {
            Some(t) => (time::format(t), "last_attempt"),
            None => fallback(),
        };
        insert.execute(params![
            message_row,
            i as i64,
            Role::Recipient,
            address,
            domain,
            kind,
            r.action,
            r.label,
            r.reason,
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
            r.phase,
            r.original_recipient,
            r.final_recipient,
            return_path,
            r.signature,
            r.forged,
            a.original.campaign,
        ])?;
        if r.forged {
            forged += 1;
        } else if kind == "bounce"
            && let Some(label) = r.label
        {
            labels.push(label);
        }
        new.push(NewEvent {
            id: tx.last_insert_rowid(),
            address,
            domain,
            time: event_time,
            sort_key: sha.to_string(),
            index: i as i64,
            role: Role::Recipient,
            kind: kind.to_string(),
            action: r.action.clone(),
            label: r.label,
            reason: r.reason,
            status: r.status.clone(),
            diagnostic: r.diagnostic.clone(),
            suppression: None,
            forged: r.forged,
        });
    }
    // The message's own author: alive when it writes (auto-reply, a person's reply), or the
    // unsubscribing address when the request names nobody else.
    let sender_kind = match a.kind {
        Kind::AutoReply | Kind::Other => Some(a.kind),
        Kind::Unsubscribe if new.last().is_none_or(|e| e.sort_key != sha) => Some(a.kind),
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
            Role::Sender,
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
            return_path,
            a.verp.as_ref().map(|v| v.signature),
            a.verp_forged(),
            a.original.campaign,
        ])?;
        new.push(NewEvent {
            id: tx.last_insert_rowid(),
            address,
            domain,
            time: event_time,
            sort_key: sha.to_string(),
            index: -1,
            role: Role::Sender,
            kind: kind.as_str().to_string(),
            action: None,
            label: None,
            reason: None,
            status: None,
            diagnostic: None,
            suppression: None,
            forged: a.verp_forged(),
        });
    }
    Ok(Counted { labels, forged })
}

/// The kind of one recipient's event: in a DSN each recipient has its own Action, and a
/// delivered recipient in a report that failed for another is alive, not bounced.
fn recipient_kind(message: Kind, action: Option<&Action>) -> &'static str {
    match message {
        Kind::Bounce | Kind::Delay | Kind::DeliveryReport => match action {
            Some(Action::Failed) => "bounce",
            Some(Action::Delayed) => "delay",
            Some(a) if a.is_success() => "delivery_report",
            _ => message.as_str(),
        },
        k => k.as_str(),
    }
}
