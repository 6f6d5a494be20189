//! `rebound suppress ADDRESS... [--reason manual|complaint|unsubscribe] [--note TEXT]`: an
//! operator suppresses addresses (a person asked by phone, a complaint that reached support).
//! Audited like `reactivate`: each is an event in the ledger and a state change with the rule
//! `manual_suppress`, the note kept with both; it survives every rebuild and reclassify, and
//! only `rebound reactivate --force` lifts it. Addresses the ledger has never seen are
//! suppressed too (the ledger itself must exist).

use std::process::ExitCode;

use super::LedgerArgs;
use crate::ledger::SuppressionReason;

/// The reasons an operator may give.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorReason {
    Manual,
    Complaint,
    Unsubscribe,
}

impl OperatorReason {
    fn reason(self) -> SuppressionReason {
        match self {
            OperatorReason::Manual => SuppressionReason::Manual,
            OperatorReason::Complaint => SuppressionReason::Complaint,
            OperatorReason::Unsubscribe => SuppressionReason::Unsubscribe,
        }
    }
}

pub fn run(
    args: &LedgerArgs,
    addresses: &[String],
    reason: OperatorReason,
    note: &str,
) -> anyhow::Result<ExitCode> {
    // Not a new ledger: a mistyped --db would keep the suppression where no poll looks.
    let (_, mut ledger) = args.open_existing()?;
    let done = ledger.suppress(addresses, reason.reason(), note)?;
    let mut out = super::output::Lines::new();
    for s in done {
        let shown = |v: crate::ledger::projection::Visible| match v.reason {
            Some(r) => format!("{} ({})", v.state.as_str(), r.as_str()),
            None => v.state.as_str().to_string(),
        };
        if s.unchanged() {
            out.line(format_args!(
                "{}: already {}; recorded, unchanged (the first permanent reason stays the evidence)",
                s.address,
                shown(s.after)
            ))?;
        } else {
            let before = if s.known {
                shown(s.before)
            } else {
                "not in the ledger".to_string()
            };
            out.line(format_args!("{}: {before} → {}", s.address, shown(s.after)))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
