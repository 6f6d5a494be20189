//! `rebound sends import [--format csv|jsonl|postfix|exim] FILE... | -`: what the sending
//! system sent, for rates. One line per input; refused rows on stderr with their line number.
//! Each input is committed on its own (its sends, where it was read up to, the pauses the
//! sends change), so a failure in one loses nothing of the others. Exit 1 when an input could
//! not be read or a row was refused.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use super::LedgerArgs;
use super::output::Lines;
use crate::ledger::time;
use crate::sends::{self, Format};

#[derive(Subcommand, Debug)]
pub enum SendsCommand {
    /// Import sends from CSV or JSON lines (any sending system) or from the MTA's log (Postfix's
    /// mail.log, Exim's mainlog; rotated and gzipped files too). Importing the same data again
    /// changes nothing; a growing log is read on from where the last import stopped.
    Import {
        #[command(flatten)]
        ledger: LedgerArgs,
        /// The inputs' format; by default told by the file name (.csv, .jsonl) or the first lines.
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Skip inputs that do not exist (a rotated log that is not there yet) instead of
        /// failing.
        #[arg(long)]
        if_exists: bool,
        /// Files (plain or gzipped), or `-` for standard input. Files are read oldest first
        /// (by modification time), the order in which a rotated log was written.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
}

pub fn run(command: &SendsCommand) -> anyhow::Result<ExitCode> {
    match command {
        SendsCommand::Import {
            ledger,
            format,
            if_exists,
            inputs,
        } => import(ledger, *format, *if_exists, inputs),
    }
}

fn import(
    args: &LedgerArgs,
    format: Option<Format>,
    if_exists: bool,
    inputs: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let (_, mut ledger) = args.open()?;
    let mut out = Lines::new();
    let mut failed = false;
    for path in oldest_first(inputs) {
        let shown = path.display();
        if if_exists && path.as_os_str() != "-" && !path.exists() {
            tracing::info!("{shown} does not exist: skipped");
            continue;
        }
        let read = match sends::read(&ledger, &path, format, time::now()) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{shown}: {e:#}");
                failed = true;
                continue;
            }
        };
        for bad in &read.bad {
            tracing::warn!("{shown}:{}: {}; row skipped", bad.line, bad.why);
        }
        if read.bad_count > read.bad.len() as u64 {
            tracing::warn!(
                "{shown}: {} more rows skipped",
                read.bad_count - read.bad.len() as u64
            );
        }
        failed |= read.bad_count > 0;
        if read.shorter {
            tracing::warn!(
                "{shown} is shorter than the {} bytes imported from it before: it was rewritten \
                 since, and nothing of it is imported (an input is known by its first kilobyte; \
                 import the new content as a new file)",
                read.from_offset
            );
            failed = true;
            continue;
        }
        let Some(imported) = &read.imported else {
            out.line(format!(
                "{shown}: nothing new ({}, read up to byte {} before)",
                read.format.name(),
                read.from_offset
            ))?;
            continue;
        };
        match ledger.commit_import(imported) {
            Ok(done) => out.line(format!(
                "{shown}: {} lines ({}, from byte {}): {} sends in {} hourly rows, {} rows refused{}",
                read.lines,
                read.format.name(),
                read.from_offset,
                done.sends,
                done.rows,
                read.bad_count,
                match done.replayed {
                    0 => String::new(),
                    n => format!(", {n} pause histories replayed"),
                }
            ))?,
            Err(e) => {
                tracing::error!("{shown}: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Files by modification time, oldest first (a rotated log's order: `mail.log.2.gz`,
/// `mail.log.1`, `mail.log`), so that a message's lines are read in the order they were
/// written; standard input last.
fn oldest_first(inputs: &[PathBuf]) -> Vec<PathBuf> {
    let mtime = |p: &Path| {
        if p.as_os_str() == "-" {
            return None;
        }
        std::fs::metadata(p).and_then(|m| m.modified()).ok()
    };
    let mut files: Vec<(Option<std::time::SystemTime>, bool, PathBuf)> = inputs
        .iter()
        .map(|p| (mtime(p), p.as_os_str() == "-", p.clone()))
        .collect();
    files.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    files.into_iter().map(|(_, _, p)| p).collect()
}
