//! Rebuilding `addresses`, `state_changes` and `domain_pauses` from `events`.
//!
//! The projection of an address depends only on that address's events, and the pauses of a
//! domain only on that domain's blocked / rate-limited events. So an ingest recomputes just
//! the addresses and domains its message touched, by replaying *all* their events in
//! `(event_time, sort_key, recipient_index)` order. A replay per address is cheap (an index
//! range scan), and it is what makes the projection independent of ingestion order: a DSN that
//! arrives late but happened early lands in its right place in the history.

use std::collections::{BTreeSet, HashMap};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};

use super::policy::{self, Fact, PauseFact, Policy, Signal};
use super::time;
use crate::analysis::{Label, Reason};

/// One event row as the replay reads it.
#[derive(Clone)]
struct EventRow {
    id: i64,
    time: String,
    role: String,
    kind: String,
    action: Option<String>,
    label: Option<String>,
    reason: Option<String>,
    status: Option<String>,
    diagnostic: Option<String>,
}

impl EventRow {
    /// Reads the first nine columns of an events query (id, event_time, role, kind, action,
    /// label, reason, status, diagnostic), in that order.
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
        Ok(EventRow {
            id: r.get(0)?,
            time: r.get(1)?,
            role: r.get(2)?,
            kind: r.get(3)?,
            action: r.get(4)?,
            label: r.get(5)?,
            reason: r.get(6)?,
            status: r.get(7)?,
            diagnostic: r.get(8)?,
        })
    }
}

fn parse_label(s: &str) -> Option<Label> {
    match s {
        "hard" => Some(Label::Hard),
        "soft" => Some(Label::Soft),
        "blocked" => Some(Label::Blocked),
        "invalid" => Some(Label::Invalid),
        _ => None,
    }
}

/// What an event means to the policy; see [`Signal`].
fn signal(e: &EventRow) -> Signal {
    match (e.role.as_str(), e.kind.as_str()) {
        ("operator", _) if e.action.as_deref() == Some("reactivate") => Signal::Reactivate,
        ("sender", "auto_reply" | "other") => Signal::Alive,
        ("sender" | "recipient", "unsubscribe") => Signal::Unsubscribe,
        ("recipient", "bounce") => match e.label.as_deref().and_then(parse_label) {
            Some(l) => Signal::Bounce(l),
            None => Signal::UnlabelledBounce,
        },
        ("recipient", "delivery_report") => Signal::Alive,
        ("recipient", "complaint") => Signal::Complaint,
        _ => Signal::Neutral,
    }
}

/// Recomputes the projection of one address from its events (removing it when it has none).
pub fn refresh_address(conn: &Connection, policy: &Policy, address: &str) -> anyhow::Result<()> {
    refresh_address_with(conn, policy, address, &mut Checkpoints::default())
}

/// Fold states of addresses with many events, kept between batches by one [`super::Ledger`].
/// An entry is used only while the ledger still holds exactly the events and state changes it
/// was made from (counted in the same transaction), and only when every new event of the
/// address sorts after them; anything else (another process, a late event, a reclassify) means
/// a full replay. Either way the result is the replay of all the address's events.
///
/// A checkpoint also keeps the address's whole history as facts, within a global budget, so
/// that a late event (one sorting before events already folded) costs a merge and a fold in
/// memory instead of reading the address's every event back from the database; the state
/// changes are then rewritten only from the first one that differs. With old mail arriving
/// in any order (the worst case: thousands of events of one address with equal times), each
/// batch re-folds the busiest addresses, and reading them was most of the ingest.
#[derive(Default)]
pub struct Checkpoints {
    entries: HashMap<String, Checkpoint>,
    /// Facts held in all the histories (bounded by [`HISTORY_MAX`]).
    held: usize,
}

/// Addresses with fewer events are cheap to replay: not worth remembering.
const CHECKPOINT_MIN_EVENTS: usize = 32;
/// Bound on remembered addresses (memory stays flat however long the run).
const CHECKPOINT_MAX: usize = 4096;
/// Bound on the facts held in histories, a few hundred bytes each: beyond it, a checkpoint
/// has no history and a late event means a replay from the database.
const HISTORY_MAX: usize = 65_536;

/// One folded event of a checkpoint's history, in replay order.
struct Entry {
    sort_key: String,
    index: i64,
    fact: Fact,
}

impl Entry {
    /// The replay order: (event_time, sort_key, recipient_index, id), as the queries sort.
    fn key(&self) -> (chrono::DateTime<chrono::Utc>, &str, i64, i64) {
        (
            self.fact.time,
            &self.sort_key,
            self.index,
            self.fact.event_id,
        )
    }
}

/// Merges two histories sorted in replay order.
fn merge(old: Vec<Entry>, new: Vec<Entry>) -> Vec<Entry> {
    let mut out = Vec::with_capacity(old.len() + new.len());
    let mut old = old.into_iter().peekable();
    let mut new = new.into_iter().peekable();
    loop {
        let take_old = match (old.peek(), new.peek()) {
            (Some(a), Some(b)) => a.key() <= b.key(),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return out,
        };
        out.extend(if take_old { old.next() } else { new.next() });
    }
}

struct Checkpoint {
    replay: policy::AddressReplay,
    domain: String,
    /// Sort key of the last event folded: (event_time, sort_key, recipient_index, id).
    last_key: (String, String, i64, i64),
    max_id: i64,
    events: i64,
    /// The last bounce event's row (for the `last_*` columns).
    last_bounce: Option<EventRow>,
    /// Every event folded, in replay order; `None` when over the budget.
    history: Option<Vec<Entry>>,
}

impl Checkpoints {
    pub fn clear(&mut self) {
        self.entries.clear();
        self.held = 0;
    }

    fn remove(&mut self, address: &str) {
        if let Some(cp) = self.entries.remove(address) {
            self.held -= cp.history.map_or(0, |h| h.len());
        }
    }
}

/// Continues a checkpoint when the ledger still matches it; false when a full replay is needed.
fn refresh_from_checkpoint(
    conn: &Connection,
    policy: &Policy,
    address: &str,
    cp: &mut Checkpoint,
    held: &mut usize,
) -> anyhow::Result<bool> {
    let (events, changes): (i64, i64) = conn
        .prepare_cached(
            "SELECT (SELECT count(*) FROM events WHERE address = ?1 AND id <= ?2),
                    (SELECT count(*) FROM state_changes WHERE address = ?1)",
        )?
        .query_row(params![address, cp.max_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if events != cp.events || changes != cp.replay.changes().len() as i64 {
        return Ok(false);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT id, event_time, role, kind, action, label, reason, status, coalesce(diagnostic, note),
                sort_key, recipient_index
         FROM events WHERE address = ?1 AND id > ?2
         ORDER BY event_time, sort_key, recipient_index, id",
    )?;
    let rows: Vec<(EventRow, String, i64)> = stmt
        .query_map(params![address, cp.max_id], |r| {
            Ok((EventRow::from_row(r)?, r.get(9)?, r.get(10)?))
        })?
        .collect::<Result<_, _>>()?;
    let Some((first, sort_key, index)) = rows.first() else {
        return Ok(true); // nothing new: the stored projection is the replay
    };
    let late = (&first.time, sort_key, *index, first.id)
        <= (&cp.last_key.0, &cp.last_key.1, cp.last_key.2, cp.last_key.3);
    // The history grows by the new events, or is dropped when over the budget.
    match cp.history.take() {
        Some(h) if *held + rows.len() <= HISTORY_MAX => {
            *held += rows.len();
            cp.history = Some(h);
        }
        Some(h) => *held -= h.len(),
        None => {}
    }
    if late {
        if cp.history.is_none() {
            return Ok(false); // a late event lands inside the history: replay it all
        }
        refold(conn, policy, address, cp, rows)?;
        return Ok(true);
    }
    let written = cp.replay.changes().len();
    for (e, sort_key, index) in rows {
        let f = fact(&e)?;
        cp.replay.step(policy, &cp.domain, &f);
        cp.events += 1;
        cp.max_id = cp.max_id.max(e.id);
        if let Some(h) = &mut cp.history {
            h.push(Entry {
                sort_key: sort_key.clone(),
                index,
                fact: f,
            });
        }
        cp.last_key = (e.time.clone(), sort_key, index, e.id);
        if matches!(signal(&e), Signal::Bounce(_)) {
            cp.last_bounce = Some(e);
        }
    }
    let p = cp.replay.projection(policy);
    write_address(
        conn,
        policy,
        address,
        &cp.domain,
        &p,
        cp.last_bounce.as_ref(),
    )?;
    insert_changes(conn, address, &p.changes[written..])?;
    Ok(true)
}

/// A late event: merges the new events (`rows`, in replay order) into the checkpoint's history
/// and folds it again from the start, in memory; rewrites the state changes from the first one
/// that differs. The result is the full replay's, without reading the history back.
fn refold(
    conn: &Connection,
    policy: &Policy,
    address: &str,
    cp: &mut Checkpoint,
    rows: Vec<(EventRow, String, i64)>,
) -> anyhow::Result<()> {
    let mut new = Vec::with_capacity(rows.len());
    for (e, sort_key, index) in &rows {
        new.push(Entry {
            sort_key: sort_key.clone(),
            index: *index,
            fact: fact(e)?,
        });
    }
    let history = merge(cp.history.take().unwrap_or_default(), new);
    let mut replay = policy::AddressReplay::default();
    for e in &history {
        replay.step(policy, &cp.domain, &e.fact);
    }
    let p = replay.projection(policy);
    let kept = cp
        .replay
        .changes()
        .iter()
        .zip(&p.changes)
        .take_while(|(old, new)| old == new)
        .count();
    if kept < cp.replay.changes().len() {
        // The rows of an address's changes are in replay order by id (they are only ever
        // appended in that order): drop those after the common prefix.
        conn.prepare_cached(
            "DELETE FROM state_changes WHERE id IN
                 (SELECT id FROM state_changes WHERE address = ?1 ORDER BY id LIMIT -1 OFFSET ?2)",
        )?
        .execute(params![address, kept as i64])?;
    }
    insert_changes(conn, address, &p.changes[kept..])?;
    let last = match p.last_bounce_event {
        Some(id) => Some(
            conn.prepare_cached(
                "SELECT id, event_time, role, kind, action, label, reason, status,
                        coalesce(diagnostic, note)
                 FROM events WHERE id = ?1",
            )?
            .query_row([id], EventRow::from_row)?,
        ),
        None => None,
    };
    write_address(conn, policy, address, &cp.domain, &p, last.as_ref())?;
    if let Some((e, sort_key, index)) = rows
        .into_iter()
        .max_by(|a, b| (&a.0.time, &a.1, a.2, a.0.id).cmp(&(&b.0.time, &b.1, b.2, b.0.id)))
    {
        let key = (e.time, sort_key, index, e.id);
        if key > cp.last_key {
            cp.last_key = key;
        }
    }
    cp.events = history.len() as i64;
    cp.max_id = history.iter().map(|e| e.fact.event_id).max().unwrap_or(0);
    cp.replay = replay;
    cp.last_bounce = last;
    cp.history = Some(history);
    Ok(())
}

fn fact(e: &EventRow) -> anyhow::Result<Fact> {
    Ok(Fact {
        event_id: e.id,
        time: time::parse_stored(&e.time)
            .with_context(|| format!("event {} has a malformed time {:?}", e.id, e.time))?,
        signal: signal(e),
        reason: e.reason.as_deref().and_then(Reason::parse),
        status: e.status.clone(),
        diagnostic: e.diagnostic.clone(),
    })
}

/// [`refresh_address`], continuing from (and keeping) checkpoints of addresses with many events.
pub fn refresh_address_with(
    conn: &Connection,
    policy: &Policy,
    address: &str,
    checkpoints: &mut Checkpoints,
) -> anyhow::Result<()> {
    if let Some(cp) = checkpoints.entries.get_mut(address) {
        if refresh_from_checkpoint(conn, policy, address, cp, &mut checkpoints.held)? {
            return Ok(());
        }
        checkpoints.remove(address);
    }

    let mut stmt = conn.prepare_cached(
        "SELECT id, event_time, role, kind, action, label, reason, status, coalesce(diagnostic, note), domain,
                sort_key, recipient_index
         FROM events WHERE address = ?1
         ORDER BY event_time, sort_key, recipient_index, id",
    )?;
    let mut last_key = None;
    let mut domain = String::new();
    let mut keys: Vec<(String, i64)> = Vec::new();
    let rows: Vec<EventRow> = stmt
        .query_map([address], |r| {
            Ok((
                EventRow::from_row(r)?,
                r.get::<_, String>(9)?,
                r.get::<_, String>(10)?,
                r.get::<_, i64>(11)?,
            ))
        })?
        .map(|row| {
            row.map(|(e, d, sort_key, index)| {
                domain = d;
                last_key = Some((e.time.clone(), sort_key.clone(), index, e.id));
                keys.push((sort_key, index));
                e
            })
        })
        .collect::<Result<_, _>>()?;

    conn.prepare_cached("DELETE FROM state_changes WHERE address = ?1")?
        .execute([address])?;
    if rows.is_empty() {
        conn.prepare_cached("DELETE FROM addresses WHERE address = ?1")?
            .execute([address])?;
        return Ok(());
    }

    let facts: Vec<Fact> = rows.iter().map(fact).collect::<anyhow::Result<_>>()?;
    let mut replay = policy::AddressReplay::default();
    for f in &facts {
        replay.step(policy, &domain, f);
    }
    let keep = rows.len() >= CHECKPOINT_MIN_EVENTS && checkpoints.held + rows.len() <= HISTORY_MAX;
    let history = keep.then(|| {
        keys.into_iter()
            .zip(facts)
            .map(|((sort_key, index), fact)| Entry {
                sort_key,
                index,
                fact,
            })
            .collect::<Vec<_>>()
    });
    let p = replay.projection(policy);
    let last = p
        .last_bounce_event
        .and_then(|id| rows.iter().find(|e| e.id == id));
    write_address(conn, policy, address, &domain, &p, last)?;
    insert_changes(conn, address, &p.changes)?;
    if rows.len() >= CHECKPOINT_MIN_EVENTS
        && let Some(last_key) = last_key
    {
        if checkpoints.entries.len() >= CHECKPOINT_MAX {
            checkpoints.clear();
        }
        let last_bounce = last.cloned();
        checkpoints.held += history.as_ref().map_or(0, Vec::len);
        checkpoints.entries.insert(
            address.to_string(),
            Checkpoint {
                replay,
                domain,
                max_id: rows.iter().map(|e| e.id).max().unwrap_or(0),
                events: rows.len() as i64,
                last_key,
                last_bounce,
                history,
            },
        );
    }
    Ok(())
}

/// Writes an address's row from its projection.
fn write_address(
    conn: &Connection,
    policy: &Policy,
    address: &str,
    domain: &str,
    p: &policy::AddressProjection,
    last: Option<&EventRow>,
) -> anyhow::Result<()> {
    let fmt = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(time::format);
    conn.prepare_cached(
        "INSERT INTO addresses (address, domain, first_seen_at, last_seen_at, attempts, soft_count,
             last_label, last_reason, last_status, last_diagnostic, last_event_id, state,
             suppression_reason, state_since, state_event_id, next_retry_at, is_role, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
         ON CONFLICT (address) DO UPDATE SET
             domain = excluded.domain, first_seen_at = excluded.first_seen_at,
             last_seen_at = excluded.last_seen_at, attempts = excluded.attempts,
             soft_count = excluded.soft_count, last_label = excluded.last_label,
             last_reason = excluded.last_reason, last_status = excluded.last_status,
             last_diagnostic = excluded.last_diagnostic, last_event_id = excluded.last_event_id,
             state = excluded.state, suppression_reason = excluded.suppression_reason,
             state_since = excluded.state_since, state_event_id = excluded.state_event_id,
             next_retry_at = excluded.next_retry_at, is_role = excluded.is_role,
             updated_at = excluded.updated_at",
    )?
    .execute(params![
        address,
        domain,
        fmt(p.first_seen_at),
        fmt(p.last_seen_at),
        p.attempts,
        p.soft_count,
        last.and_then(|e| e.label.clone()),
        last.and_then(|e| e.reason.clone()),
        last.and_then(|e| e.status.clone()),
        last.and_then(|e| e.diagnostic.clone()),
        last.map(|e| e.id),
        p.state.as_str(),
        p.suppression_reason.map(|r| r.as_str()),
        fmt(p.state_since),
        p.state_event_id,
        fmt(p.next_retry_at),
        policy.is_role(address),
        time::format(time::now()),
    ])?;

    Ok(())
}

/// Appends state changes of an address.
fn insert_changes(
    conn: &Connection,
    address: &str,
    changes: &[policy::Change],
) -> anyhow::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO state_changes (address, changed_at, from_state, to_state, suppression_reason, rule, detail, event_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for c in changes {
        insert.execute(params![
            address,
            time::format(c.at),
            c.from.as_str(),
            c.to.as_str(),
            c.suppression_reason.map(|r| r.as_str()),
            c.rule,
            c.detail,
            c.event_id,
        ])?;
    }
    Ok(())
}

/// Recomputes the pauses of one recipient domain, for both pause reasons.
pub fn refresh_domain(conn: &Connection, policy: &Policy, domain: &str) -> anyhow::Result<()> {
    conn.prepare_cached("DELETE FROM domain_pauses WHERE domain = ?1")?
        .execute([domain])?;
    for (reason, pause_policy, filter) in [
        ("blocked", &policy.blocked, "label = 'blocked'"),
        (
            "rate_limited",
            &policy.rate_limited,
            "reason = 'rate_limited'",
        ),
    ] {
        let facts: Vec<PauseFact> = conn
            .prepare_cached(&format!(
                "SELECT id, event_time FROM events
                 WHERE domain = ?1 AND role = 'recipient' AND kind = 'bounce' AND {filter}
                 ORDER BY event_time, sort_key, recipient_index, id"
            ))?
            .query_map([domain], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?
            .map(|row| {
                let (id, t) = row?;
                Ok(PauseFact {
                    event_id: id,
                    time: time::parse_stored(&t)
                        .with_context(|| format!("event {id} has a malformed time {t:?}"))?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let mut insert = conn.prepare_cached(
            "INSERT INTO domain_pauses (domain, reason, started_at, paused_until, escalation, window_events,
                 event_count, first_event_id, first_event_at, last_event_id, last_event_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        for p in policy::replay_pauses(pause_policy, &facts) {
            insert.execute(params![
                domain,
                reason,
                time::format(p.started_at),
                time::format(p.paused_until),
                p.escalation,
                p.window_events,
                p.event_count,
                p.first_event_id,
                time::format(p.first_event_at),
                p.last_event_id,
                time::format(p.last_event_at),
            ])?;
        }
    }
    Ok(())
}

/// Recomputes the projection of the given addresses and domains.
pub fn refresh(
    conn: &Connection,
    policy: &Policy,
    addresses: &BTreeSet<String>,
    domains: &BTreeSet<String>,
) -> anyhow::Result<()> {
    for a in addresses {
        refresh_address(conn, policy, a)?;
    }
    for d in domains {
        refresh_domain(conn, policy, d)?;
    }
    Ok(())
}

/// [`refresh`] with the ledger's checkpoints (see [`Checkpoints`]).
pub fn refresh_with(
    conn: &Connection,
    policy: &Policy,
    addresses: &BTreeSet<String>,
    domains: &BTreeSet<String>,
    checkpoints: &mut Checkpoints,
) -> anyhow::Result<()> {
    for a in addresses {
        refresh_address_with(conn, policy, a, checkpoints)?;
    }
    for d in domains {
        refresh_domain(conn, policy, d)?;
    }
    Ok(())
}

/// Throws the whole projection away and replays every event (used by `reclassify`, and when
/// the policy changed).
pub fn rebuild_all(conn: &Connection, policy: &Policy) -> anyhow::Result<()> {
    conn.execute_batch(
        "DELETE FROM state_changes; DELETE FROM addresses; DELETE FROM domain_pauses;",
    )?;
    let addresses: BTreeSet<String> = conn
        .prepare("SELECT DISTINCT address FROM events")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let domains: BTreeSet<String> = conn
        .prepare(
            "SELECT DISTINCT domain FROM events WHERE role = 'recipient' AND kind = 'bounce'
             AND (label = 'blocked' OR reason = 'rate_limited')",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    refresh(conn, policy, &addresses, &domains)
}

/// The current state and suppression reason of an address, if it is known.
pub fn address_state(
    conn: &Connection,
    address: &str,
) -> anyhow::Result<Option<(String, Option<String>)>> {
    Ok(conn
        .query_row(
            "SELECT state, suppression_reason FROM addresses WHERE address = ?1",
            [address],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}
