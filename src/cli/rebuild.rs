//! `rebound rebuild`: replay the whole projection (addresses, state changes, domain pauses)
//! from the events under the config's policy. The ledger keeps the projection up to date by
//! itself; this is the full replay it is checked against, for an operator who wants to see
//! it done.

use std::process::ExitCode;

use super::LedgerArgs;

pub fn run(args: &LedgerArgs) -> anyhow::Result<ExitCode> {
    let (_, mut ledger) = args.open_existing()?;
    let started = std::time::Instant::now();
    ledger.rebuild_projection()?;
    let n: i64 = ledger
        .connection()
        .query_row("SELECT count(*) FROM addresses", [], |r| r.get(0))?;
    println!(
        "replayed the projection of {n} addresses in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
