//! `rebound explain ADDRESS --json`: the same account as the text, as one JSON object for
//! programs. Field names are stable (fields may be added, never renamed or removed); times are
//! UTC text (`2026-11-22T14:03:00Z`); a missing value is `null`.
//!
//! ```json
//! {"address":"ana@example.org","domain":"example.org","is_role":false,
//!  "state":"suppressed","suppression_reason":"hard","state_since":"...","state_event":3,
//!  "next_retry_at":null,"attempts":1,"soft_count":0,"first_seen_at":"...","last_seen_at":"...",
//!  "last_bounce":{"event":3,"label":"hard","reason":"user_unknown","status":"5.1.1","diagnostic":"..."},
//!  "domain_pauses":[{"reason":"blocked","started_at":"...","paused_until":"...","event_count":5,"active":false}],
//!  "events":[{"id":3,"time":"...","time_source":"last_attempt","role":"recipient","kind":"bounce",
//!     "action":"failed","label":"hard","reason":"user_unknown","phase":"rcpt_to","status":"5.1.1",
//!     "reply_code":550,"diagnostic":"...","note":null,"rule":"...","remote_mta":"...",
//!     "original_recipient":"...","final_recipient":"...","original_message_id":"...",
//!     "original_sender":"...","suppression_reason":null,"return_path":null,"signature":null,
//!     "forged":false,
//!     "message":{"id":2,"kind":"bounce","source_path":"...","mailbox":null,"folder":null,"uid":null,
//!                "received_at":"...","raw_purged_at":null}}],
//!  "state_changes":[{"at":"...","from":"active","to":"suppressed","suppression_reason":"hard",
//!     "rule":"hard","detail":"...","event":3}]}
//! ```
//!
//! `events` are in replay order (oldest first), `message` is null for an operator's action,
//! `state_changes` in the order the policy made them.

use std::io::Write;
use std::process::ExitCode;

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

#[derive(Serialize)]
struct Explained {
    address: String,
    domain: String,
    is_role: bool,
    state: String,
    suppression_reason: Option<String>,
    state_since: Option<String>,
    state_event: Option<i64>,
    next_retry_at: Option<String>,
    attempts: i64,
    soft_count: i64,
    first_seen_at: String,
    last_seen_at: String,
    last_bounce: Option<LastBounce>,
    domain_pauses: Vec<Pause>,
    events: Vec<Event>,
    state_changes: Vec<StateChange>,
}

#[derive(Serialize)]
struct LastBounce {
    event: Option<i64>,
    label: Option<String>,
    reason: Option<String>,
    status: Option<String>,
    diagnostic: Option<String>,
}

#[derive(Serialize)]
struct Pause {
    reason: String,
    started_at: String,
    paused_until: String,
    event_count: i64,
    active: bool,
}

#[derive(Serialize)]
struct Event {
    id: i64,
    time: String,
    time_source: String,
    role: String,
    kind: String,
    action: Option<String>,
    label: Option<String>,
    reason: Option<String>,
    phase: Option<String>,
    status: Option<String>,
    reply_code: Option<i64>,
    diagnostic: Option<String>,
    note: Option<String>,
    rule: Option<String>,
    remote_mta: Option<String>,
    original_recipient: Option<String>,
    final_recipient: Option<String>,
    original_message_id: Option<String>,
    original_sender: Option<String>,
    suppression_reason: Option<String>,
    /// The VERP address the message was delivered to, when `[verp]` decoded one.
    return_path: Option<String>,
    /// Its tag: `valid`, `invalid`, `missing`, `none`; null without `[verp]`.
    signature: Option<String>,
    /// Stored as evidence, counted against nothing.
    forged: bool,
    message: Option<Message>,
}

#[derive(Serialize)]
struct Message {
    id: i64,
    kind: String,
    source_path: Option<String>,
    mailbox: Option<String>,
    folder: Option<String>,
    uid: Option<i64>,
    received_at: String,
    raw_purged_at: Option<String>,
}

#[derive(Serialize)]
struct StateChange {
    at: String,
    from: String,
    to: String,
    suppression_reason: Option<String>,
    rule: String,
    detail: String,
    event: Option<i64>,
}

/// Prints the address's account as one JSON line; exit 1 (and nothing on stdout) for an
/// address the ledger does not hold.
pub fn print(conn: &Connection, address: &str) -> anyhow::Result<ExitCode> {
    let Some(explained) = explain(conn, address)? else {
        tracing::error!("{address}: not in the ledger");
        return Ok(ExitCode::from(1));
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &explained)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}

fn explain(conn: &Connection, address: &str) -> anyhow::Result<Option<Explained>> {
    let row = conn
        .query_row(
            "SELECT domain, is_role, state, suppression_reason, state_since, state_event_id,
                    next_retry_at, attempts, soft_count, first_seen_at, last_seen_at,
                    last_event_id, last_label, last_reason, last_status, last_diagnostic
             FROM addresses WHERE address = ?1",
            [address],
            |r| {
                let last = LastBounce {
                    event: r.get(11)?,
                    label: r.get(12)?,
                    reason: r.get(13)?,
                    status: r.get(14)?,
                    diagnostic: r.get(15)?,
                };
                let any = last.event.is_some() || last.label.is_some() || last.status.is_some();
                Ok(Explained {
                    address: address.to_string(),
                    domain: r.get(0)?,
                    is_role: r.get(1)?,
                    state: r.get(2)?,
                    suppression_reason: r.get(3)?,
                    state_since: r.get(4)?,
                    state_event: r.get(5)?,
                    next_retry_at: r.get(6)?,
                    attempts: r.get(7)?,
                    soft_count: r.get(8)?,
                    first_seen_at: r.get(9)?,
                    last_seen_at: r.get(10)?,
                    last_bounce: any.then_some(last),
                    domain_pauses: Vec::new(),
                    events: Vec::new(),
                    state_changes: Vec::new(),
                })
            },
        )
        .optional()?;
    let Some(mut x) = row else {
        return Ok(None);
    };
    x.domain_pauses = conn
        .prepare(
            "SELECT reason, started_at, paused_until, event_count,
                    paused_until > strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
             FROM domain_pauses WHERE domain = ?1 ORDER BY started_at",
        )?
        .query_map([&x.domain], |r| {
            Ok(Pause {
                reason: r.get(0)?,
                started_at: r.get(1)?,
                paused_until: r.get(2)?,
                event_count: r.get(3)?,
                active: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    x.events = conn
        .prepare(
            "SELECT e.id, e.event_time, e.time_source, e.role, e.kind, e.action, e.label, e.reason,
                    e.phase, e.status, e.reply_code, e.diagnostic, e.note, e.rule, e.remote_mta,
                    e.original_recipient, e.final_recipient, e.original_message_id, e.original_sender,
                    e.suppression_reason,
                    m.id, m.kind, m.source_path, m.mailbox, m.folder, m.uid, m.received_at, m.raw_purged_at,
                    e.return_path, e.signature, e.forged
             FROM events e LEFT JOIN messages m ON m.id = e.message_id
             WHERE e.address = ?1 ORDER BY e.event_time, e.sort_key, e.recipient_index, e.id",
        )?
        .query_map([address], |r| {
            let message = match r.get::<_, Option<i64>>(20)? {
                Some(id) => Some(Message {
                    id,
                    kind: r.get(21)?,
                    source_path: r.get(22)?,
                    mailbox: r.get(23)?,
                    folder: r.get(24)?,
                    uid: r.get(25)?,
                    received_at: r.get(26)?,
                    raw_purged_at: r.get(27)?,
                }),
                None => None,
            };
            Ok(Event {
                id: r.get(0)?,
                time: r.get(1)?,
                time_source: r.get(2)?,
                role: r.get(3)?,
                kind: r.get(4)?,
                action: r.get(5)?,
                label: r.get(6)?,
                reason: r.get(7)?,
                phase: r.get(8)?,
                status: r.get(9)?,
                reply_code: r.get(10)?,
                diagnostic: r.get(11)?,
                note: r.get(12)?,
                rule: r.get(13)?,
                remote_mta: r.get(14)?,
                original_recipient: r.get(15)?,
                final_recipient: r.get(16)?,
                original_message_id: r.get(17)?,
                original_sender: r.get(18)?,
                suppression_reason: r.get(19)?,
                return_path: r.get(28)?,
                signature: r.get(29)?,
                forged: r.get(30)?,
                message,
            })
        })?
        .collect::<Result<_, _>>()?;
    x.state_changes = conn
        .prepare(
            "SELECT changed_at, from_state, to_state, suppression_reason, rule, detail, event_id
             FROM state_changes WHERE address = ?1 ORDER BY id",
        )?
        .query_map([address], |r| {
            Ok(StateChange {
                at: r.get(0)?,
                from: r.get(1)?,
                to: r.get(2)?,
                suppression_reason: r.get(3)?,
                rule: r.get(4)?,
                detail: r.get(5)?,
                event: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(x))
}
