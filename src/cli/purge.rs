//! `rebound purge [--dry-run]`: drops the raw bytes of the messages `[retention]` says are
//! old enough, keeping everything read from them (see `crate::ledger::retention`). `poll` and
//! `ingest` do the same at the end of every run, and `watch` every hour; this is for a first
//! purge, or to see what one would drop.

use std::process::ExitCode;

use super::LedgerArgs;
use crate::ledger::{Ledger, Purged, Retention, time};

/// Messages per purge transaction (a `watch`'s writer goes on between two).
pub const STEP: usize = 500;

pub fn run(args: &LedgerArgs, dry_run: bool) -> anyhow::Result<ExitCode> {
    let (config, mut ledger) = args.open_existing()?;
    let retention = &config.retention;
    anyhow::ensure!(
        retention.is_set(),
        "no [retention] in the config: set raw_days (and other_days) to say when raw bytes go; nothing was purged"
    );
    let now = time::now();
    let mut out = super::output::Lines::new();
    if dry_run {
        let p = ledger.purge_preview(retention, now)?;
        out.line(format_args!("(dry run) would purge {}", describe(&p)))?;
        return Ok(ExitCode::SUCCESS);
    }
    let p = purge_all(&mut ledger, retention, now)?;
    out.line(format_args!("purged {}", describe(&p)))?;
    Ok(ExitCode::SUCCESS)
}

/// Purges everything due, [`STEP`] messages per transaction.
pub fn purge_all(
    ledger: &mut Ledger,
    retention: &Retention,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Purged> {
    let mut all = Purged::default();
    loop {
        let p = ledger.purge_raw(retention, now, STEP)?;
        all.merge(&p);
        if p.messages() < STEP as u64 {
            return Ok(all);
        }
    }
}

/// "the raw bytes of 12 messages (1.4 MB stored): bounce=10 other=2".
pub fn describe(p: &Purged) -> String {
    let kinds: Vec<String> = p
        .by_kind
        .iter()
        .map(|(k, n, _)| format!("{}={n}", k.as_str()))
        .collect();
    format!(
        "the raw bytes of {} messages ({:.1} MB stored){}{}",
        p.messages(),
        p.bytes() as f64 / 1e6,
        if kinds.is_empty() { "" } else { ": " },
        kinds.join(" ")
    )
}
