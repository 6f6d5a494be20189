//! `rebound reclassify [--since DATE]`: re-run the analysis on the stored raw messages and
//! rebuild events and projection in one transaction, printing what changed.

use std::io::Write;
use std::process::ExitCode;

use super::LedgerArgs;

pub fn run(args: &LedgerArgs, since: Option<&str>) -> anyhow::Result<ExitCode> {
    let (_, mut ledger) = args.open_existing()?;
    let report = ledger.reclassify(since)?;
    write!(std::io::stdout().lock(), "{report}")?;
    Ok(ExitCode::SUCCESS)
}
