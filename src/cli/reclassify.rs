//! `rebound reclassify [--since DATE] [--all]`: re-run the analysis, with the config's rule
//! table and `[verp]` settings, on the stored messages other settings (or an older parser)
//! decided (`--all`: every one), and rebuild events and projection in one transaction,
//! printing what changed.

use std::io::Write;
use std::process::ExitCode;

use super::LedgerArgs;

pub fn run(args: &LedgerArgs, since: Option<&str>, all: bool) -> anyhow::Result<ExitCode> {
    let (config, mut ledger) = args.open_existing()?;
    let report = ledger.reclassify(&config.settings()?, since, all)?;
    write!(std::io::stdout().lock(), "{report}")?;
    Ok(ExitCode::SUCCESS)
}
