//! `rebound export`: the suppression list for the sending system, whole or what changed since
//! the last export.
//!
//! Without a cursor it prints every address suppressed now (one `add` entry each). With
//! `--since CURSOR` (or `--cursor-file FILE` holding one) it prints only the addresses whose
//! state changed after that cursor, once each with their net change: `add` (suppressed now,
//! with its reason) or `remove` (no longer suppressed: reactivated, proven alive, or a rebuild
//! under a new policy). The new cursor is printed on stderr (`cursor: N`), or written to the
//! cursor file, only after the output is safely written: a sync job that fails half way gets
//! the same changes again next time.
//!
//! Formats (every field name is stable):
//! - `jsonl`: one object per line, `{"op":"add","address":...,"state":"suppressed","reason":"hard","since":...,"rule":"hard","evidence":123}`;
//!   a removal is `"op":"remove"` with the address's state now.
//! - `json`: one array of the same objects.
//! - `csv`: a header `op,address,state,reason,since,rule,evidence`, then one row per entry
//!   (RFC 4180 quoting); a removal has `op` = `remove`.
//! - `postfix`: a Postfix access(5) map, `ADDRESS REJECT 5.1.1 suppressed: hard bounce`, for
//!   `postmap`. It is always the whole list (postmap rebuilds its table from the whole file),
//!   with or without a cursor; the cursor still moves on.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::LedgerArgs;
use crate::atomic_file::AtomicFile;
use crate::ledger::{ExportEntry, ExportQuery, SuppressionReason};

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Json,
    Csv,
    Postfix,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// How to print the list: jsonl, json, csv, or postfix (an access(5) map for postmap).
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub format: Format,
    /// Only these suppression reasons (comma-separated): hard, invalid, complaint, unsubscribe,
    /// soft_limit, manual.
    #[arg(long, value_delimiter = ',', value_name = "REASON,...")]
    pub reason: Vec<String>,
    /// Only what changed after this cursor (printed by the previous export).
    #[arg(long, value_name = "CURSOR")]
    pub since: Option<i64>,
    /// Read the cursor from this file (when it exists) and write the new one to it, instead of
    /// printing it on stderr.
    #[arg(long, value_name = "FILE")]
    pub cursor_file: Option<PathBuf>,
    /// Write to this file (replaced atomically) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let reasons = parse_reasons(&args.reason)?;
    let since = match (args.since, &args.cursor_file) {
        (Some(c), _) => Some(c),
        (None, Some(file)) => read_cursor(file)?,
        (None, None) => None,
    };
    let (_, ledger) = args.ledger.open_existing()?;
    let query = ExportQuery {
        reasons,
        // postmap needs the whole map, whatever changed.
        since: since.filter(|_| args.format != Format::Postfix),
    };
    let cursor = match &args.output {
        Some(path) => {
            let mut file = AtomicFile::create(path, 0o600)
                .with_context(|| {
                    format!(
                        "--output {}: its directory must exist and be writable (the file is written beside it, then renamed)",
                        path.display()
                    )
                })?;
            let cursor = write(&ledger, &query, args.format, &mut file)?;
            file.commit()
                .with_context(|| format!("writing {}", path.display()))?;
            cursor
        }
        None => {
            let mut out = io::BufWriter::new(io::stdout().lock());
            let cursor = write(&ledger, &query, args.format, &mut out)?;
            out.flush()?;
            cursor
        }
    };
    // Only now is the output safely where it goes.
    match &args.cursor_file {
        Some(file) => AtomicFile::write(file, 0o600, format!("{cursor}\n").as_bytes())
            .with_context(|| format!("writing the cursor file {}", file.display()))?,
        None => eprintln!("cursor: {cursor}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_reasons(given: &[String]) -> anyhow::Result<BTreeSet<SuppressionReason>> {
    given
        .iter()
        .map(|r| r.trim())
        .filter(|r| !r.is_empty())
        .map(|r| {
            SuppressionReason::parse(r).with_context(|| {
                format!(
                    "--reason {r:?}: the reasons are hard, invalid, complaint, unsubscribe, soft_limit and manual"
                )
            })
        })
        .collect()
}

/// The cursor in a cursor file: none when the file does not exist or is empty (a first sync).
fn read_cursor(file: &Path) -> anyhow::Result<Option<i64>> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("reading the cursor file {}", file.display()));
        }
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<i64>().ok().filter(|c| *c >= 0).map(Some).with_context(|| {
        format!(
            "the cursor file {} holds no cursor (a number written by rebound export): remove it for a full export",
            file.display()
        )
    })
}

/// Writes the export in `format`; returns the cursor that goes with it.
fn write(
    ledger: &crate::ledger::Ledger,
    query: &ExportQuery,
    format: Format,
    out: &mut dyn Write,
) -> anyhow::Result<i64> {
    let mut first = true;
    let mut skipped = 0u64;
    match format {
        Format::Csv => writeln!(out, "op,address,state,reason,since,rule,evidence")?,
        Format::Json => write!(out, "[")?,
        Format::Jsonl | Format::Postfix => {}
    }
    let cursor = ledger.export(query, |e| {
        match format {
            Format::Jsonl => {
                serde_json::to_writer(&mut *out, &e)?;
                writeln!(out)?;
            }
            Format::Json => {
                write!(out, "{}\n  ", if first { "" } else { "," })?;
                serde_json::to_writer(&mut *out, &e)?;
            }
            Format::Csv => writeln!(out, "{}", csv_row(&e))?,
            Format::Postfix => match postfix_line(&e) {
                Some(line) => writeln!(out, "{line}")?,
                None => {
                    skipped += 1;
                    tracing::warn!(
                        "{:?} cannot be a key of a Postfix access map (it needs user@domain, without \
                         spaces, not starting with #); left out of the map",
                        e.address
                    );
                }
            },
        }
        first = false;
        Ok(())
    })?;
    if format == Format::Json {
        writeln!(out, "{}]", if first { "" } else { "\n" })?;
    }
    if skipped > 0 {
        tracing::warn!("{skipped} address(es) left out of the Postfix map");
    }
    Ok(cursor)
}

/// One CSV field, quoted when it must be (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_row(e: &ExportEntry) -> String {
    [
        e.op.as_str().to_string(),
        csv_field(&e.address),
        e.state.as_str().to_string(),
        e.reason.map(|r| r.as_str().to_string()).unwrap_or_default(),
        e.since.clone().unwrap_or_default(),
        csv_field(e.rule.as_deref().unwrap_or("")),
        e.evidence.map(|id| id.to_string()).unwrap_or_default(),
    ]
    .join(",")
}

/// The enhanced status code (RFC 3463) and words of a suppression in the map: X.1.1 ("bad
/// destination mailbox address") for an address that does not exist; X.2.0 (the mailbox's
/// status) for one that kept failing; X.7.1 ("delivery not authorized") for a person's wish
/// or an operator's decision.
pub fn postfix_reply(reason: SuppressionReason) -> (&'static str, &'static str) {
    match reason {
        SuppressionReason::Hard => ("5.1.1", "hard bounce"),
        SuppressionReason::Invalid => ("5.1.1", "invalid address"),
        SuppressionReason::SoftLimit => ("5.2.0", "repeated soft bounces"),
        SuppressionReason::Complaint => ("5.7.1", "spam complaint"),
        SuppressionReason::Unsubscribe => ("5.7.1", "unsubscribed"),
        SuppressionReason::Manual => ("5.7.1", "suppressed by an operator"),
    }
}

/// `carl@example.org REJECT 5.1.1 suppressed: hard bounce`, or `None` for an address that
/// cannot be a key of an access map as a full address: postmap splits a line at whitespace,
/// skips a line starting with `#`, and a key without a local part or a domain (`user@`,
/// `@domain`, `domain`) would match far more than one address.
fn postfix_line(e: &ExportEntry) -> Option<String> {
    let reason = e.reason?;
    let a = &e.address;
    let (local, domain) = a.rsplit_once('@')?;
    if local.is_empty()
        || domain.is_empty()
        || a.starts_with('#')
        || a.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return None;
    }
    let (code, words) = postfix_reply(reason);
    Some(format!("{a} REJECT {code} suppressed: {words}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Op, State};

    fn entry(address: &str, reason: Option<SuppressionReason>) -> ExportEntry {
        ExportEntry {
            op: Op::Add,
            address: address.into(),
            state: State::Suppressed,
            reason,
            since: Some("2026-11-02T10:00:05Z".into()),
            rule: Some("hard".into()),
            evidence: Some(7),
        }
    }

    #[test]
    fn postfix_lines_name_one_full_address_or_none() {
        let hard = Some(SuppressionReason::Hard);
        assert_eq!(
            postfix_line(&entry("carl@example.org", hard)).unwrap(),
            "carl@example.org REJECT 5.1.1 suppressed: hard bounce"
        );
        assert_eq!(
            postfix_line(&entry(
                "u@example.org",
                Some(SuppressionReason::Unsubscribe)
            ))
            .unwrap(),
            "u@example.org REJECT 5.7.1 suppressed: unsubscribed"
        );
        for bad in [
            "#x@example.org",
            "nodomain",
            "user@",
            "@example.org",
            "a b@example.org",
        ] {
            assert_eq!(postfix_line(&entry(bad, hard)), None, "{bad}");
        }
    }

    #[test]
    fn csv_quotes_what_it_must() {
        let mut e = entry("\"a,b\"@example.org", Some(SuppressionReason::Hard));
        e.op = Op::Remove;
        assert_eq!(
            csv_row(&e),
            "remove,\"\"\"a,b\"\"@example.org\",suppressed,hard,2026-11-02T10:00:05Z,hard,7"
        );
    }

    #[test]
    fn reasons_are_checked() {
        assert_eq!(
            parse_reasons(&["hard".into(), "invalid".into()])
                .unwrap()
                .len(),
            2
        );
        assert!(
            format!("{:#}", parse_reasons(&["hrad".into()]).unwrap_err()).contains("hard, invalid")
        );
    }
}
