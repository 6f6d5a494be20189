//! Rebuilding `addresses`, `state_changes` and `domain_pauses` from `events`.
//!
//! The projection of an address depends only on that address's events, and the pauses of a
//! domain only on that domain's blocked / rate-limited events. So an ingest recomputes just
//! the addresses and domains its message touched, by replaying *all* their events in
//! `(event_time, sort_key, recipient_index)` order. A replay per address is cheap (an index
//! range scan), and it is what makes the projection independent of ingestion order: a DSN that
//! arrives late but happened early lands in its right place in the history.

use std::collections::BTreeSet;

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};

use super::policy::{self, Fact, PauseFact, Policy, Signal};
use super::time;
use crate::analysis::{Label, Reason};

/// One event row as the replay reads it.
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
    let mut stmt = conn.prepare_cached(
        "SELECT id, event_time, role, kind, action, label, reason, status, coalesce(diagnostic, note), domain
         FROM events WHERE address = ?1
         ORDER BY event_time, sort_key, recipient_index, id",
    )?;
    let mut domain = String::new();
    let rows: Vec<EventRow> = stmt
        .query_map([address], |r| {
            Ok((
                EventRow {
                    id: r.get(0)?,
                    time: r.get(1)?,
                    role: r.get(2)?,
                    kind: r.get(3)?,
                    action: r.get(4)?,
                    label: r.get(5)?,
                    reason: r.get(6)?,
                    status: r.get(7)?,
                    diagnostic: r.get(8)?,
                },
                r.get::<_, String>(9)?,
            ))
        })?
        .map(|row| {
            row.map(|(e, d)| {
                domain = d;
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

    let facts: Vec<Fact> = rows
        .iter()
        .map(|e| {
            Ok(Fact {
                event_id: e.id,
                time: time::parse_stored(&e.time)
                    .with_context(|| format!("event {} has a malformed time {:?}", e.id, e.time))?,
                signal: signal(e),
                reason: e.reason.as_deref().and_then(Reason::parse),
                status: e.status.clone(),
                diagnostic: e.diagnostic.clone(),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let p = policy::replay_address(policy, &domain, &facts);
    let last = p
        .last_bounce_event
        .and_then(|id| rows.iter().find(|e| e.id == id));
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

    let mut insert = conn.prepare_cached(
        "INSERT INTO state_changes (address, changed_at, from_state, to_state, suppression_reason, rule, detail, event_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for c in &p.changes {
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
