//! `rebound reactivate ADDRESS [--force]`: an operator returns an address to active. The act is
//! an event in the ledger (so it survives reclassify) and a state change naming the rule
//! `manual_reactivate`.

use std::io::Write;
use std::process::ExitCode;

use super::LedgerArgs;
use crate::ledger::Reactivation;

pub fn run(args: &LedgerArgs, address: &str, force: bool, note: &str) -> anyhow::Result<ExitCode> {
    let (_, mut ledger) = args.open_existing()?;
    Ok(match ledger.reactivate(address, force, note)? {
        Reactivation::Done { from, reason } => {
            let was = reason.map_or(from.clone(), |r| format!("{from} ({r})"));
            writeln!(std::io::stdout().lock(), "{address}: {was} → active")?;
            ExitCode::SUCCESS
        }
        Reactivation::AlreadyActive => {
            writeln!(std::io::stdout().lock(), "{address}: already active")?;
            ExitCode::SUCCESS
        }
        Reactivation::Unknown => {
            tracing::error!("{address}: not in the ledger");
            ExitCode::from(1)
        }
        Reactivation::NeedsForce { reason } => {
            tracing::error!(
                "{address} is suppressed ({reason}); this is permanent evidence, use --force to reactivate anyway"
            );
            ExitCode::from(1)
        }
    })
}
