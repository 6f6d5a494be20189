//! `rebound ingest [--db PATH] [--config FILE] PATH...`: files, directories, Maildirs and mbox
//! files through the ingest pipeline (`crate::ingest`) the IMAP worker uses too. A message that
//! fails is reported and the run goes on.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use super::LedgerArgs;
use crate::ingest::{self, Bounds, files::Event};
use crate::ledger::RunSummary;

pub fn run(args: &LedgerArgs, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let (settings, ledger) = args.open_for_analysis()?;
    let path = ledger.path().to_path_buf();
    // The files stay where they are: an ingest undone by a power cut is simply done again.
    ledger.sync_every_commit(false)?;
    let (writer, thread) = ingest::writer::start(ledger)?;
    let run_id = writer.start_run_blocking("files")?;
    let mut summary = RunSummary::default();
    let started = Instant::now();
    ingest::files::ingest(
        paths,
        &writer,
        &settings,
        Bounds::default(),
        |event| match event {
            Event::Stored(outcome) => summary.record(&outcome),
            Event::Failed(source, e) => {
                tracing::error!("{source}: {e:#}");
                summary.error(format!("{source}: {e:#}"));
            }
            Event::Unreadable(e) => {
                tracing::error!("{e}");
                summary.error(e);
            }
        },
    );
    let elapsed = started.elapsed().as_secs_f64();
    writer.finish_run_blocking(run_id, summary.clone())?;
    drop(writer);
    thread.join()?;

    let total = summary.new + summary.duplicates;
    // The work is done: a reader gone away does not change how it went (the exit code).
    let mut out = super::output::Lines::new();
    out.line(format_args!(
        "ingested {total} messages into {} in {elapsed:.2} s ({:.0} msg/s): {} new, {} duplicates",
        path.display(),
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
