//! `reclassify`: re-derive events from the stored raw bytes with the current rule table, then
//! rebuild the whole projection, in one transaction, and say what changed.
//!
//! By default only the messages an older rule table, other `[verp]` settings (or an older
//! parser) decided are re-derived: each message stores the fingerprint of the settings that
//! classified it ([`crate::analysis::Settings::fingerprint`]). `--all`
//! re-derives every one. Messages stored because they could not be fetched whole are left
//! alone: their bytes may be partial, and their error is the evidence. Messages whose raw bytes
//! retention has purged cannot be re-derived: they keep their events and are counted apart.

use std::collections::BTreeMap;
use std::fmt;

use rusqlite::{Connection, TransactionBehavior, params};

use super::policy::Policy;
use super::raw::{self, RawEncoding};
use super::write::{Clock, Received, insert_events};
use super::{normalize_address, projection, time};
use crate::analysis::{Analysis, PARSER_VERSION, Settings};

/// What a reclassification changed. Its `Display` is what `rebound reclassify` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReclassifyReport {
    pub messages: u64,
    /// Messages decided by the current rule table and parser, left as they were.
    pub current: u64,
    /// Messages that would have been re-derived, but whose raw bytes were purged (retention):
    /// left as they were.
    pub raw_purged: u64,
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
            "re-analysed {} messages decided by an older rule table or parser ({} already current, left as they were): {} events before, {} after",
            self.messages, self.current, self.events_before, self.events_after
        )?;
        if self.raw_purged > 0 {
            writeln!(
                f,
                "{} messages could not be re-derived: their raw bytes were purged (see [retention]); their events are kept as they were",
                self.raw_purged
            )?;
        }
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
    rules: &Settings,
    since: Option<&str>,
    all: bool,
) -> anyhow::Result<ReclassifyReport> {
    let since = since.map(since_bound).transpose()?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut report = ReclassifyReport {
        events_before: count_events(&tx)?,
        ..Default::default()
    };
    let before = snapshot(&tx)?;
    let clock = Clock::now();

    #[allow(clippy::type_complexity)]
    let messages: Vec<(i64, String, String, bool, String, bool, bool)> = tx
        .prepare(
            "SELECT id, sha256, received_at, internal_date IS NOT NULL, kind,
                    ?2 OR rules IS NOT ?3 OR parser_version IS NOT ?4, raw_purged_at IS NOT NULL
             FROM messages
             WHERE fetch_failed = 0 AND (?1 IS NULL OR received_at >= ?1) ORDER BY id",
        )?
        .query_map(
            params![&since, all, rules.fingerprint(), PARSER_VERSION],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            },
        )?
        .collect::<Result<_, _>>()?;
    let mut new_events = Vec::new();
    for (id, sha, received_at, internal, old_kind, stale, purged) in messages {
        if !stale {
            report.current += 1;
            continue;
        }
        if purged {
            report.raw_purged += 1;
            continue;
        }
        let (bytes, encoding, size): (Vec<u8>, Option<String>, i64) = tx.query_row(
            "SELECT raw, raw_encoding, raw_size FROM messages WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let raw = raw::decode(
            bytes,
            RawEncoding::from_column(encoding.as_deref())?,
            size as usize,
        )?;
        let a = guarded(&raw, rules);
        let now = clock.now;
        tx.execute(
            "UPDATE messages SET kind = ?2, mta = ?3, feedback_type = ?4, message_id = ?5,
                 from_address = ?6, subject = ?7, date = ?8, parser_version = ?9, error = ?10,
                 processed_at = ?11, rules = ?12
             WHERE id = ?1",
            params![
                id,
                a.kind,
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
                clock.text,
                rules.fingerprint(),
            ],
        )?;
        tx.execute("DELETE FROM events WHERE message_id = ?1", [id])?;
        let received = Received {
            at: received_at,
            is_internal_date: internal,
        };
        insert_events(&tx, id, &sha, &a, &received, &clock, &mut new_events)?;
        report.messages += 1;
        if old_kind != a.kind.as_str() {
            *report
                .kind_changes
                .entry((old_kind, a.kind.as_str().to_string()))
                .or_default() += 1;
        }
    }
    if report.messages > 0 {
        projection::rebuild_all(&tx, policy)?;
    }

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

/// The analysis is promised never to panic; if it does anyway, the message is still kept.
fn guarded(raw: &[u8], settings: &Settings) -> Analysis {
    std::panic::catch_unwind(|| settings.analyze(raw))
        .unwrap_or_else(|_| Analysis::unparsed("internal error while analysing this message"))
}
