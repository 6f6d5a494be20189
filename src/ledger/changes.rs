//! The way out: what a sending system reads from the ledger.
//!
//! - `suppression_log` (written by the projection, see [`super::projection`]): one row per
//!   change of an address's state as senders see it, append-only, its ids a cursor.
//! - [`Ledger::export`]: the suppression list (every address suppressed now) or, after a
//!   cursor, what changed since, one entry per address (its net change: `add` when it is
//!   suppressed now, `remove` when it no longer is), read in one snapshot with the cursor
//!   that goes with it.
//! - hook cursors: how far each `[hooks] on_change` command has taken the log.

use std::collections::BTreeSet;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Ledger, State, SuppressionReason, time};

/// One row of `suppression_log`: what a hook receives, one JSON object per line. Field names
/// are stable (new ones may be added, none renamed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoggedChange {
    /// The log's id: the cursor.
    pub id: i64,
    pub address: String,
    pub old_state: State,
    pub old_reason: Option<SuppressionReason>,
    pub new_state: State,
    /// The suppression reason when `new_state` is `suppressed`.
    pub reason: Option<SuppressionReason>,
    /// The policy rule that brought the address to its new state (`hard`, `complaint`,
    /// `manual_reactivate`, `manual_suppress`...); null when none did (a rebuild under a new
    /// policy found nothing against it).
    pub rule: Option<String>,
    /// `events.id` of the event behind the change.
    pub event: Option<i64>,
    pub event_time: Option<String>,
    /// The mailbox the event's message came from (`files` for `rebound ingest`); null for an
    /// operator's action.
    pub mailbox: Option<String>,
    /// When the change was committed.
    pub at: String,
}

/// Whether an export entry puts an address on the list or takes it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Add,
    Remove,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Remove => "remove",
        }
    }
}

/// One address of an export. Field names are stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportEntry {
    pub op: Op,
    pub address: String,
    /// Its state now: `suppressed` for `add`; for `remove`, `active`, `retry`, `quarantined`,
    /// or `suppressed` for a reason the export does not list (`--reason`).
    pub state: State,
    /// Why it is suppressed now (null when it is not).
    pub reason: Option<SuppressionReason>,
    /// When the address reached that state (the time of the event behind it).
    pub since: Option<String>,
    /// The policy rule that brought it there.
    pub rule: Option<String>,
    /// `events.id` of the event behind it (`rebound explain ADDRESS` shows it).
    pub evidence: Option<i64>,
}

/// What to export.
#[derive(Debug, Clone, Default)]
pub struct ExportQuery {
    /// Only these suppression reasons (empty: all). An address suppressed for another reason
    /// is not on the list: one moving from a listed reason to another is a `remove`.
    pub reasons: BTreeSet<SuppressionReason>,
    /// `None`: the whole list as it is now. `Some(cursor)`: only what changed after the cursor
    /// a previous export returned.
    pub since: Option<i64>,
}

impl ExportQuery {
    fn listed(&self, state: State, reason: Option<SuppressionReason>) -> bool {
        state == State::Suppressed
            && (self.reasons.is_empty() || reason.is_some_and(|r| self.reasons.contains(&r)))
    }
}

impl Ledger {
    /// The id of the newest row of the log (0 when it is empty).
    pub fn log_head(&self) -> anyhow::Result<i64> {
        Ok(self.conn.query_row(
            "SELECT coalesce(max(id), 0) FROM suppression_log",
            [],
            |r| r.get(0),
        )?)
    }

    /// At most `limit` rows of the log after `after`, oldest first.
    pub fn changes_after(&self, after: i64, limit: usize) -> anyhow::Result<Vec<LoggedChange>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, address, old_state, old_reason, new_state, suppression_reason, rule,
                    event_id, event_time, mailbox, at
             FROM suppression_log WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after, limit as i64], |r| {
            Ok(LoggedChange {
                id: r.get(0)?,
                address: r.get(1)?,
                old_state: r.get(2)?,
                old_reason: r.get(3)?,
                new_state: r.get(4)?,
                reason: r.get(5)?,
                rule: r.get(6)?,
                event: r.get(7)?,
                event_time: r.get(8)?,
                mailbox: r.get(9)?,
                at: r.get(10)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Streams an export to `each` (addresses in order) and returns the cursor to give the
    /// next one: the list and the cursor come from one snapshot of the ledger, so nothing
    /// committed meanwhile is lost or given twice. A cursor beyond the log's end is refused
    /// (it came from another ledger).
    pub fn export(
        &self,
        query: &ExportQuery,
        mut each: impl FnMut(ExportEntry) -> anyhow::Result<()>,
    ) -> anyhow::Result<i64> {
        // A read transaction: one snapshot for the head and the rows (WAL readers never block
        // the writer, nor see its uncommitted rows).
        let tx = self.conn.unchecked_transaction()?;
        let head: i64 = tx.query_row(
            "SELECT coalesce(max(id), 0) FROM suppression_log",
            [],
            |r| r.get(0),
        )?;
        match query.since {
            None => {
                let mut stmt = tx.prepare(
                    "SELECT a.address, a.suppression_reason, a.state_since, a.state_event_id,
                            (SELECT sc.rule FROM state_changes sc WHERE sc.address = a.address
                             ORDER BY sc.id DESC LIMIT 1)
                     FROM addresses a WHERE a.state = 'suppressed' ORDER BY a.address",
                )?;
                let mut rows = stmt.query([])?;
                while let Some(r) = rows.next()? {
                    let reason: Option<SuppressionReason> = r.get(1)?;
                    if !query.listed(State::Suppressed, reason) {
                        continue;
                    }
                    each(ExportEntry {
                        op: Op::Add,
                        address: r.get(0)?,
                        state: State::Suppressed,
                        reason,
                        since: r.get(2)?,
                        rule: r.get(4)?,
                        evidence: r.get(3)?,
                    })?;
                }
            }
            Some(cursor) => {
                anyhow::ensure!(
                    cursor >= 0,
                    "a cursor is a number of 0 or more, not {cursor}"
                );
                anyhow::ensure!(
                    cursor <= head,
                    "cursor {cursor} is beyond the end of this ledger's change log ({head}): it was \
                     printed by an export of another ledger; export without --since (and without the \
                     cursor file) for the whole list"
                );
                let mut stmt = tx.prepare(
                    "SELECT address, old_state, old_reason, new_state, suppression_reason, rule,
                            event_id, event_time
                     FROM suppression_log WHERE id > ?1 AND id <= ?2 ORDER BY address, id",
                )?;
                let mut rows = stmt.query(params![cursor, head])?;
                // Per address: where it stood before the first change after the cursor, and
                // its last change.
                let mut current: Option<(bool, ExportEntry)> = None;
                let mut flush = |c: Option<(bool, ExportEntry)>| -> anyhow::Result<()> {
                    if let Some((was_listed, e)) = c {
                        let listed = query.listed(e.state, e.reason);
                        if listed {
                            each(e)?;
                        } else if was_listed {
                            each(ExportEntry {
                                op: Op::Remove,
                                ..e
                            })?;
                        }
                    }
                    Ok(())
                };
                while let Some(r) = rows.next()? {
                    let address: String = r.get(0)?;
                    let last = ExportEntry {
                        op: Op::Add,
                        address,
                        state: r.get(3)?,
                        reason: r.get(4)?,
                        since: r.get(7)?,
                        rule: r.get(5)?,
                        evidence: r.get(6)?,
                    };
                    match &mut current {
                        Some((_, e)) if e.address == last.address => *e = last,
                        _ => {
                            let was = query.listed(r.get(1)?, r.get(2)?);
                            flush(current.take())?;
                            current = Some((was, last));
                        }
                    }
                }
                flush(current.take())?;
            }
        }
        drop(tx);
        Ok(head)
    }

    /// The last log id a hook took (0 for a hook that never succeeded).
    pub fn hook_cursor(&self, hook: &str) -> anyhow::Result<i64> {
        Ok(self
            .conn
            .prepare_cached("SELECT last_id FROM hook_cursors WHERE hook = ?1")?
            .query_row([hook], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    }

    /// A hook took the log up to `up_to` (it exited 0): its cursor moves on, its last failure
    /// is forgotten. A cursor never moves back.
    pub fn hook_delivered(&self, hook: &str, up_to: i64) -> anyhow::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO hook_cursors (hook, last_id, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (hook) DO UPDATE SET last_id = max(last_id, excluded.last_id),
                     updated_at = excluded.updated_at, failed_at = NULL, last_error = NULL",
            )?
            .execute(params![hook, up_to, time::format(time::now())])?;
        Ok(())
    }

    /// A hook failed: its cursor stays, the failure is recorded for operators.
    pub fn hook_failed(&self, hook: &str, error: &str) -> anyhow::Result<()> {
        let now = time::format(time::now());
        self.conn
            .prepare_cached(
                "INSERT INTO hook_cursors (hook, last_id, updated_at, failed_at, last_error)
                 VALUES (?1, 0, ?2, ?2, ?3)
                 ON CONFLICT (hook) DO UPDATE SET failed_at = excluded.failed_at,
                     last_error = excluded.last_error",
            )?
            .execute(params![hook, now, error])?;
        Ok(())
    }
}
