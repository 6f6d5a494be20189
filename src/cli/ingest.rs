//! `rebound ingest [--db PATH] [--config FILE] [--metrics-file PATH] PATH...`: files,
//! directories, Maildirs and mbox files through the ingest pipeline (`crate::ingest`) the IMAP
//! worker uses too. A message that fails is reported and the run goes on. The config's hooks
//! run as batches are committed (on a small runtime beside the synchronous ingest), then
//! retention's purge, then the metrics file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use super::LedgerArgs;
use crate::hooks::{self, Pace};
use crate::ingest::{self, Bounds, files::Event};
use crate::ledger::RunSummary;

pub fn run(
    args: &LedgerArgs,
    paths: &[PathBuf],
    metrics_file: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let begun = Instant::now();
    let (config, settings, ledger) = args.open_for_analysis()?;
    let path = ledger.path().to_path_buf();
    // The files stay where they are: an ingest undone by a power cut is simply done again.
    ledger.sync_every_commit(false)?;
    let (writer, thread) = ingest::writer::start(ledger)?;
    let runtime = if config.hooks.on_change.is_empty() {
        None
    } else {
        Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("hooks")
                .enable_all()
                .build()?,
        )
    };
    let hooks = runtime.as_ref().and_then(|rt| {
        let _in_runtime = rt.enter();
        hooks::start(&config.hooks, &writer, &path, Pace::Run)
    });
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
    if let (Some(rt), Some(hooks)) = (&runtime, hooks) {
        rt.block_on(hooks.finish());
    }
    match &runtime {
        Some(rt) => rt.block_on(super::upkeep::purge(&writer, &config.retention)),
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(super::upkeep::purge(&writer, &config.retention)),
    }
    drop(writer);
    thread.join()?;
    drop(runtime);
    if let Some(file) = metrics_file {
        let run = crate::metrics::RunFacts {
            command: "ingest",
            duration: begun.elapsed(),
            errors: summary.errors.len() as u64,
        };
        super::upkeep::metrics(&path, file, Some(&run), &config.hooks.hooks());
    }

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
