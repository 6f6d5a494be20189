//! `rebound ingest [--db PATH] [--config FILE] PATH...`: files, directories, Maildirs and mbox
//! files through the analysis into the ledger, by the same `Ledger::ingest` the IMAP worker
//! calls. A message that fails is reported and the run goes on.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use super::LedgerArgs;
use crate::input::{self, InputMessage};
use crate::ledger::{Incoming, Origin, RunSummary, time};

/// Messages per ledger transaction: enough to amortise the commit and the projection replay,
/// small enough to keep memory flat.
const BATCH_MESSAGES: usize = 256;
/// ...and at most this many bytes of mail held at once.
const BATCH_BYTES: usize = 32 << 20;

pub fn run(args: &LedgerArgs, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let (_, mut ledger) = args.open()?;
    // The files stay where they are: an ingest undone by a power cut is simply done again.
    ledger.sync_every_commit(false)?;
    let run_id = ledger.start_run("files")?;
    let mut summary = RunSummary::default();
    let started = Instant::now();
    // Messages go to the ledger in batches (one transaction, analysis on every core); a
    // batch is bounded in count and bytes so that memory stays flat however many files.
    let mut batch: Vec<(InputMessage, Origin)> = Vec::new();
    let mut bytes = 0usize;
    let mut flush = |batch: &mut Vec<(InputMessage, Origin)>, summary: &mut RunSummary| {
        let items: Vec<Incoming<'_>> = batch
            .iter()
            .map(|(m, o)| Incoming::new(&m.raw, o))
            .collect();
        match ledger.ingest_batch(&items) {
            Ok(outcomes) => {
                for ((msg, _), outcome) in batch.iter().zip(outcomes) {
                    match outcome {
                        Ok(outcome) => summary.record(&outcome),
                        Err(e) => failed(summary, &msg.source, &e),
                    }
                }
            }
            Err(e) => batch
                .iter()
                .for_each(|(m, _)| failed(summary, &m.source, &e)),
        }
        batch.clear();
    };
    input::for_each_message(paths, |item| match item {
        Ok(msg) => {
            bytes += msg.raw.len();
            let origin = file_origin(&msg.source);
            batch.push((msg, origin));
            if batch.len() >= BATCH_MESSAGES || bytes >= BATCH_BYTES {
                flush(&mut batch, &mut summary);
                bytes = 0;
            }
        }
        Err(e) => {
            tracing::error!("{e}");
            summary.error(e.to_string());
        }
    });
    flush(&mut batch, &mut summary);
    let elapsed = started.elapsed().as_secs_f64();
    ledger.finish_run(run_id, &summary)?;

    let total = summary.new + summary.duplicates;
    // The work is done: a reader gone away does not change how it went (the exit code).
    let mut out = super::output::Lines::new();
    out.line(format_args!(
        "ingested {total} messages into {} in {elapsed:.2} s ({:.0} msg/s): {} new, {} duplicates",
        ledger.path().display(),
        total as f64 / elapsed.max(1e-9),
        summary.new,
        summary.duplicates,
    ))?;
    out.line(super::summary::line("files", !summary.ok(), &summary))?;
    if !summary.errors.is_empty() {
        out.line(format_args!(
            "{} errors (run {run_id} in the runs table)",
            summary.errors.len()
        ))?;
    }
    Ok(if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A message that did not reach the ledger: reported, and the run goes on.
fn failed(summary: &mut RunSummary, source: &str, e: &anyhow::Error) {
    tracing::error!("{source}: {e:#}");
    summary.error(format!("{source}: {e:#}"));
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
