//! `rebound ingest [--db PATH] [--config FILE] PATH...`: files, directories, Maildirs and mbox
//! files through the analysis into the ledger, by the same `Ledger::ingest` the IMAP worker
//! calls. A message that fails is reported and the run goes on.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use super::LedgerArgs;
use crate::input;
use crate::ledger::{Origin, RunSummary, time};

pub fn run(args: &LedgerArgs, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let (_, mut ledger) = args.open()?;
    let run_id = ledger.start_run("files")?;
    let mut summary = RunSummary::default();
    let started = Instant::now();
    input::for_each_message(paths, |item| match item {
        Ok(msg) => match ledger.ingest(&msg.raw, &file_origin(&msg.source)) {
            Ok(outcome) => summary.record(&outcome),
            Err(e) => {
                eprintln!("rebound: {}: {e:#}", msg.source);
                summary.error(format!("{}: {e:#}", msg.source));
            }
        },
        Err(e) => {
            eprintln!("rebound: {e}");
            summary.error(e.to_string());
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    ledger.finish_run(run_id, &summary)?;

    let total = summary.new + summary.duplicates;
    println!(
        "ingested {total} messages into {} in {elapsed:.2} s ({:.0} msg/s): {} new, {} duplicates",
        ledger.path().display(),
        total as f64 / elapsed.max(1e-9),
        summary.new,
        summary.duplicates,
    );
    let bounces: Vec<String> = summary
        .bounces_by_label
        .iter()
        .map(|(label, n)| format!("{label} {n}"))
        .collect();
    println!(
        "bounced recipients: {}; complaints {}, unsubscribes {}, auto-replies {}, unparsed {}",
        if bounces.is_empty() {
            "none".to_string()
        } else {
            bounces.join(", ")
        },
        summary.complaints,
        summary.unsubscribes,
        summary.auto_replies,
        summary.unparsed,
    );
    if !summary.errors.is_empty() {
        println!(
            "{} errors (run {run_id} in the runs table)",
            summary.errors.len()
        );
    }
    Ok(if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A file's origin. Its modification time stands in for IMAP's INTERNALDATE: for a Maildir it
/// is the delivery time, and it makes the last-resort event time of an undated message the
/// same in every run (instead of the time of ingestion).
fn file_origin(source: &str) -> Origin {
    let path = Path::new(source);
    let meta = path.metadata().or_else(|e| match source.rsplit_once('#') {
        Some((file, n)) if n.bytes().all(|b| b.is_ascii_digit()) => Path::new(file).metadata(),
        _ => Err(e),
    });
    let mtime = meta.and_then(|m| m.modified()).ok().map(|t| {
        let t: chrono::DateTime<chrono::Utc> = t.into();
        t.format(time::FORMAT).to_string()
    });
    Origin {
        internal_date: mtime,
        ..Origin::file(source)
    }
}
