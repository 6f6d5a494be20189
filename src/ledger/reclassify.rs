//! `reclassify`: re-derive every event from the stored raw bytes with the current rules, then
//! rebuild the whole projection, in one transaction, and say what changed.
//!
//! Messages stored by `ingest_failed` are left alone: their bytes may be partial, and their
//! error is the evidence.

use std::collections::BTreeMap;
use std::fmt;

use rusqlite::{Connection, TransactionBehavior, params};

use super::policy::Policy;
use super::{analyze_guarded, insert_events, normalize_address, projection, time};
use crate::analysis::PARSER_VERSION;

/// What a reclassification changed. Its `Display` is what `rebound reclassify` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReclassifyReport {
    pub messages: u64,
    pub events_before: u64,
    pub events_after: u64,
    /// (old kind, new kind) → messages.
    pub kind_changes: BTreeMap<(String, String), u64>,
    /// (old last label, new last label) → addresses.
    pub label_changes: BTreeMap<(String, String), u64>,
    /// (old state, new state) → addresses; states read `suppressed(hard)`.
    pub state_changes: BTreeMap<(String, String), u64>,
}

impl fmt::Display for ReclassifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "re-analysed {} messages: {} events before, {} after",
            self.messages, self.events_before, self.events_after
        )?;
        for ((a, b), n) in &self.kind_changes {
            writeln!(f, "{n} messages {a} → {b}")?;
        }
        for ((a, b), n) in &self.label_changes {
            writeln!(f, "{n} addresses {a} → {b}")?;
        }
        for ((a, b), n) in &self.state_changes {
            writeln!(f, "{n} addresses {a} → {b}")?;
        }
        if self.kind_changes.is_empty()
            && self.label_changes.is_empty()
            && self.state_changes.is_empty()
        {
            writeln!(f, "nothing changed")?;
        }
        Ok(())
    }
}

/// Per address: (state as shown, last label).
fn snapshot(conn: &Connection) -> anyhow::Result<BTreeMap<String, (String, String)>> {
    let mut stmt = conn.prepare(
        "SELECT address, state, suppression_reason, coalesce(last_label, '-') FROM addresses",
    )?;
    let rows = stmt.query_map([], |r| {
        let state: String = r.get(1)?;
        let reason: Option<String> = r.get(2)?;
        let shown = match reason {
            Some(reason) => format!("{state}({reason})"),
            None => state,
        };
        Ok((r.get::<_, String>(0)?, (shown, r.get::<_, String>(3)?)))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn count_events(conn: &Connection) -> anyhow::Result<u64> {
    let n: i64 = conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
    Ok(n as u64)
}

/// Normalises `--since`: a date (`2026-11-01`) or a ledger time.
fn since_bound(since: &str) -> anyhow::Result<String> {
    let s = since.trim();
    if chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() {
        return Ok(format!("{s}T00:00:00Z"));
    }
    time::parse_mail_date(s, time::now())
        .map(time::format)
        .ok_or_else(|| anyhow::anyhow!("--since {since:?}: expected a date like 2026-11-01"))
}

pub fn run(
    conn: &mut Connection,
    policy: &Policy,
    since: Option<&str>,
) -> anyhow::Result<ReclassifyReport> {
    let since = since.map(since_bound).transpose()?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut report = ReclassifyReport {
        events_before: count_events(&tx)?,
        ..Default::default()
    };
    let before = snapshot(&tx)?;

    let messages: Vec<(i64, String, String, bool, String)> = tx
        .prepare(
            "SELECT id, sha256, received_at, internal_date IS NOT NULL, kind FROM messages
             WHERE fetch_failed = 0 AND (?1 IS NULL OR received_at >= ?1) ORDER BY id",
        )?
        .query_map([&since], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    for (id, sha, received_at, internal, old_kind) in messages {
        let raw: Vec<u8> =
            tx.query_row("SELECT raw FROM messages WHERE id = ?1", [id], |r| r.get(0))?;
        let a = analyze_guarded(&raw);
        let now = time::now();
        tx.execute(
            "UPDATE messages SET kind = ?2, mta = ?3, feedback_type = ?4, message_id = ?5,
                 from_address = ?6, subject = ?7, date = ?8, parser_version = ?9, error = ?10,
                 processed_at = ?11
             WHERE id = ?1",
            params![
                id,
                a.kind.as_str(),
                a.mta,
                a.feedback_type,
                a.envelope.message_id,
                a.envelope.from.as_deref().and_then(normalize_address),
                a.envelope.subject,
                a.envelope
                    .date
                    .as_deref()
                    .and_then(|d| time::parse_mail_date(d, now))
                    .map(time::format),
                PARSER_VERSION,
                a.error,
                time::format(now),
            ],
        )?;
        tx.execute("DELETE FROM events WHERE message_id = ?1", [id])?;
        insert_events(&tx, id, &sha, &a, &received_at, internal)?;
        report.messages += 1;
        if old_kind != a.kind.as_str() {
            *report
                .kind_changes
                .entry((old_kind, a.kind.as_str().to_string()))
                .or_default() += 1;
        }
    }
    projection::rebuild_all(&tx, policy)?;

    let after = snapshot(&tx)?;
    report.events_after = count_events(&tx)?;
    let none = ("(none)".to_string(), "(none)".to_string());
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for address in keys {
        let (s0, l0) = before.get(address).unwrap_or(&none);
        let (s1, l1) = after.get(address).unwrap_or(&none);
        if l0 != l1 {
            *report
                .label_changes
                .entry((l0.clone(), l1.clone()))
                .or_default() += 1;
        }
        if s0 != s1 {
            *report
                .state_changes
                .entry((s0.clone(), s1.clone()))
                .or_default() += 1;
        }
    }
    tx.commit()?;
    Ok(report)
}
