//! The projection: `addresses`, `state_changes` and `domain_pauses`, a pure function of the
//! events under the policy, kept up to date incrementally.
//!
//! The projection of an address is the fold of its events in replay order (`event_time`, then
//! `sort_key`, `recipient_index`, `id`), and the pauses of a recipient domain (or of a mailbox
//! provider: all its domains, [`Subject`]) the fold of its blocked (or rate-limited) events,
//! weighed against the sends recorded in each event's window when the policy has a rate rule.
//! Sends imported later re-take the decisions they weigh in ([`sends_changed`]), so the
//! projection is a function of events, sends and policy, whatever the order they came in. Where each fold stands is stored with what it projects
//! (`addresses.fold`, `pause_folds`): the policy's state ([`AddressFold`], [`PauseFold`]) and
//! the replay key of the last event folded. So a batch costs, per address it touches, one read
//! of that fold, one step per new event and the rows it changes, however long the address's
//! history: the ledger's cost per message stays flat as it grows.
//!
//! An event that sorts *before* the last one folded (old mail arriving late) cannot be stepped:
//! the address (or domain) is then replayed from all its events, as [`rebuild_all`] does for
//! every one, so that the projection never depends on the order messages arrived in. A
//! property test checks that any arrival order and any split into batches give exactly the
//! full replay.
//!
//! Every write of an address compares what senders see of it ([`Visible`]: its state and
//! suppression reason) before and after, and appends a row to `suppression_log` when they
//! differ, in the same transaction: the net change of a step, a replay or a rebuild, never the
//! steps in between and never a replay that ends where it began. The log is not part of the
//! projection (a rebuild does not rewrite it); folded per address it gives the `addresses`
//! table, which a property test checks too.

use std::collections::BTreeMap;

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::policy::{
    AddressFold, Change, Fact, PauseFact, PauseFold, PausePolicy, PauseStep, Policy, Signal, State,
    SuppressionReason,
};
use super::time;
use super::vocabulary::Role;
use super::write::Clock;
use crate::analysis::{Action, Label, Reason};

/// One event as the projection folds it: the event's row, written in the same transaction.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: i64,
    pub address: String,
    pub domain: String,
    /// `event_time`, as stored.
    pub time: String,
    pub sort_key: String,
    pub index: i64,
    pub role: Role,
    /// The event's kind (`bounce`, `delay`, `manual`...).
    pub kind: String,
    pub action: Option<Action>,
    pub label: Option<Label>,
    pub reason: Option<Reason>,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
    /// The reason an operator gave with `rebound suppress` (`events.suppression_reason`).
    pub suppression: Option<SuppressionReason>,
    /// Evidence that counts against nothing (`events.forged`): folded as neutral, never
    /// counted toward a pause.
    pub forged: bool,
}

/// An event's place in the replay order.
type Key = (String, String, i64, i64);

impl NewEvent {
    fn key(&self) -> Key {
        (
            self.time.clone(),
            self.sort_key.clone(),
            self.index,
            self.id,
        )
    }

    /// What the event means to the policy.
    fn signal(&self) -> Signal {
        if self.forged {
            return Signal::Neutral;
        }
        match (self.role, self.kind.as_str()) {
            (Role::Operator, _)
                if self.action.as_ref().map(Action::as_str) == Some("reactivate") =>
            {
                Signal::Reactivate
            }
            (Role::Operator, _) if self.action.as_ref().map(Action::as_str) == Some("suppress") => {
                Signal::Suppress(
                    self.suppression
                        .filter(|r| r.is_permanent())
                        .unwrap_or(SuppressionReason::Manual),
                )
            }
            (Role::Sender, "auto_reply" | "other") => Signal::Alive,
            (Role::Sender | Role::Recipient, "unsubscribe") => Signal::Unsubscribe,
            (Role::Recipient, "bounce") => match self.label {
                Some(l) => Signal::Bounce(l),
                None => Signal::UnlabelledBounce,
            },
            (Role::Recipient, "delivery_report") => Signal::Alive,
            (Role::Recipient, "complaint") => Signal::Complaint,
            _ => Signal::Neutral,
        }
    }

    fn fact(&self) -> anyhow::Result<Fact> {
        Ok(Fact {
            event_id: self.id,
            time: time::parse_stored(&self.time).with_context(|| {
                format!("event {} has a malformed time {:?}", self.id, self.time)
            })?,
            signal: self.signal(),
            reason: self.reason,
            status: self.status.clone(),
            diagnostic: self.diagnostic.clone(),
        })
    }

    /// The pause reasons this event counts toward.
    fn pause_reasons(&self) -> impl Iterator<Item = &'static str> {
        let counts = self.role == Role::Recipient && self.kind == "bounce" && !self.forged;
        [
            (counts && self.label == Some(Label::Blocked)).then_some("blocked"),
            (counts && self.reason == Some(Reason::RateLimited)).then_some("rate_limited"),
        ]
        .into_iter()
        .flatten()
    }
}

/// An address's fold: the policy's state and the id of the last event folded. Stored in the
/// address's row: the columns hold most of it, `addresses.fold` the rest ([`FoldRest`]).
#[derive(Debug)]
struct StoredFold {
    fold: AddressFold,
    /// `events.id` of the last event folded (none for an address not yet stored).
    last: Option<i64>,
}

/// What `addresses.fold` holds: what the next step needs that no column of the row says, as
/// short JSON (`{"event":52000}`, `{"event":9,"softs":[1767225600],"hard_seen":true}`). Soft
/// bounce times are Unix seconds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct FoldRest {
    event: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    softs: Vec<i64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    hard_seen: bool,
}

impl StoredFold {
    /// The stored fold of an address: `Ok(None)` for an address with no row yet, an error for
    /// a row whose fold is missing or unreadable (the caller replays the address).
    fn load(conn: &Connection, address: &str) -> anyhow::Result<Option<(StoredFold, String)>> {
        let row = conn
            .prepare_cached(
                "SELECT state, suppression_reason, attempts, next_retry_at, last_event_id,
                        first_seen_at, last_seen_at, state_since, state_event_id, fold
                 FROM addresses WHERE address = ?1",
            )?
            .query_row([address], |r| {
                let time = |i: usize| -> rusqlite::Result<Option<chrono::DateTime<chrono::Utc>>> {
                    Ok(r.get::<_, Option<String>>(i)?
                        .and_then(|t| time::parse_stored(&t)))
                };
                Ok((
                    AddressFold {
                        state: r.get(0)?,
                        suppression_reason: r.get(1)?,
                        attempts: r.get(2)?,
                        next_retry_at: time(3)?,
                        last_bounce_event: r.get(4)?,
                        first_seen_at: time(5)?,
                        last_seen_at: time(6)?,
                        state_since: time(7)?,
                        state_event_id: r.get(8)?,
                        softs: Vec::new(),
                        hard_seen: false,
                    },
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(9)?,
                ))
            })
            .optional()?;
        let Some((mut fold, last_seen, rest)) = row else {
            return Ok(None);
        };
        let rest: FoldRest = serde_json::from_str(rest.as_deref().context("no stored fold")?)
            .context("the stored fold is unreadable")?;
        fold.hard_seen = rest.hard_seen;
        fold.softs = rest
            .softs
            .iter()
            .map(|&t| {
                chrono::DateTime::from_timestamp(t, 0).context("a soft bounce time out of range")
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Some((
            StoredFold {
                fold,
                last: Some(rest.event),
            },
            last_seen.context("no last_seen_at")?,
        )))
    }

    /// The text of `addresses.fold`.
    fn rest(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string(&FoldRest {
            event: self.last.unwrap_or_default(),
            softs: self.fold.softs.iter().map(|t| t.timestamp()).collect(),
            hard_seen: self.fold.hard_seen,
        })?)
    }
}

/// Whether `next` sorts after the last event folded: the last one's time is the address's
/// `last_seen_at`, so only a tie reads that event's row for the rest of its key.
fn sorts_after(
    conn: &Connection,
    last: Option<i64>,
    last_seen: &str,
    next: &NewEvent,
) -> anyhow::Result<bool> {
    match next.time.as_str().cmp(last_seen) {
        std::cmp::Ordering::Greater => return Ok(true),
        std::cmp::Ordering::Less => return Ok(false),
        std::cmp::Ordering::Equal => {}
    }
    let Some(id) = last else { return Ok(false) };
    let key: Option<(String, i64)> = conn
        .prepare_cached("SELECT sort_key, recipient_index FROM events WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(key
        .is_some_and(|(sort_key, index)| next.key() > (last_seen.to_string(), sort_key, index, id)))
}

/// A pause fold as stored in `pause_folds`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredPauseFold {
    #[serde(flatten)]
    fold: PauseFold,
    key: Option<Key>,
    /// `domain_pauses.id` of `fold.last`.
    last_row: Option<i64>,
}

/// What a pause is about: one recipient domain, or one provider (every domain of it, events
/// and sends summed). A domain of a provider is paused both ways: its own, and its provider's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    Domain(String),
    Provider(String),
}

impl Subject {
    /// `domain_pauses.scope`, `pause_folds.scope`.
    pub fn scope(&self) -> &'static str {
        match self {
            Subject::Domain(_) => "domain",
            Subject::Provider(_) => "provider",
        }
    }

    /// The domain, or the provider's name (`domain_pauses.domain`).
    pub fn name(&self) -> &str {
        match self {
            Subject::Domain(n) | Subject::Provider(n) => n,
        }
    }

    /// The subjects a recipient domain's events and sends count toward.
    pub fn of_domain(policy: &Policy, domain: &str) -> Vec<Subject> {
        let mut out = vec![Subject::Domain(domain.to_string())];
        out.extend(
            policy
                .providers
                .provider_of(domain)
                .map(|p| Subject::Provider(p.to_string())),
        );
        out
    }
}

/// The pause reasons, each with its policy and the events it counts.
pub const PAUSE_REASONS: [&str; 2] = ["blocked", "rate_limited"];

/// Brings the projection up to date with events just written (in any order): each address
/// and domain they touch is stepped from its stored fold, or replayed when an event arrived
/// late.
pub fn apply(
    conn: &Connection,
    policy: &Policy,
    events: &[NewEvent],
    clock: &Clock,
) -> anyhow::Result<()> {
    let mut by_address: BTreeMap<&str, Vec<&NewEvent>> = BTreeMap::new();
    let mut by_subject: BTreeMap<(Subject, &'static str), Vec<&NewEvent>> = BTreeMap::new();
    let mut domains: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    for e in events {
        by_address.entry(&e.address).or_default().push(e);
        domains.insert(&e.domain);
        let mut reasons = e.pause_reasons().peekable();
        if reasons.peek().is_none() {
            continue;
        }
        let subjects = Subject::of_domain(policy, &e.domain);
        for reason in reasons {
            for s in &subjects {
                by_subject.entry((s.clone(), reason)).or_default().push(e);
            }
        }
    }
    note_provider_domains(conn, policy, domains)?;
    for (address, mut evs) in by_address {
        evs.sort_by_key(|e| e.key());
        let stepped = match StoredFold::load(conn, address) {
            // A new address: nothing was folded before (every address with events has a row).
            Ok(None) => Some(StoredFold {
                fold: AddressFold::default(),
                last: None,
            }),
            Ok(Some((f, last_seen))) => sorts_after(conn, f.last, &last_seen, evs[0])?.then_some(f),
            Err(e) => {
                tracing::warn!(address, error = %format!("{e:#}"), "replaying an address whose stored fold is unusable");
                None
            }
        };
        match stepped {
            Some(f) => step_address(conn, policy, address, f, &evs, clock)?,
            None => replay_address(conn, policy, address, clock)?,
        }
    }
    for ((subject, reason), mut evs) in by_subject {
        evs.sort_by_key(|e| e.key());
        let stored: Option<String> = conn
            .prepare_cached(
                "SELECT fold FROM pause_folds WHERE scope = ?1 AND subject = ?2 AND reason = ?3",
            )?
            .query_row([subject.scope(), subject.name(), reason], |r| r.get(0))
            .optional()?;
        let fold = match stored {
            None => StoredPauseFold::default(),
            Some(json) => serde_json::from_str(&json).with_context(|| {
                format!("the stored pause fold of {} is corrupt", subject.name())
            })?,
        };
        if fold.key.as_ref().is_none_or(|k| evs[0].key() > *k) {
            step_pauses(conn, policy, &subject, reason, fold, &evs)?;
        } else {
            replay_pauses(conn, policy, &subject, reason)?;
        }
    }
    Ok(())
}

/// Records which provider each of these recipient domains belongs to (`provider_domains`:
/// the domains seen in events or sends, under the policy's map), for the provider pauses and
/// the per-provider views.
pub fn note_provider_domains<'a>(
    conn: &Connection,
    policy: &Policy,
    domains: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO provider_domains (domain, provider) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
    )?;
    for d in domains {
        if let Some(p) = policy.providers.provider_of(d) {
            insert.execute([d, p])?;
        }
    }
    Ok(())
}

/// Steps an address's stored fold over its new events (all after the last one folded).
fn step_address(
    conn: &Connection,
    policy: &Policy,
    address: &str,
    mut stored: StoredFold,
    events: &[&NewEvent],
    clock: &Clock,
) -> anyhow::Result<()> {
    let domain = &events[0].domain;
    let before = Visible::of(&stored.fold);
    let mut changes = Vec::new();
    let mut last_bounce: Option<&NewEvent> = None;
    for e in events {
        let fact = e.fact()?;
        changes.extend(stored.fold.step(policy, domain, &fact));
        if matches!(fact.signal, Signal::Bounce(_)) {
            last_bounce = Some(e);
        }
        stored.last = Some(e.id);
    }
    let last = last_bounce.map(LastBounce::of);
    write_address(conn, policy, address, domain, &stored, last.as_ref(), clock)?;
    insert_changes(conn, address, &changes)?;
    log_change(
        conn,
        address,
        before,
        Visible::of(&stored.fold),
        changes.last(),
        clock,
    )
}

/// The last bounce of an address, for its `last_*` columns.
#[derive(Default)]
struct LastBounce {
    id: i64,
    label: Option<Label>,
    reason: Option<Reason>,
    status: Option<String>,
    diagnostic: Option<String>,
}

impl LastBounce {
    fn of(e: &NewEvent) -> LastBounce {
        LastBounce {
            id: e.id,
            label: e.label,
            reason: e.reason,
            status: e.status.clone(),
            diagnostic: e.diagnostic.clone(),
        }
    }
}

/// Replays an address from all its events (its fold is missing, or an event arrived late):
/// its state changes are rewritten, its fold stored anew. An address with no events left is
/// removed.
pub fn replay_address(
    conn: &Connection,
    policy: &Policy,
    address: &str,
    clock: &Clock,
) -> anyhow::Result<()> {
    let before = Visible::stored(conn, address)?;
    replay_address_from(conn, policy, address, clock, before)
}

/// [`replay_address`] of an address that looked like `before` to senders (what the log
/// compares the replay's end with).
fn replay_address_from(
    conn: &Connection,
    policy: &Policy,
    address: &str,
    clock: &Clock,
    before: Visible,
) -> anyhow::Result<()> {
    let rows: Vec<NewEvent> = conn
        .prepare_cached(
            "SELECT id, event_time, role, kind, action, label, reason, status,
                    coalesce(diagnostic, note), domain, sort_key, recipient_index, suppression_reason,
                    forged
             FROM events WHERE address = ?1
             ORDER BY event_time, sort_key, recipient_index, id",
        )?
        .query_map([address], |r| {
            Ok(NewEvent {
                id: r.get(0)?,
                time: r.get(1)?,
                role: r.get(2)?,
                kind: r.get(3)?,
                action: r.get(4)?,
                label: r.get(5)?,
                reason: r.get(6)?,
                status: r.get(7)?,
                diagnostic: r.get(8)?,
                domain: r.get(9)?,
                sort_key: r.get(10)?,
                index: r.get(11)?,
                suppression: r.get(12)?,
                forged: r.get(13)?,
                address: address.to_string(),
            })
        })?
        .collect::<Result<_, _>>()?;
    conn.prepare_cached("DELETE FROM state_changes WHERE address = ?1")?
        .execute([address])?;
    let Some(first) = rows.first() else {
        conn.prepare_cached("DELETE FROM addresses WHERE address = ?1")?
            .execute([address])?;
        return log_change(conn, address, before, Visible::ACTIVE, None, clock);
    };
    let domain = first.domain.clone();
    let mut stored = StoredFold {
        fold: AddressFold::default(),
        last: None,
    };
    let mut changes = Vec::new();
    for e in &rows {
        changes.extend(stored.fold.step(policy, &domain, &e.fact()?));
        stored.last = Some(e.id);
    }
    let last = stored
        .fold
        .last_bounce_event
        .and_then(|id| rows.iter().find(|e| e.id == id))
        .map(LastBounce::of);
    // A replay decides every column, `last_*` included (NULL when no bounce is left).
    let none = LastBounce::default();
    write_address_with(
        conn,
        policy,
        address,
        &domain,
        &stored,
        Some(last.as_ref().unwrap_or(&none)),
        last.is_none(),
        clock,
    )?;
    insert_changes(conn, address, &changes)?;
    log_change(
        conn,
        address,
        before,
        Visible::of(&stored.fold),
        changes.last(),
        clock,
    )
}

/// An address as a sending system sees it: its state and suppression reason. An address the
/// ledger does not hold is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visible {
    pub state: State,
    pub reason: Option<SuppressionReason>,
}

impl Visible {
    pub const ACTIVE: Visible = Visible {
        state: State::Active,
        reason: None,
    };

    fn of(fold: &AddressFold) -> Visible {
        Visible {
            state: fold.state,
            reason: fold.suppression_reason,
        }
    }

    /// What the `addresses` row says now ([`Visible::ACTIVE`] without a row).
    fn stored(conn: &Connection, address: &str) -> anyhow::Result<Visible> {
        Ok(conn
            .prepare_cached("SELECT state, suppression_reason FROM addresses WHERE address = ?1")?
            .query_row([address], |r| {
                Ok(Visible {
                    state: r.get(0)?,
                    reason: r.get(1)?,
                })
            })
            .optional()?
            .unwrap_or(Visible::ACTIVE))
    }
}

/// Appends the net change of an address to `suppression_log`, when there is one. `last` is
/// the last state change the fold made: the rule and event that brought the address where it
/// is now (none when a replay found nothing that moves it from active).
fn log_change(
    conn: &Connection,
    address: &str,
    before: Visible,
    after: Visible,
    last: Option<&Change>,
    clock: &Clock,
) -> anyhow::Result<()> {
    if before == after {
        return Ok(());
    }
    // The last change made is the one that led to the state the fold ends in.
    let last = last.filter(|c| c.to == after.state && c.suppression_reason == after.reason);
    let mailbox: Option<String> = match last {
        Some(c) => conn
            .prepare_cached(
                "SELECT CASE WHEN m.id IS NULL THEN NULL ELSE coalesce(m.mailbox, 'files') END
                 FROM events e LEFT JOIN messages m ON m.id = e.message_id WHERE e.id = ?1",
            )?
            .query_row([c.event_id], |r| r.get(0))
            .optional()?
            .flatten(),
        None => None,
    };
    conn.prepare_cached(
        "INSERT INTO suppression_log (address, old_state, old_reason, new_state, suppression_reason,
             rule, event_id, event_time, mailbox, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        address,
        before.state,
        before.reason,
        after.state,
        after.reason,
        last.map(|c| c.rule),
        last.map(|c| c.event_id),
        last.map(|c| time::format(c.at)),
        mailbox,
        clock.text,
    ])?;
    Ok(())
}

/// Writes an address's row from its fold; `last` replaces the `last_*` columns (a step that
/// folded no bounce keeps them).
fn write_address(
    conn: &Connection,
    policy: &Policy,
    address: &str,
    domain: &str,
    stored: &StoredFold,
    last: Option<&LastBounce>,
    clock: &Clock,
) -> anyhow::Result<()> {
    write_address_with(conn, policy, address, domain, stored, last, false, clock)
}

#[allow(clippy::too_many_arguments)]
fn write_address_with(
    conn: &Connection,
    policy: &Policy,
    address: &str,
    domain: &str,
    stored: &StoredFold,
    last: Option<&LastBounce>,
    no_bounce: bool,
    clock: &Clock,
) -> anyhow::Result<()> {
    let p = stored.fold.projection(policy, Vec::new());
    let fmt = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(time::format);
    conn.prepare_cached(
        "INSERT INTO addresses (address, domain, first_seen_at, last_seen_at, attempts, soft_count,
             last_label, last_reason, last_status, last_diagnostic, last_event_id, state,
             suppression_reason, state_since, state_event_id, next_retry_at, is_role, updated_at, fold)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
         ON CONFLICT (address) DO UPDATE SET
             domain = excluded.domain, first_seen_at = excluded.first_seen_at,
             last_seen_at = excluded.last_seen_at, attempts = excluded.attempts,
             soft_count = excluded.soft_count,
             last_label = CASE WHEN ?20 THEN excluded.last_label ELSE addresses.last_label END,
             last_reason = CASE WHEN ?20 THEN excluded.last_reason ELSE addresses.last_reason END,
             last_status = CASE WHEN ?20 THEN excluded.last_status ELSE addresses.last_status END,
             last_diagnostic = CASE WHEN ?20 THEN excluded.last_diagnostic ELSE addresses.last_diagnostic END,
             last_event_id = CASE WHEN ?20 THEN excluded.last_event_id ELSE addresses.last_event_id END,
             state = excluded.state, suppression_reason = excluded.suppression_reason,
             state_since = excluded.state_since, state_event_id = excluded.state_event_id,
             next_retry_at = excluded.next_retry_at, is_role = excluded.is_role,
             updated_at = excluded.updated_at, fold = excluded.fold",
    )?
    .execute(params![
        address,
        domain,
        fmt(p.first_seen_at),
        fmt(p.last_seen_at),
        p.attempts,
        p.soft_count,
        last.and_then(|e| e.label),
        last.and_then(|e| e.reason),
        last.and_then(|e| e.status.as_deref()),
        last.and_then(|e| e.diagnostic.as_deref()),
        last.filter(|_| !no_bounce).map(|e| e.id),
        p.state,
        p.suppression_reason,
        fmt(p.state_since),
        p.state_event_id,
        fmt(p.next_retry_at),
        policy.is_role(address),
        clock.text,
        stored.rest()?,
        last.is_some(),
    ])?;
    Ok(())
}

/// Appends state changes of an address.
fn insert_changes(conn: &Connection, address: &str, changes: &[Change]) -> anyhow::Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO state_changes (address, changed_at, from_state, to_state, suppression_reason, rule, detail, event_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for c in changes {
        insert.execute(params![
            address,
            time::format(c.at),
            c.from,
            c.to,
            c.suppression_reason,
            c.rule,
            c.detail,
            c.event_id,
        ])?;
    }
    Ok(())
}

fn pause_policy<'p>(policy: &'p Policy, reason: &str) -> &'p PausePolicy {
    if reason == "rate_limited" {
        &policy.rate_limited
    } else {
        &policy.blocked
    }
}

/// The events a pause reason counts, as a condition on `events` (never forged ones; the
/// partial indexes `events_pause_*` hold exactly these).
fn pause_filter(reason: &str) -> &'static str {
    if reason == "rate_limited" {
        "reason = 'rate_limited' AND forged = 0"
    } else {
        "label = 'blocked' AND forged = 0"
    }
}

/// The events of a subject, as a condition on `events` with the subject's name as `?1`.
fn subject_filter(subject: &Subject) -> &'static str {
    match subject {
        Subject::Domain(_) => "domain = ?1",
        Subject::Provider(_) => {
            "domain IN (SELECT domain FROM provider_domains WHERE provider = ?1)"
        }
    }
}

/// The sends recorded to a subject in the hours `first..=last`.
fn sends_in(
    conn: &Connection,
    subject: &Subject,
    first: chrono::DateTime<chrono::Utc>,
    last: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<u64> {
    let sql = match subject {
        Subject::Domain(_) => {
            "SELECT coalesce(sum(count), 0) FROM sends
             WHERE recipient_domain = ?1 AND hour >= ?2 AND hour <= ?3"
        }
        Subject::Provider(_) => {
            "SELECT coalesce(sum(s.count), 0) FROM provider_domains p
             JOIN sends s ON s.recipient_domain = p.domain AND s.hour >= ?2 AND s.hour <= ?3
             WHERE p.provider = ?1"
        }
    };
    let n: i64 = conn.prepare_cached(sql)?.query_row(
        params![subject.name(), time::format(first), time::format(last)],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

/// Folds one event into a stored pause fold, writing the pause rows it starts or extends.
fn step_pause(
    conn: &Connection,
    pp: &PausePolicy,
    subject: &Subject,
    reason: &str,
    stored: &mut StoredPauseFold,
    fact: &PauseFact,
    extended: &mut bool,
) -> anyhow::Result<()> {
    let sends = match stored.fold.sends_needed(pp, fact.time) {
        Some((first, last)) => sends_in(conn, subject, first, last)?,
        None => 0,
    };
    match stored.fold.step(pp, fact, sends) {
        PauseStep::Counted => {}
        PauseStep::Extended => *extended = true,
        PauseStep::Started => {
            if *extended {
                update_last_pause(conn, stored)?;
                *extended = false;
            }
            stored.last_row = Some(insert_pause(conn, subject, reason, stored)?);
        }
    }
    Ok(())
}

/// Steps a subject's pause fold over its new events (all after the last one folded).
fn step_pauses(
    conn: &Connection,
    policy: &Policy,
    subject: &Subject,
    reason: &str,
    mut stored: StoredPauseFold,
    events: &[&NewEvent],
) -> anyhow::Result<()> {
    let pp = pause_policy(policy, reason);
    let mut extended = false;
    for e in events {
        let fact = PauseFact {
            event_id: e.id,
            time: e.fact()?.time,
        };
        step_pause(conn, pp, subject, reason, &mut stored, &fact, &mut extended)?;
        stored.key = Some(e.key());
    }
    if extended {
        update_last_pause(conn, &stored)?;
    }
    save_pause_fold(conn, subject, reason, &stored)
}

/// Replays a subject's pauses for one reason from all its events.
pub fn replay_pauses(
    conn: &Connection,
    policy: &Policy,
    subject: &Subject,
    reason: &str,
) -> anyhow::Result<()> {
    conn.prepare_cached(
        "DELETE FROM domain_pauses WHERE scope = ?1 AND domain = ?2 AND reason = ?3",
    )?
    .execute([subject.scope(), subject.name(), reason])?;
    let rows: Vec<(i64, String, String, i64)> = conn
        .prepare_cached(&format!(
            "SELECT id, event_time, sort_key, recipient_index FROM events
             WHERE {} AND role = 'recipient' AND kind = 'bounce' AND {}
             ORDER BY event_time, sort_key, recipient_index, id",
            subject_filter(subject),
            pause_filter(reason)
        ))?
        .query_map([subject.name()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    let pp = pause_policy(policy, reason);
    let mut stored = StoredPauseFold::default();
    let mut extended = false;
    for (id, t, sort_key, index) in rows {
        let fact = PauseFact {
            event_id: id,
            time: time::parse_stored(&t)
                .with_context(|| format!("event {id} has a malformed time {t:?}"))?,
        };
        step_pause(conn, pp, subject, reason, &mut stored, &fact, &mut extended)?;
        stored.key = Some((t, sort_key, index, id));
    }
    if extended {
        update_last_pause(conn, &stored)?;
    }
    if stored.key.is_none() {
        conn.prepare_cached(
            "DELETE FROM pause_folds WHERE scope = ?1 AND subject = ?2 AND reason = ?3",
        )?
        .execute([subject.scope(), subject.name(), reason])?;
        return Ok(());
    }
    save_pause_fold(conn, subject, reason, &stored)
}

/// Sends were recorded to `domain` in the hours `first..=last` (their starts): every pause
/// decision that weighed (or would now weigh) those hours is taken again. The rate rule at an
/// event weighs the event's hour and the ones before it, so the decisions concerned are those
/// of the events from `first` until `last` plus the window; the subjects (the domain, its
/// provider) with such events are replayed, the others keep their folds (the sends change
/// none of their decisions). Returns how many pause folds were replayed.
pub fn sends_changed(
    conn: &Connection,
    policy: &Policy,
    changes: &BTreeMap<String, (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>,
) -> anyhow::Result<usize> {
    note_provider_domains(conn, policy, changes.keys().map(String::as_str))?;
    let mut spans: BTreeMap<
        Subject,
        (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
    > = BTreeMap::new();
    for (domain, &(first, last)) in changes {
        for s in Subject::of_domain(policy, domain) {
            let span = spans.entry(s).or_insert((first, last));
            span.0 = span.0.min(first);
            span.1 = span.1.max(last);
        }
    }
    let mut replayed = 0;
    for (subject, (first, last)) in spans {
        for reason in PAUSE_REASONS {
            let pp = pause_policy(policy, reason);
            if pp.rate.is_off() {
                continue;
            }
            let hours = ((pp.window.0 + 3599) / 3600).max(1);
            let until = last + chrono::Duration::hours(hours);
            let touched: bool = conn
                .prepare_cached(&format!(
                    "SELECT EXISTS (SELECT 1 FROM events
                     WHERE {} AND role = 'recipient' AND kind = 'bounce' AND {}
                       AND event_time >= ?2 AND event_time < ?3)",
                    subject_filter(&subject),
                    pause_filter(reason)
                ))?
                .query_row(
                    params![subject.name(), time::format(first), time::format(until)],
                    |r| r.get(0),
                )?;
            if touched {
                replay_pauses(conn, policy, &subject, reason)?;
                replayed += 1;
            }
        }
    }
    Ok(replayed)
}

fn insert_pause(
    conn: &Connection,
    subject: &Subject,
    reason: &str,
    stored: &StoredPauseFold,
) -> anyhow::Result<i64> {
    let p = stored
        .fold
        .last
        .as_ref()
        .context("a pause started without a pause")?;
    let rate = p
        .window_sends
        .and_then(|s| super::percent::Percent::of(u64::from(p.window_events), s));
    conn.prepare_cached(
        "INSERT INTO domain_pauses (domain, reason, started_at, paused_until, escalation, window_events,
             event_count, first_event_id, first_event_at, last_event_id, last_event_at, scope, rule,
             window_sends, window_rate, window_start)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?
    .execute(params![
        subject.name(),
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
        subject.scope(),
        format!("{reason}_{}", p.rule.as_str()),
        p.window_sends.map(|n| n as i64),
        rate.map(|r| (r * 1000.0).round() / 1000.0),
        p.window_start.map(time::format),
    ])?;
    Ok(conn.last_insert_rowid())
}

/// The last pause counted more events: its row follows.
fn update_last_pause(conn: &Connection, stored: &StoredPauseFold) -> anyhow::Result<()> {
    let (Some(p), Some(row)) = (&stored.fold.last, stored.last_row) else {
        return Ok(());
    };
    conn.prepare_cached(
        "UPDATE domain_pauses SET event_count = ?2, last_event_id = ?3, last_event_at = ?4 WHERE id = ?1",
    )?
    .execute(params![row, p.event_count, p.last_event_id, time::format(p.last_event_at)])?;
    Ok(())
}

fn save_pause_fold(
    conn: &Connection,
    subject: &Subject,
    reason: &str,
    stored: &StoredPauseFold,
) -> anyhow::Result<()> {
    conn.prepare_cached(
        "INSERT INTO pause_folds (scope, subject, reason, fold) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (scope, subject, reason) DO UPDATE SET fold = excluded.fold",
    )?
    .execute(params![
        subject.scope(),
        subject.name(),
        reason,
        serde_json::to_string(stored)?
    ])?;
    Ok(())
}

/// Throws the whole projection away and replays every event (`rebound rebuild`, `reclassify`,
/// a changed policy, a ledger from before the stored folds).
pub fn rebuild_all(conn: &Connection, policy: &Policy) -> anyhow::Result<()> {
    let clock = Clock::now();
    // What senders saw before: the log records the rebuild's net differences only.
    let mut before: std::collections::HashMap<String, Visible> = conn
        .prepare(
            "SELECT address, state, suppression_reason FROM addresses WHERE state <> 'active'",
        )?
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Visible {
                    state: r.get(1)?,
                    reason: r.get(2)?,
                },
            ))
        })?
        .collect::<Result<_, _>>()?;
    conn.execute_batch(
        "DELETE FROM state_changes; DELETE FROM addresses; DELETE FROM domain_pauses;
         DELETE FROM pause_folds; DELETE FROM provider_domains;",
    )?;
    let domains: Vec<String> = conn
        .prepare("SELECT domain FROM events UNION SELECT recipient_domain FROM sends ORDER BY 1")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    note_provider_domains(conn, policy, domains.iter().map(String::as_str))?;
    let addresses: Vec<String> = conn
        .prepare("SELECT DISTINCT address FROM events ORDER BY address")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for a in &addresses {
        let was = before.remove(a).unwrap_or(Visible::ACTIVE);
        replay_address_from(conn, policy, a, &clock, was)?;
    }
    // Addresses whose events are all gone (a reclassify found nobody in their messages).
    let mut gone: Vec<(String, Visible)> = before.into_iter().collect();
    gone.sort_by(|a, b| a.0.cmp(&b.0));
    for (a, was) in gone {
        log_change(conn, &a, was, Visible::ACTIVE, None, &clock)?;
    }
    let domains: Vec<(String, String)> = conn
        .prepare(
            "SELECT DISTINCT domain, 'blocked' FROM events
             WHERE role = 'recipient' AND kind = 'bounce' AND label = 'blocked' AND forged = 0
             UNION
             SELECT DISTINCT domain, 'rate_limited' FROM events
             WHERE role = 'recipient' AND kind = 'bounce' AND reason = 'rate_limited'
               AND forged = 0",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut subjects = std::collections::BTreeSet::new();
    for (d, reason) in domains {
        for s in Subject::of_domain(policy, &d) {
            subjects.insert((s, reason.clone()));
        }
    }
    for (s, reason) in &subjects {
        replay_pauses(conn, policy, s, reason)?;
    }
    Ok(())
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
