//! `rebound classify [--json] PATH...`: the analysis engine over files, no database.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::analysis::{Analysis, Settings};
use crate::input;

/// One line of `classify --json`: the source, then the analysis's fields. This shape is a
/// contract (the scorer and later tools read it): keys may be added, never renamed.
#[derive(Serialize)]
struct Line<'a> {
    source: &'a str,
    #[serde(flatten)]
    analysis: &'a Analysis,
}

pub fn run(paths: &[PathBuf], json: bool, settings: &Settings) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut errors = 0usize;
    let mut result = Ok(());
    if !json {
        writeln!(
            out,
            "{:<40} {:<16} {:<10} {:<36} {:<8} {:<18} {:<7} RULE",
            "SOURCE", "KIND", "MTA", "RECIPIENT", "LABEL", "REASON", "STATUS"
        )?;
    }
    input::for_each_message(paths, |item| {
        if result.is_err() {
            return;
        }
        match item {
            Ok(msg) => {
                let analysis = settings.analyze(&msg.raw);
                result = if json {
                    serde_json::to_writer(
                        &mut out,
                        &Line {
                            source: &msg.source,
                            analysis: &analysis,
                        },
                    )
                    .map_err(std::io::Error::from)
                    .and_then(|_| writeln!(out))
                } else {
                    write_table_rows(&mut out, &msg.source, &analysis)
                };
            }
            Err(e) => {
                errors += 1;
                tracing::error!("{e}");
            }
        }
    });
    // A closed pipe (`rebound classify ... | head`) ends the command quietly (cli::run).
    result.and_then(|_| out.flush())?;
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn write_table_rows(out: &mut impl Write, source: &str, a: &Analysis) -> std::io::Result<()> {
    let mta = a.mta.as_deref().unwrap_or("-");
    if a.recipients.is_empty() {
        return writeln!(
            out,
            "{:<40} {:<16} {:<10} {}",
            clip(source, 40),
            a.kind.as_str(),
            mta,
            a.error.as_deref().unwrap_or("")
        );
    }
    for r in &a.recipients {
        writeln!(
            out,
            "{:<40} {:<16} {:<10} {:<36} {:<8} {:<18} {:<7} {}",
            clip(source, 40),
            a.kind.as_str(),
            mta,
            clip(&r.address, 36),
            r.label.map(|l| l.as_str()).unwrap_or("-"),
            r.reason.map(|x| x.as_str()).unwrap_or("-"),
            r.status.as_deref().unwrap_or("-"),
            format_args!(
                "{}{}",
                if r.forged {
                    "FORGED (counts against nothing) "
                } else {
                    ""
                },
                r.rule.as_deref().unwrap_or("-")
            ),
        )?;
    }
    Ok(())
}

/// Keeps the end of long values (the file name is the interesting part of a path).
fn clip(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        s.to_string()
    } else {
        let tail: String = s.chars().skip(n - (width - 1)).collect();
        format!("…{tail}")
    }
}
