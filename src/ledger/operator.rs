//! Operator suppressions (`rebound suppress`): like a reactivation, an operator's word is an
//! event (`role = 'operator'`, `kind = 'manual'`, `action = 'suppress'`, the reason in
//! `events.suppression_reason`, the note in `events.note`), so that it survives every replay,
//! rebuild and reclassify; the projection turns it into a state change with the rule
//! `manual_suppress` (see `Signal::Suppress` in [`super::policy`]).

use anyhow::Context;
use rusqlite::{TransactionBehavior, params};

use super::projection::{self, NewEvent, Visible};
use super::{Clock, Ledger, Role, SuppressionReason, domain_of, normalize_address};

/// What [`Ledger::suppress`] did to one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    /// The address, normalized.
    pub address: String,
    /// Whether the ledger held the address before.
    pub known: bool,
    /// Its state and reason before and after.
    pub before: Visible,
    pub after: Visible,
}

impl Suppressed {
    /// The address was already suppressed for a permanent reason, which stays (the operator's
    /// event is recorded all the same).
    pub fn unchanged(&self) -> bool {
        self.before == self.after
    }
}

/// The reasons an operator may give.
pub const OPERATOR_REASONS: [SuppressionReason; 3] = [
    SuppressionReason::Manual,
    SuppressionReason::Complaint,
    SuppressionReason::Unsubscribe,
];

impl Ledger {
    /// Records an operator's suppression of `addresses` (an event each, in one transaction)
    /// and projects it. An address the ledger has never seen is suppressed all the same (a
    /// person asked by phone). Every address is checked before anything is written: one that
    /// is not an address fails the whole call, with nothing recorded.
    pub fn suppress(
        &mut self,
        addresses: &[String],
        reason: SuppressionReason,
        note: &str,
    ) -> anyhow::Result<Vec<Suppressed>> {
        anyhow::ensure!(
            OPERATOR_REASONS.contains(&reason),
            "an operator suppresses with reason manual, complaint or unsubscribe, not {}",
            reason.as_str()
        );
        let mut normalized: Vec<String> = Vec::new();
        for a in addresses {
            let n = normalize_address(a)
                .filter(|n| n.contains('@'))
                .with_context(|| {
                    format!("{a:?} is not an e-mail address: nothing was suppressed")
                })?;
            if !normalized.contains(&n) {
                normalized.push(n);
            }
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let clock = Clock::now();
        let sort_key = format!("~operator {}", clock.text);
        let note = note.trim();
        let note = (!note.is_empty()).then_some(note);
        let mut done = Vec::new();
        let mut events = Vec::new();
        for address in &normalized {
            let before = projection::address_state(&tx, address)?;
            let domain = domain_of(address);
            tx.execute(
                "INSERT INTO events (message_id, recipient_index, role, address, domain, kind, action, rule,
                     event_time, time_source, sort_key, note, suppression_reason)
                 VALUES (NULL, 0, 'operator', ?1, ?2, 'manual', 'suppress', 'manual', ?3, 'operator', ?4, ?5, ?6)",
                params![address, domain, clock.text, sort_key, note, reason],
            )?;
            events.push(NewEvent {
                id: tx.last_insert_rowid(),
                address: address.clone(),
                domain,
                time: clock.text.clone(),
                sort_key: sort_key.clone(),
                index: 0,
                role: Role::Operator,
                kind: "manual".into(),
                action: Some(crate::analysis::Action::parse("suppress")),
                label: None,
                reason: None,
                status: None,
                diagnostic: note.map(str::to_string),
                suppression: Some(reason),
                forged: false,
            });
            done.push((address.clone(), before));
        }
        projection::apply(&tx, &self.policy, &events, &clock)?;
        let mut out = Vec::new();
        for (address, before) in done {
            let after = projection::address_state(&tx, &address)?;
            let visible = |s: &Option<(String, Option<String>)>| -> Visible {
                match s {
                    None => Visible::ACTIVE,
                    Some((state, reason)) => Visible {
                        state: super::State::parse(state).unwrap_or(super::State::Active),
                        reason: reason.as_deref().and_then(SuppressionReason::parse),
                    },
                }
            };
            out.push(Suppressed {
                known: before.is_some(),
                before: visible(&before),
                after: visible(&after),
                address,
            });
        }
        tx.commit()?;
        Ok(out)
    }
}
