//! The policy: what the events of an address (or of a recipient domain) mean for the sender.
//!
//! Everything here is pure. [`replay_address`] folds the events of one address, in event-time
//! order, into its state and the list of state changes with the rule that fired; [`replay_pauses`]
//! does the same for the blocked / rate-limited events of one recipient domain. No wall clock
//! is read: retry and pause times derive from event times, so the same events under the same
//! policy always give the same projection, whatever order they were ingested in.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::percent::Percent;
use super::providers::Providers;
use super::span::Span;
use crate::analysis::{Label, Reason};

/// `[policy]` in the config file. Every number is configurable; the defaults are the product's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Wait before retrying after the 1st, 2nd, 3rd... soft bounce (the last one repeats).
    pub soft_backoff: Vec<Span>,
    /// This many soft bounces (within `count_decay`) suppress with `soft_limit`.
    pub soft_limit: u32,
    /// Soft bounces spread over more than this suppress with `soft_limit` too.
    pub soft_limit_spread: Span,
    /// Bounces older than this no longer count toward `soft_limit`.
    pub count_decay: Span,
    /// Mailbox providers (the config's `[providers]` table over the built-in map, see
    /// [`Providers`]): rates and pauses per provider, and the well-known providers where a
    /// first hard bounce without explicit evidence of a missing mailbox is quarantined, not
    /// suppressed (their gateways say 5xx for temporary faults too). Not read from `[policy]`:
    /// the config sets it from its own table.
    #[serde(skip_deserializing)]
    pub providers: Providers,
    /// Set to false to suppress every hard bounce at once, providers included.
    pub quarantine_unexplicit_provider_hard: bool,
    /// Diagnostic phrases that make a hard bounce explicit (besides 5.1.x / 5.2.1 statuses and
    /// the user_unknown / mailbox_disabled / has_moved reasons). Lowercase.
    pub explicit_hard_phrases: Vec<String>,
    /// Local parts of role accounts (`info@`, `postmaster@`...), flagged `is_role`.
    pub role_accounts: Vec<String>,
    /// Pause of a recipient domain after repeated `blocked` events.
    #[serde(deserialize_with = "blocked_table")]
    pub blocked: PausePolicy,
    /// Pause of a recipient domain after repeated `rate_limited` events.
    #[serde(deserialize_with = "rate_limited_table")]
    pub rate_limited: PausePolicy,
}

/// A `[policy.blocked]` or `[policy.rate_limited]` table as written: what it leaves out keeps
/// that table's own defaults (a `[policy.rate_limited]` with only `threshold` keeps its
/// 2-hour pause, not the blocked table's 24 hours).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseTable {
    threshold: Option<u32>,
    window: Option<Span>,
    rate: Option<Percent>,
    min_sends: Option<u64>,
    pause: Option<Span>,
    max_pause: Option<Span>,
    escalation_memory: Option<Span>,
}

impl PauseTable {
    fn over(self, d: PausePolicy) -> PausePolicy {
        PausePolicy {
            threshold: self.threshold.unwrap_or(d.threshold),
            window: self.window.unwrap_or(d.window),
            rate: self.rate.unwrap_or(d.rate),
            min_sends: self.min_sends.unwrap_or(d.min_sends),
            pause: self.pause.unwrap_or(d.pause),
            max_pause: self.max_pause.unwrap_or(d.max_pause),
            escalation_memory: self.escalation_memory.unwrap_or(d.escalation_memory),
        }
    }
}

fn blocked_table<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PausePolicy, D::Error> {
    Ok(PauseTable::deserialize(d)?.over(Policy::default().blocked))
}

fn rate_limited_table<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PausePolicy, D::Error> {
    Ok(PauseTable::deserialize(d)?.over(Policy::default().rate_limited))
}

/// When repeated refusals pause a whole recipient domain (or provider), and for how long.
///
/// Two rules, one window. With send data (`rebound sends import`) of at least `min_sends`
/// sends to the domain in the window's hours, the *rate* decides: the events in those hours
/// over those sends, against `rate`. Otherwise (nothing imported, or too few sends for a rate
/// to mean anything) the *threshold* does: `threshold` events within `window`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PausePolicy {
    /// This many events within `window` pause the domain when the rate rule does not apply
    /// (0: no absolute rule).
    pub threshold: u32,
    pub window: Span,
    /// The share of the window's sends that pauses the domain (`"0%"`: no rate rule). The
    /// window is counted in whole hours (send data is kept per hour): the hour of the event
    /// and the hours before it, as many as `window` spans.
    pub rate: Percent,
    /// Sends in the window below which the rate rule does not apply (the threshold does).
    pub min_sends: u64,
    /// Length of a first pause; each further pause doubles it, up to `max_pause`.
    pub pause: Span,
    pub max_pause: Span,
    /// A pause that starts within this time after the previous one ended counts as "again"
    /// (and doubles); after a quiet period this long the length starts over.
    pub escalation_memory: Span,
}

impl Default for Policy {
    fn default() -> Policy {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        Policy {
            soft_backoff: vec![Span::hours(4), Span::hours(24), Span::hours(72)],
            soft_limit: 3,
            soft_limit_spread: Span::days(7),
            count_decay: Span::days(90),
            providers: Providers::builtin(),
            quarantine_unexplicit_provider_hard: true,
            explicit_hard_phrases: s(&[
                "user unknown",
                "unknown user",
                "no such user",
                "no such mailbox",
                "unknown recipient",
                "recipient unknown",
                "does not exist",
                "doesn't exist",
                "invalid recipient",
                "invalid mailbox",
                "mailbox not found",
                "user not found",
                "account disabled",
                "account has been disabled",
                "mailbox unavailable",
                "no mailbox",
                "address rejected",
                "not a valid mailbox",
            ]),
            role_accounts: s(&[
                "abuse",
                "admin",
                "administrator",
                "billing",
                "contact",
                "help",
                "hostmaster",
                "hr",
                "info",
                "jobs",
                "mail",
                "marketing",
                "no-reply",
                "noreply",
                "office",
                "postmaster",
                "sales",
                "security",
                "support",
                "team",
                "webmaster",
            ]),
            blocked: PausePolicy {
                threshold: 5,
                window: Span::hours(1),
                rate: Percent::whole(2),
                min_sends: 200,
                pause: Span::hours(24),
                max_pause: Span::days(7),
                escalation_memory: Span::days(7),
            },
            rate_limited: PausePolicy {
                threshold: 10,
                window: Span::hours(1),
                rate: Percent::whole(5),
                min_sends: 200,
                pause: Span::hours(2),
                max_pause: Span::days(1),
                escalation_memory: Span::days(1),
            },
        }
    }
}

impl Default for PausePolicy {
    fn default() -> PausePolicy {
        Policy::default().blocked
    }
}

impl Policy {
    /// Whether an address's local part names a role rather than a person.
    pub fn is_role(&self, address: &str) -> bool {
        let local = address.rsplit_once('@').map_or(address, |(l, _)| l);
        let local = local.split('+').next().unwrap_or(local);
        self.role_accounts
            .iter()
            .any(|r| r.eq_ignore_ascii_case(local))
    }

    /// Whether a recipient domain belongs to a mailbox provider of the map.
    pub fn is_provider(&self, domain: &str) -> bool {
        self.providers.provider_of(domain).is_some()
    }

    /// A hard bounce is explicit when its evidence names a missing or disabled mailbox.
    fn is_explicit_hard(&self, f: &Fact) -> bool {
        let status = f.status.as_deref().unwrap_or("");
        if status.starts_with("5.1.") || status == "5.2.1" {
            return true;
        }
        if matches!(
            f.reason,
            Some(Reason::UserUnknown | Reason::MailboxDisabled | Reason::HasMoved)
        ) {
            return true;
        }
        let diag = f.diagnostic.as_deref().unwrap_or("").to_lowercase();
        self.explicit_hard_phrases
            .iter()
            .any(|p| diag.contains(p.as_str()))
    }
}

/// What one event means to the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A failed delivery to the address, with its label.
    Bounce(Label),
    /// A failed delivery the analysis could not label: counted as an attempt, nothing more.
    UnlabelledBounce,
    Complaint,
    Unsubscribe,
    /// A delivery report for the address, or a message written by it: it is alive.
    Alive,
    /// An operator returned the address to active (`rebound reactivate`).
    Reactivate,
    /// An operator suppressed the address (`rebound suppress`), for this reason (`manual`,
    /// `complaint` or `unsubscribe`: permanent, like the evidence of a bounce).
    Suppress(SuppressionReason),
    /// Recorded, never counted (delay, auto-reply to someone else, other).
    Neutral,
}

/// One event of an address, as the policy needs it.
#[derive(Debug, Clone)]
pub struct Fact {
    pub event_id: i64,
    pub time: DateTime<Utc>,
    pub signal: Signal,
    pub reason: Option<Reason>,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Active,
    Retry,
    Suppressed,
    Quarantined,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Retry => "retry",
            State::Suppressed => "suppressed",
            State::Quarantined => "quarantined",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        [
            State::Active,
            State::Retry,
            State::Suppressed,
            State::Quarantined,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionReason {
    Hard,
    Invalid,
    Complaint,
    Unsubscribe,
    SoftLimit,
    Manual,
}

impl SuppressionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::Hard => "hard",
            SuppressionReason::Invalid => "invalid",
            SuppressionReason::Complaint => "complaint",
            SuppressionReason::Unsubscribe => "unsubscribe",
            SuppressionReason::SoftLimit => "soft_limit",
            SuppressionReason::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<SuppressionReason> {
        use SuppressionReason::*;
        [Hard, Invalid, Complaint, Unsubscribe, SoftLimit, Manual]
            .into_iter()
            .find(|r| r.as_str() == s)
    }

    /// Only a soft-limit suppression is a guess about the future; every other reason is a
    /// fact (or a person's wish) that a later sign of life does not undo.
    pub fn is_permanent(self) -> bool {
        self != SuppressionReason::SoftLimit
    }
}

/// One change of an address's state, with the policy rule that fired and the event behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub event_id: i64,
    pub at: DateTime<Utc>,
    pub from: State,
    pub to: State,
    pub suppression_reason: Option<SuppressionReason>,
    /// Stable id of the policy rule: `hard`, `invalid`, `provider_quarantine`, `soft_retry`,
    /// `soft_limit_count`, `soft_limit_spread`, `complaint`, `unsubscribe`, `alive`,
    /// `manual_reactivate`, `manual_suppress`.
    pub rule: &'static str,
    /// The numbers behind the rule, for people.
    pub detail: String,
}

/// The projection of one address's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressProjection {
    pub state: State,
    pub suppression_reason: Option<SuppressionReason>,
    /// Counted bounce events (every label; never decays).
    pub attempts: u32,
    /// Soft bounces still counting toward the soft limit (since the last sign of life, within
    /// `count_decay` of the last event).
    pub soft_count: u32,
    pub next_retry_at: Option<DateTime<Utc>>,
    /// The last bounce event (its label, reason, status, diagnostic are `last_*`).
    pub last_bounce_event: Option<i64>,
    pub first_seen_at: Option<DateTime<Utc>>,
    pub last_seen_at: Option<DateTime<Utc>>,
    /// When and by which event the current state began.
    pub state_since: Option<DateTime<Utc>>,
    pub state_event_id: Option<i64>,
    pub changes: Vec<Change>,
}

/// Folds the events of one address (sorted by event time, then a stable tie-break) into its
/// state. Suppression for a permanent reason is final: only an operator's reactivation ends it.
pub fn replay_address(policy: &Policy, domain: &str, facts: &[Fact]) -> AddressProjection {
    let mut replay = AddressReplay::default();
    for f in facts {
        replay.step(policy, domain, f);
    }
    replay.projection(policy)
}

/// The most soft bounce times an address's fold keeps (or `soft_limit`, if larger).
pub const SOFTS_KEPT: usize = 256;

/// Where the fold of one address's events stands after some of them: everything the policy
/// needs to go on with the next fact, and nothing it does not (the state changes so far are
/// rows of their own). The ledger stores it with the address, so that a new event that sorts
/// after the ones folded costs one step, not a replay of the address's history: stepping the
/// stored fold over the next facts gives exactly the replay of all of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddressFold {
    pub state: State,
    pub suppression_reason: Option<SuppressionReason>,
    pub attempts: u32,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub last_bounce_event: Option<i64>,
    pub first_seen_at: Option<DateTime<Utc>>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub state_since: Option<DateTime<Utc>>,
    pub state_event_id: Option<i64>,
    /// Times of the soft bounces still counting toward the limit.
    pub softs: Vec<DateTime<Utc>>,
    /// Whether a hard bounce was seen since the last sign of life (the quarantine is for the
    /// first).
    pub hard_seen: bool,
}

impl Default for AddressFold {
    fn default() -> AddressFold {
        AddressFold {
            state: State::Active,
            suppression_reason: None,
            attempts: 0,
            next_retry_at: None,
            last_bounce_event: None,
            first_seen_at: None,
            last_seen_at: None,
            state_since: None,
            state_event_id: None,
            softs: Vec::new(),
            hard_seen: false,
        }
    }
}

impl AddressFold {
    /// The projection of the facts folded so far, with these state changes.
    pub fn projection(&self, policy: &Policy, changes: Vec<Change>) -> AddressProjection {
        let mut softs = self.softs.clone();
        if let Some(last) = self.last_seen_at {
            let horizon = last - policy.count_decay.as_chrono();
            softs.retain(|t| *t > horizon);
        }
        AddressProjection {
            state: self.state,
            suppression_reason: self.suppression_reason,
            attempts: self.attempts,
            soft_count: softs.len() as u32,
            next_retry_at: self.next_retry_at,
            last_bounce_event: self.last_bounce_event,
            first_seen_at: self.first_seen_at,
            last_seen_at: self.last_seen_at,
            state_since: self.state_since,
            state_event_id: self.state_event_id,
            changes,
        }
    }

    /// Folds one more fact, which sorts after every fact folded so far; returns the state
    /// change it caused, if any.
    pub fn step(&mut self, policy: &Policy, domain: &str, f: &Fact) -> Option<Change> {
        let p = self;
        p.first_seen_at.get_or_insert(f.time);
        p.last_seen_at = Some(f.time);
        let permanently_suppressed = p.state == State::Suppressed
            && p.suppression_reason
                .is_some_and(SuppressionReason::is_permanent);
        let mut change = None;
        let mut set = |p: &mut AddressFold, to, why, rule, detail| {
            if let Some(c) = transition(p, f, to, why, rule, detail) {
                change = Some(c);
            }
        };
        match f.signal {
            Signal::Bounce(label) => {
                p.attempts += 1;
                p.last_bounce_event = Some(f.event_id);
                match label {
                    Label::Hard => {
                        let quarantine = policy.quarantine_unexplicit_provider_hard
                            && !p.hard_seen
                            && p.state != State::Suppressed
                            && policy.is_provider(domain)
                            && !policy.is_explicit_hard(f);
                        p.hard_seen = true;
                        if quarantine {
                            set(
                                p,
                                State::Quarantined,
                                None,
                                "provider_quarantine",
                                format!(
                                    "first hard bounce at provider {domain} without explicit evidence (status {})",
                                    f.status.as_deref().unwrap_or("none")
                                ),
                            );
                        } else if !permanently_suppressed {
                            // A permanent reason replaces a soft-limit suppression (it says
                            // more), never another permanent one (the first fact stays the
                            // evidence).
                            let detail = format!(
                                "hard bounce, status {}",
                                f.status.as_deref().unwrap_or("none")
                            );
                            set(
                                p,
                                State::Suppressed,
                                Some(SuppressionReason::Hard),
                                "hard",
                                detail,
                            );
                        }
                    }
                    Label::Invalid => {
                        if !permanently_suppressed {
                            let detail = format!(
                                "invalid address, reason {}",
                                f.reason.map_or("none", Reason::as_str)
                            );
                            set(
                                p,
                                State::Suppressed,
                                Some(SuppressionReason::Invalid),
                                "invalid",
                                detail,
                            );
                        }
                    }
                    Label::Soft => {
                        let horizon = f.time - policy.count_decay.as_chrono();
                        p.softs.retain(|t| *t > horizon);
                        p.softs.push(f.time);
                        // Only the newest are kept: the decisions below are the same (they look
                        // at more only below the limit), and a fold stays small however many
                        // soft bounces an address collects; `soft_count` then says "at least".
                        let kept = SOFTS_KEPT.max(policy.soft_limit as usize);
                        if p.softs.len() > kept {
                            p.softs.drain(..p.softs.len() - kept);
                        }
                        let count = p.softs.len() as u32;
                        let spread = f.time - p.softs[0];
                        if p.state == State::Suppressed || p.state == State::Quarantined {
                            // Counted, but a soft bounce neither lifts nor deepens these.
                        } else if count >= policy.soft_limit.max(1) {
                            let detail = format!(
                                "{count} soft bounces within {} (limit {})",
                                policy.count_decay, policy.soft_limit
                            );
                            set(
                                p,
                                State::Suppressed,
                                Some(SuppressionReason::SoftLimit),
                                "soft_limit_count",
                                detail,
                            );
                        } else if spread > policy.soft_limit_spread.as_chrono() {
                            let detail = format!(
                                "soft bounces spread over {}h (limit {})",
                                spread.num_hours(),
                                policy.soft_limit_spread
                            );
                            set(
                                p,
                                State::Suppressed,
                                Some(SuppressionReason::SoftLimit),
                                "soft_limit_spread",
                                detail,
                            );
                        } else {
                            let backoff = policy
                                .soft_backoff
                                .get(count as usize - 1)
                                .or(policy.soft_backoff.last())
                                .copied()
                                .unwrap_or(Span::hours(4));
                            let detail = format!("soft bounce {count}, retry after {backoff}");
                            set(p, State::Retry, None, "soft_retry", detail);
                            p.next_retry_at = Some(f.time + backoff.as_chrono());
                        }
                    }
                    Label::Blocked => {
                        // The provider refuses the sender, not the address: the domain pause
                        // handles it (see replay_pauses); the address keeps its state.
                    }
                }
            }
            Signal::UnlabelledBounce => p.attempts += 1,
            Signal::Complaint => {
                if !permanently_suppressed {
                    set(
                        p,
                        State::Suppressed,
                        Some(SuppressionReason::Complaint),
                        "complaint",
                        "spam complaint".into(),
                    );
                }
            }
            Signal::Unsubscribe => {
                if !permanently_suppressed {
                    set(
                        p,
                        State::Suppressed,
                        Some(SuppressionReason::Unsubscribe),
                        "unsubscribe",
                        "unsubscribe request".into(),
                    );
                }
            }
            Signal::Alive => {
                p.softs.clear();
                p.hard_seen = false;
                if matches!(p.state, State::Retry | State::Quarantined)
                    || (p.state == State::Suppressed && !permanently_suppressed)
                {
                    set(
                        p,
                        State::Active,
                        None,
                        "alive",
                        "delivery report or message from the address".into(),
                    );
                }
            }
            Signal::Reactivate => {
                p.softs.clear();
                p.hard_seen = false;
                set(
                    p,
                    State::Active,
                    None,
                    "manual_reactivate",
                    "reactivated by an operator".into(),
                );
            }
            Signal::Suppress(why) => {
                // Like any permanent reason: it replaces a soft-limit suppression, never another
                // permanent one (the first fact stays the evidence; the event is kept anyway).
                if !permanently_suppressed {
                    let detail = match f.diagnostic.as_deref() {
                        Some(note) => {
                            format!("suppressed by an operator ({}): {note}", why.as_str())
                        }
                        None => format!("suppressed by an operator ({})", why.as_str()),
                    };
                    set(p, State::Suppressed, Some(why), "manual_suppress", detail);
                }
            }
            Signal::Neutral => {}
        }
        change
    }
}

/// [`AddressFold`] with the state changes it made, for a replay in memory.
#[derive(Debug, Clone, Default)]
pub struct AddressReplay {
    pub fold: AddressFold,
    changes: Vec<Change>,
}

impl AddressReplay {
    /// The projection after the facts stepped so far.
    pub fn projection(&self, policy: &Policy) -> AddressProjection {
        self.fold.projection(policy, self.changes.clone())
    }

    /// The state changes so far.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// Folds one more fact, which sorts after every fact stepped so far.
    pub fn step(&mut self, policy: &Policy, domain: &str, f: &Fact) {
        self.changes.extend(self.fold.step(policy, domain, f));
    }
}

/// Moves an address to a new state (or reason) and returns the change; none when nothing
/// changes, so that repeated evidence does not fill the audit with noise.
fn transition(
    p: &mut AddressFold,
    f: &Fact,
    to: State,
    why: Option<SuppressionReason>,
    rule: &'static str,
    detail: String,
) -> Option<Change> {
    if p.state == to && p.suppression_reason == why {
        return None;
    }
    let change = Change {
        event_id: f.event_id,
        at: f.time,
        from: p.state,
        to,
        suppression_reason: why,
        rule,
        detail,
    };
    p.state = to;
    p.suppression_reason = why;
    p.state_since = Some(f.time);
    p.state_event_id = Some(f.event_id);
    if to != State::Retry {
        p.next_retry_at = None;
    }
    Some(change)
}

/// One blocked or rate-limited event of a recipient domain.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PauseFact {
    pub event_id: i64,
    pub time: DateTime<Utc>,
}

/// Which rule started a pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseRule {
    /// `threshold` events within `window` (no send data, or too little).
    Threshold,
    /// The events of the window's hours reached `rate` of its sends.
    Rate,
}

impl PauseRule {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseRule::Threshold => "threshold",
            PauseRule::Rate => "rate",
        }
    }
}

/// One pause of a recipient domain (or provider).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub started_at: DateTime<Utc>,
    pub paused_until: DateTime<Utc>,
    /// 0 for a first pause, 1 when it happened again (doubled), ...
    pub escalation: u32,
    /// Events in the window that triggered the pause.
    pub window_events: u32,
    /// Every event of this episode (the trigger window and those during the pause).
    pub event_count: u32,
    pub first_event_id: i64,
    pub first_event_at: DateTime<Utc>,
    pub last_event_id: i64,
    pub last_event_at: DateTime<Utc>,
    /// The rule that fired, and what it saw: the sends of the window's hours (none recorded:
    /// `None`) and where the window it counted began.
    #[serde(default = "threshold_rule")]
    pub rule: PauseRule,
    #[serde(default)]
    pub window_sends: Option<u64>,
    #[serde(default)]
    pub window_start: Option<DateTime<Utc>>,
}

fn threshold_rule() -> PauseRule {
    PauseRule::Threshold
}

impl PausePolicy {
    /// Whether the policy can pause at all.
    pub fn enabled(&self) -> bool {
        self.threshold > 0 || !self.rate.is_off()
    }

    /// The hours (their starts, inclusive) whose sends the rate rule weighs an event at `t`
    /// against: the event's hour and the ones before it, as many as `window` spans (at least
    /// one).
    pub fn rate_hours(&self, t: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let last = floor_hour(t);
        let hours = ((self.window.0 + 3599) / 3600).max(1);
        (last - chrono::Duration::hours(hours - 1), last)
    }
}

/// The start of the hour `t` falls in.
pub fn floor_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    let s = t.timestamp();
    DateTime::from_timestamp(s - s.rem_euclid(3600), 0).unwrap_or(t)
}

/// Folds the events (sorted by time) of one domain and one pause reason into its pauses;
/// `sends(first_hour, last_hour)` gives the sends recorded in those hours.
pub fn replay_pauses(
    policy: &PausePolicy,
    facts: &[PauseFact],
    mut sends: impl FnMut(DateTime<Utc>, DateTime<Utc>) -> u64,
) -> Vec<Pause> {
    let mut fold = PauseFold::default();
    let mut pauses: Vec<Pause> = Vec::new();
    for f in facts {
        let window_sends = fold
            .sends_needed(policy, f.time)
            .map_or(0, |(a, b)| sends(a, b));
        match fold.step(policy, f, window_sends) {
            PauseStep::Counted => {}
            PauseStep::Extended => {
                if let (Some(last), Some(p)) = (pauses.last_mut(), &fold.last) {
                    *last = p.clone();
                }
            }
            PauseStep::Started => pauses.extend(fold.last.clone()),
        }
    }
    pauses
}

/// Where the fold of one domain's (and one reason's) events stands: the events of the
/// current window, the events per hour of the rate window, and the last pause. The ledger
/// stores it with the domain, so that a new event that sorts after those folded costs one step
/// instead of re-reading the domain's history; stepping it over the next facts gives exactly
/// [`replay_pauses`] of all of them (with the same sends). The window never holds more than
/// `threshold` facts, the hours no more than the window spans (both are emptied by every
/// pause).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PauseFold {
    pub window: std::collections::VecDeque<PauseFact>,
    /// Events per hour (Unix time of the hour's start, count) within the rate window.
    #[serde(default, skip_serializing_if = "std::collections::VecDeque::is_empty")]
    pub hours: std::collections::VecDeque<(i64, u64)>,
    pub last: Option<Pause>,
}

/// What one step did to the pauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseStep {
    /// The event only counts in the window.
    Counted,
    /// The event fell inside the last pause, which now counts it.
    Extended,
    /// The event filled the window: a new pause (`fold.last`).
    Started,
}

impl PauseFold {
    /// The hours whose sends the next step at `t` needs ([`PauseFold::step`]'s
    /// `window_sends`), or `None` when it needs none (no rate rule, or `t` falls in the last
    /// pause).
    pub fn sends_needed(
        &self,
        policy: &PausePolicy,
        t: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        if policy.rate.is_off() || self.last.as_ref().is_some_and(|p| t < p.paused_until) {
            return None;
        }
        Some(policy.rate_hours(t))
    }

    /// Folds one more event, which sorts after every event folded so far. `window_sends` is
    /// the sends recorded in the hours [`PauseFold::sends_needed`] names (0 when it names
    /// none).
    pub fn step(&mut self, policy: &PausePolicy, f: &PauseFact, window_sends: u64) -> PauseStep {
        if !policy.enabled() {
            return PauseStep::Counted;
        }
        if let Some(last) = &mut self.last
            && f.time < last.paused_until
        {
            last.event_count += 1;
            last.last_event_id = f.event_id;
            last.last_event_at = f.time;
            return PauseStep::Extended;
        }
        let horizon = f.time - policy.window.as_chrono();
        while self.window.front().is_some_and(|w| w.time < horizon) {
            self.window.pop_front();
        }
        self.window.push_back(*f);
        let (first_hour, hour) = policy.rate_hours(f.time);
        while self
            .hours
            .front()
            .is_some_and(|(h, _)| *h < first_hour.timestamp())
        {
            self.hours.pop_front();
        }
        match self.hours.back_mut() {
            Some((h, n)) if *h == hour.timestamp() => *n += 1,
            _ => self.hours.push_back((hour.timestamp(), 1)),
        }
        let hour_events: u64 = self.hours.iter().map(|(_, n)| n).sum();
        // With enough sends for a rate to mean something, the rate decides; otherwise the
        // count does.
        let by_rate = !policy.rate.is_off() && window_sends >= policy.min_sends.max(1);
        let fire = if by_rate {
            policy.rate.reached(hour_events, window_sends)
        } else {
            policy.threshold > 0 && self.window.len() as u32 >= policy.threshold
        };
        if !fire {
            // The newest threshold - 1 events are all the next threshold decision reads.
            let keep = policy.threshold.saturating_sub(1) as usize;
            while self.window.len() > keep {
                self.window.pop_front();
            }
            return PauseStep::Counted;
        }
        let escalation = match &self.last {
            Some(prev) if f.time - prev.paused_until <= policy.escalation_memory.as_chrono() => {
                prev.escalation + 1
            }
            _ => 0,
        };
        let factor = 1i64.checked_shl(escalation.min(40)).unwrap_or(i64::MAX);
        let length = policy
            .pause
            .0
            .saturating_mul(factor)
            .min(policy.max_pause.0);
        let first = self.window[0];
        let (rule, window_events, window_start) = if by_rate {
            (
                PauseRule::Rate,
                u32::try_from(hour_events).unwrap_or(u32::MAX),
                first_hour,
            )
        } else {
            (PauseRule::Threshold, self.window.len() as u32, first.time)
        };
        self.last = Some(Pause {
            started_at: f.time,
            paused_until: f.time + chrono::Duration::seconds(length),
            escalation,
            window_events,
            event_count: window_events,
            first_event_id: first.event_id,
            first_event_at: first.time,
            last_event_id: f.event_id,
            last_event_at: f.time,
            rule,
            window_sends: (window_sends > 0).then_some(window_sends),
            window_start: Some(window_start),
        });
        self.window.clear();
        self.hours.clear();
        PauseStep::Started
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + h * 3600, 0).unwrap()
    }

    fn fact(id: i64, hour: i64, signal: Signal, status: &str) -> Fact {
        Fact {
            event_id: id,
            time: t(hour),
            signal,
            reason: None,
            status: Some(status.into()),
            diagnostic: None,
        }
    }

    #[test]
    fn hard_suppresses_at_once() {
        let p = replay_address(
            &Policy::default(),
            "example.org",
            &[fact(1, 0, Signal::Bounce(Label::Hard), "5.0.0")],
        );
        assert_eq!(p.state, State::Suppressed);
        assert_eq!(p.suppression_reason, Some(SuppressionReason::Hard));
        assert_eq!(p.changes[0].rule, "hard");
    }

    #[test]
    fn unexplicit_first_hard_at_a_provider_is_quarantined_then_second_suppresses() {
        let pol = Policy::default();
        let one = [fact(1, 0, Signal::Bounce(Label::Hard), "5.0.0")];
        let p = replay_address(&pol, "gmail.com", &one);
        assert_eq!(p.state, State::Quarantined);
        assert_eq!(p.changes[0].rule, "provider_quarantine");
        let explicit = [fact(1, 0, Signal::Bounce(Label::Hard), "5.1.1")];
        assert_eq!(
            replay_address(&pol, "gmail.com", &explicit).state,
            State::Suppressed
        );
        let two = [
            one[0].clone(),
            fact(2, 5, Signal::Bounce(Label::Hard), "5.0.0"),
        ];
        let p = replay_address(&pol, "gmail.com", &two);
        assert_eq!(
            (p.state, p.suppression_reason),
            (State::Suppressed, Some(SuppressionReason::Hard))
        );
        let mut text = fact(1, 0, Signal::Bounce(Label::Hard), "5.0.0");
        text.diagnostic = Some("550 5.0.0 <x@gmail.com>: User unknown".into());
        assert_eq!(
            replay_address(&pol, "gmail.com", &[text]).state,
            State::Suppressed
        );
    }

    /// A fold keeps at most `SOFTS_KEPT` soft bounce times (or `soft_limit` if larger): the
    /// decisions are those of the full list, `soft_count` stops at the cap.
    #[test]
    fn a_fold_keeps_a_bounded_number_of_soft_bounces() {
        let pol = Policy::default();
        let softs: Vec<Fact> = (0..(SOFTS_KEPT as i64 + 40))
            .map(|i| fact(i + 1, i / 60, Signal::Bounce(Label::Soft), "4.2.2"))
            .collect();
        let mut replay = AddressReplay::default();
        for f in &softs {
            replay.step(&pol, "example.org", f);
        }
        assert_eq!(replay.fold.softs.len(), SOFTS_KEPT);
        assert_eq!(replay.fold.softs[0], softs[40].time, "the newest are kept");
        let p = replay.projection(&pol);
        assert_eq!(
            (p.state, p.suppression_reason, p.soft_count),
            (
                State::Suppressed,
                Some(SuppressionReason::SoftLimit),
                SOFTS_KEPT as u32
            )
        );
        // A limit above the cap keeps enough to decide by it.
        let high = Policy {
            soft_limit: SOFTS_KEPT as u32 + 30,
            soft_limit_spread: crate::ledger::span::Span::days(3650),
            ..Policy::default()
        };
        let p = replay_address(&high, "example.org", &softs[..SOFTS_KEPT + 29]);
        assert_eq!(p.state, State::Retry, "one below the limit");
        let p = replay_address(&high, "example.org", &softs[..SOFTS_KEPT + 30]);
        assert_eq!(p.state, State::Suppressed, "at the limit");
    }

    #[test]
    fn soft_backoff_then_limit_and_alive_resets() {
        let pol = Policy::default();
        let s = |id, h| fact(id, h, Signal::Bounce(Label::Soft), "4.2.2");
        let p = replay_address(&pol, "example.org", &[s(1, 0)]);
        assert_eq!(p.state, State::Retry);
        assert_eq!(p.next_retry_at, Some(t(4)));
        let p = replay_address(&pol, "example.org", &[s(1, 0), s(2, 10)]);
        assert_eq!(
            (p.state, p.soft_count, p.next_retry_at),
            (State::Retry, 2, Some(t(34)))
        );
        let p = replay_address(&pol, "example.org", &[s(1, 0), s(2, 10), s(3, 20)]);
        assert_eq!(
            (p.state, p.suppression_reason),
            (State::Suppressed, Some(SuppressionReason::SoftLimit))
        );
        assert_eq!(p.changes.last().unwrap().rule, "soft_limit_count");
        // A sign of life between them resets the count.
        let alive = fact(9, 15, Signal::Alive, "");
        let p = replay_address(&pol, "example.org", &[s(1, 0), s(2, 10), alive, s(3, 20)]);
        assert_eq!((p.state, p.soft_count), (State::Retry, 1));
        // Spread over more than 7 days.
        let p = replay_address(&pol, "example.org", &[s(1, 0), s(2, 8 * 24)]);
        assert_eq!(p.changes.last().unwrap().rule, "soft_limit_spread");
        // Older than 90 days no longer counts: 3 softs, but the first decayed (and spread is
        // measured from the oldest counting one).
        let p = replay_address(
            &pol,
            "example.org",
            &[s(1, 0), s(2, 91 * 24), s(3, 91 * 24 + 1)],
        );
        assert_eq!((p.state, p.soft_count), (State::Retry, 2));
    }

    #[test]
    fn blocked_never_changes_the_address_and_complaint_outranks_soft_limit() {
        let pol = Policy::default();
        let p = replay_address(
            &pol,
            "example.org",
            &[fact(1, 0, Signal::Bounce(Label::Blocked), "5.7.1")],
        );
        assert_eq!((p.state, p.attempts), (State::Active, 1));
        let s = |id, h| fact(id, h, Signal::Bounce(Label::Soft), "4.2.2");
        let evs = [
            s(1, 0),
            s(2, 1),
            s(3, 2),
            fact(4, 3, Signal::Complaint, ""),
            fact(5, 4, Signal::Alive, ""),
        ];
        let p = replay_address(&pol, "example.org", &evs);
        assert_eq!(
            (p.state, p.suppression_reason),
            (State::Suppressed, Some(SuppressionReason::Complaint))
        );
        let evs = [
            fact(1, 0, Signal::Bounce(Label::Hard), "5.1.1"),
            fact(2, 1, Signal::Reactivate, ""),
        ];
        assert_eq!(
            replay_address(&pol, "example.org", &evs).state,
            State::Active
        );
    }

    #[test]
    fn an_operator_suppression_is_permanent_and_keeps_an_earlier_permanent_reason() {
        let pol = Policy::default();
        let by_hand = |id, h, why| fact(id, h, Signal::Suppress(why), "");
        let p = replay_address(
            &pol,
            "example.org",
            &[by_hand(1, 0, SuppressionReason::Complaint)],
        );
        assert_eq!(
            (p.state, p.suppression_reason, p.changes[0].rule),
            (
                State::Suppressed,
                Some(SuppressionReason::Complaint),
                "manual_suppress"
            )
        );
        // A sign of life does not lift it; a reactivation does.
        let p = replay_address(
            &pol,
            "example.org",
            &[
                by_hand(1, 0, SuppressionReason::Manual),
                fact(2, 1, Signal::Alive, ""),
            ],
        );
        assert_eq!(p.suppression_reason, Some(SuppressionReason::Manual));
        let p = replay_address(
            &pol,
            "example.org",
            &[
                by_hand(1, 0, SuppressionReason::Manual),
                fact(2, 1, Signal::Reactivate, ""),
            ],
        );
        assert_eq!(p.state, State::Active);
        // Over a soft limit it says more; over a hard bounce it changes nothing.
        let s = |id, h| fact(id, h, Signal::Bounce(Label::Soft), "4.2.2");
        let p = replay_address(
            &pol,
            "example.org",
            &[
                s(1, 0),
                s(2, 1),
                s(3, 2),
                by_hand(4, 3, SuppressionReason::Unsubscribe),
            ],
        );
        assert_eq!(p.suppression_reason, Some(SuppressionReason::Unsubscribe));
        let p = replay_address(
            &pol,
            "example.org",
            &[
                fact(1, 0, Signal::Bounce(Label::Hard), "5.1.1"),
                by_hand(2, 1, SuppressionReason::Manual),
            ],
        );
        assert_eq!(
            (p.suppression_reason, p.changes.len()),
            (Some(SuppressionReason::Hard), 1)
        );
    }

    #[test]
    fn pauses_trigger_at_threshold_and_double() {
        let pol = Policy::default().blocked;
        let at = |id: i64, minutes: i64| PauseFact {
            event_id: id,
            time: t(0) + chrono::Duration::minutes(minutes),
        };
        // 4 in an hour: nothing. 5: paused 24h.
        let none = |_, _| 0;
        let four: Vec<_> = (0..4).map(|i| at(i, i * 10)).collect();
        assert!(replay_pauses(&pol, &four, none).is_empty());
        let spread: Vec<_> = (0..5).map(|i| at(i, i * 20)).collect();
        assert!(
            replay_pauses(&pol, &spread, none).is_empty(),
            "5 events over 80 minutes"
        );
        let five: Vec<_> = (0..5).map(|i| at(i, i * 10)).collect();
        let p = replay_pauses(&pol, &five, none);
        assert_eq!(p.len(), 1);
        assert_eq!(
            p[0].paused_until,
            at(4, 40).time + chrono::Duration::hours(24)
        );
        // Again right after the pause: 48h; then 96h, then capped at 7 days.
        let mut evs = five.clone();
        for round in 1..5 {
            let start = p[0].paused_until + chrono::Duration::hours(200 * (round - 1));
            for i in 0..5 {
                evs.push(PauseFact {
                    event_id: 100 * round + i,
                    time: start + chrono::Duration::minutes(i),
                });
            }
        }
        let p = replay_pauses(&pol, &evs, none);
        let hours: Vec<i64> = p
            .iter()
            .map(|x| (x.paused_until - x.started_at).num_hours())
            .collect();
        assert_eq!(hours[..2], [24, 48]);
        assert!(hours.iter().all(|h| *h <= 168));
    }

    /// With enough sends in the window's hours the rate decides (and the count alone never
    /// does); below `min_sends` the count does. The pause says which rule fired and what it saw.
    #[test]
    fn with_enough_sends_the_rate_decides() {
        let pol = Policy::default().blocked;
        let at = |id: i64, minutes: i64| PauseFact {
            event_id: id,
            time: t(0) + chrono::Duration::minutes(minutes),
        };
        // t(0) is 13:20 past an hour: thirty events a minute apart stay in that hour.
        let thirty: Vec<_> = (0..30).map(|i| at(i, i)).collect();
        assert!(
            replay_pauses(&pol, &thirty, |_, _| 100_000).is_empty(),
            "30 blocked of 100,000 sends is 0.03%"
        );
        let hour = floor_hour(t(0));
        let p = replay_pauses(&pol, &thirty, |a, b| {
            assert_eq!((a, b), (hour, hour), "a 1h window is the event's hour");
            1_000
        });
        assert_eq!(p.len(), 1);
        assert_eq!(
            (
                p[0].rule,
                p[0].window_events,
                p[0].window_sends,
                p[0].event_count
            ),
            (PauseRule::Rate, 20, Some(1_000), 30),
            "2% of 1,000 is reached at the 20th; the 10 after it fall in the pause"
        );
        assert_eq!(p[0].started_at, at(19, 19).time);
        assert_eq!(p[0].window_start, Some(hour));
        let p = replay_pauses(&pol, &thirty, |_, _| 150);
        assert_eq!(
            (p[0].rule, p[0].window_events, p[0].window_sends),
            (PauseRule::Threshold, 5, Some(150)),
            "150 sends are below min_sends: the threshold decides"
        );
        // A wider window weighs the sends of every hour it spans.
        let day = PausePolicy {
            window: crate::ledger::span::Span::hours(24),
            ..pol.clone()
        };
        assert_eq!(
            day.rate_hours(t(30) + chrono::Duration::minutes(5)),
            (floor_hour(t(7)), floor_hour(t(30)))
        );
        // No rate rule: the count decides whatever the sends.
        let count_only = PausePolicy {
            rate: Percent::default(),
            ..pol
        };
        let p = replay_pauses(&count_only, &thirty, |_, _| 100_000);
        assert_eq!((p[0].rule, p[0].window_events), (PauseRule::Threshold, 5));
    }
}
