//! Send data in: what the sending system sent, the denominator of every rate.
//!
//! Four formats: CSV and JSON lines from any sending system ([`table`]: one row per send or per
//! aggregate), and the MTA's own log, Postfix's or Exim's ([`maillog`]). Each input (a file,
//! gzipped or not, or standard input: [`input`]) is read from where its last import stopped
//! (see `crate::ledger::sends`), parsed into sends aggregated per hour × recipient domain ×
//! sender domain × campaign, and handed to the ledger to commit in one transaction
//! ([`crate::ledger::Ledger::commit_import`]). Reading costs one pass over the new bytes and
//! memory for the aggregates, not for the lines.

pub mod input;
pub mod maillog;
pub mod table;

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::ledger::Ledger;
use crate::ledger::sends::{HEAD_BYTES, ImportRecord, Imported, InputIdentity, Sends};
use input::{Input, Line};
use maillog::{MailLog, Mta};

/// The format of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A header row, then one row per send or aggregate.
    Csv,
    /// One JSON object per line.
    Jsonl,
    /// Postfix's mail log.
    Postfix,
    /// Exim's main log.
    Exim,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Postfix => "postfix",
            Format::Exim => "exim",
        }
    }

    fn is_log(self) -> bool {
        matches!(self, Format::Postfix | Format::Exim)
    }

    /// The format of an input by its name (`.csv`, `.jsonl`...; `.gz` aside), else by its first
    /// lines; `None` when neither tells.
    pub fn detect(path: &Path, head: &[u8]) -> Option<Format> {
        let name = path.to_string_lossy().to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        if name.ends_with(".csv") {
            return Some(Format::Csv);
        }
        if name.ends_with(".jsonl") || name.ends_with(".ndjson") || name.ends_with(".json") {
            return Some(Format::Jsonl);
        }
        let text = String::from_utf8_lossy(head);
        let mut lines = text.lines().filter(|l| !l.trim().is_empty()).peekable();
        let first = *lines.peek()?;
        if first.trim_start().starts_with('{') {
            return Some(Format::Jsonl);
        }
        let lines: Vec<&str> = lines.collect();
        if lines
            .iter()
            .any(|l| l.contains(" postfix") && l.contains("]: "))
        {
            return Some(Format::Postfix);
        }
        let exim_stamp = |l: &str| {
            let b = l.as_bytes();
            b.len() > 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b' ' && b[13] == b':'
        };
        if lines.iter().all(|l| exim_stamp(l)) {
            return Some(Format::Exim);
        }
        let header = first.to_ascii_lowercase();
        (header.contains("time") && header.contains(',')).then_some(Format::Csv)
    }
}

/// A row of a CSV or JSON lines input that was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// 1-based line number in the input.
    pub line: u64,
    pub why: String,
}

/// The most refused rows kept for the report of one input (all are counted).
pub const BAD_ROWS_SHOWN: usize = 100;

/// One input read: what to commit, and what to tell.
#[derive(Debug)]
pub struct Read {
    pub format: Format,
    /// What to commit (`None`: nothing new, or nothing to read).
    pub imported: Option<Imported>,
    /// Where this import started.
    pub from_offset: u64,
    /// Lines read by this import.
    pub lines: u64,
    /// Sends found by this import.
    pub sends: u64,
    /// The first refused rows.
    pub bad: Vec<BadRow>,
    pub bad_count: u64,
    /// The input is shorter than what an earlier import read of it: it was rewritten, and
    /// nothing of it is imported (its first KB is that of the earlier one).
    pub shorter: bool,
}

/// Reads an input (`-`: standard input) from where its last import stopped.
pub fn read(
    ledger: &Ledger,
    path: &Path,
    format: Option<Format>,
    now: DateTime<Utc>,
) -> anyhow::Result<Read> {
    let input = Input::open(path)?;
    let format = match format {
        Some(f) => f,
        None if input.head.is_empty() => Format::Csv,
        None => Format::detect(path, &input.head).ok_or_else(|| {
            anyhow::anyhow!(
                "cannot tell the format of {}: say it with --format csv, jsonl, postfix or exim",
                path.display()
            )
        })?,
    };
    let mut read = Read {
        format,
        imported: None,
        from_offset: 0,
        lines: 0,
        sends: 0,
        bad: Vec::new(),
        bad_count: 0,
        shorter: false,
    };
    if input.head.is_empty() {
        return Ok(read);
    }
    let identity = InputIdentity {
        format: format.name().to_string(),
        path: path.display().to_string(),
        device: input.device,
        inode: input.inode,
        head: input.head.clone(),
    };
    let previous: Option<ImportRecord> = ledger.find_import(&identity)?;
    let (offset, lines_before) = previous.as_ref().map_or((0, 0), |p| (p.offset, p.lines));
    read.from_offset = offset;
    let csv = if format == Format::Csv {
        let end = input.head.iter().position(|&b| b == b'\n');
        anyhow::ensure!(
            end.is_some() || input.head.len() < HEAD_BYTES,
            "{}: the header row is longer than {HEAD_BYTES} bytes",
            path.display()
        );
        let header = String::from_utf8_lossy(&input.head[..end.unwrap_or(input.head.len())]);
        Some(table::Csv::new(&header).map_err(|e| {
            anyhow::anyhow!("{}: {e}; nothing was imported from it", path.display())
        })?)
    } else {
        None
    };
    let mut log = match format {
        Format::Postfix => Some(MailLog::new(
            Mta::Postfix,
            ledger.load_queue("postfix")?,
            now,
        )),
        Format::Exim => Some(MailLog::new(Mta::Exim, ledger.load_queue("exim")?, now)),
        _ => None,
    };
    let Some(mut lines) = input.from_offset(offset)? else {
        read.shorter = true;
        return Ok(read);
    };
    let mut sends = Sends::new();
    let mut pos = offset;
    let mut number = lines_before;
    let refuse = |read: &mut Read, line: u64, why: String| {
        read.bad_count += 1;
        if read.bad.len() < BAD_ROWS_SHOWN {
            read.bad.push(BadRow { line, why });
        }
    };
    while let Some(line) = lines.next_line()? {
        match line {
            Line::TooLong(len) => {
                pos += len;
                number += 1;
                read.lines += 1;
                if !format.is_log() {
                    refuse(
                        &mut read,
                        number,
                        format!("longer than {} KiB", input::MAX_LINE / 1024),
                    );
                }
            }
            Line::Text(bytes) => {
                // A log's last line without its newline may be half written: left for the
                // next import.
                if format.is_log() && !bytes.ends_with(b"\n") {
                    break;
                }
                pos += bytes.len() as u64;
                number += 1;
                read.lines += 1;
                let text = String::from_utf8_lossy(&bytes);
                let added = match (&csv, &mut log) {
                    (Some(_), _) if number == 1 => Ok(0),
                    (Some(c), _) => c.row(&text, now, &mut sends),
                    (None, Some(l)) => Ok(l.line(&text, &mut sends)),
                    (None, None) => table::json_row(&text, now, &mut sends),
                };
                match added {
                    Ok(n) => read.sends += n,
                    Err(why) => refuse(&mut read, number, why),
                }
            }
        }
    }
    if pos == offset {
        return Ok(read);
    }
    read.imported = Some(Imported {
        identity,
        previous,
        offset: pos,
        lines: number,
        sends,
        bad_rows: read.bad_count,
        queue: log.map(|l| (format_log_name(format).to_string(), l.into_queue())),
    });
    Ok(read)
}

fn format_log_name(format: Format) -> &'static str {
    match format {
        Format::Exim => Mta::Exim.name(),
        _ => Mta::Postfix.name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_by_name_then_by_content() {
        let p = Path::new;
        assert_eq!(Format::detect(p("s.csv.gz"), b"x"), Some(Format::Csv));
        assert_eq!(Format::detect(p("s.ndjson"), b"x"), Some(Format::Jsonl));
        assert_eq!(
            Format::detect(p("-"), b"{\"time\":\"2026-11-22T10:00:00Z\"}\n"),
            Some(Format::Jsonl)
        );
        assert_eq!(
            Format::detect(
                p("/var/log/mail.log.1"),
                b"Nov 22 06:25:01 mx1 rsyslogd: [origin] rsyslogd was HUPed\nNov 22 06:25:02 mx1 postfix/qmgr[10]: 3F2A61C0B7: removed\n"
            ),
            Some(Format::Postfix)
        );
        assert_eq!(
            Format::detect(
                p("mainlog"),
                b"2026-11-22 14:03:00 1vXyZa-000Abc-Q1 Completed\n"
            ),
            Some(Format::Exim)
        );
        assert_eq!(
            Format::detect(p("-"), b"time,recipient,sender\n"),
            Some(Format::Csv)
        );
        assert_eq!(Format::detect(p("-"), b"hello world\n"), None);
    }
}
