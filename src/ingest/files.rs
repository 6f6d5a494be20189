//! `rebound ingest`'s half of the pipeline: files, directories, Maildirs and mbox files read in
//! bounded batches, prepared on the analysis threads and written by the writer, batch k+1 being
//! read and prepared while batch k is written. Messages the ledger already holds (same bytes)
//! are not analysed again: a rescan is nearly free.

use std::path::{Path, PathBuf};

use super::{Bounds, Message, Pending, Writer, prepare};
use crate::analysis::{Analysis, Settings};
use crate::input::{self, InputMessage};
use crate::ledger::{Origin, Outcome, Prepared, RawEncoding, StoredRaw, sha256_hex, time};

/// What became of one message read from disk.
pub enum Event {
    Stored(Outcome),
    /// Read but not stored (a database error): (source, error).
    Failed(String, anyhow::Error),
    /// A file that could not be read as messages.
    Unreadable(String),
}

/// Reads `paths` into the ledger through `writer`; `on` hears of every message, in order.
pub fn ingest(
    paths: &[PathBuf],
    writer: &Writer,
    settings: &Settings,
    bounds: Bounds,
    mut on: impl FnMut(Event),
) {
    let mut batch: Vec<(Message, String)> = Vec::new();
    let mut bytes = 0usize;
    let mut in_flight: Option<(Pending, Vec<Option<String>>)> = None;
    let mut flush = |batch: &mut Vec<(Message, String)>, on: &mut dyn FnMut(Event)| {
        let taken = std::mem::take(batch);
        let next = submit(taken, writer, settings, on);
        if let Some((pending, sources)) = in_flight.take() {
            report(pending, sources, on);
        }
        in_flight = next;
    };
    input::for_each_message(paths, |item| match item {
        Ok(InputMessage { source, raw }) => {
            bytes += raw.len();
            let origin = file_origin(&source);
            batch.push((Message::new(raw, origin), source));
            if bounds.full(batch.len(), bytes) {
                flush(&mut batch, &mut on);
                bytes = 0;
            }
        }
        Err(e) => on(Event::Unreadable(e.to_string())),
    });
    flush(&mut batch, &mut on);
    if let Some((pending, sources)) = in_flight.take() {
        report(pending, sources, &mut on);
    }
}

/// Prepares what the ledger does not hold yet and queues it; duplicates are reported as such
/// at once. The sources of the queued batch come back with it (`None`: reported already).
fn submit(
    batch: Vec<(Message, String)>,
    writer: &Writer,
    settings: &Settings,
    on: &mut dyn FnMut(Event),
) -> Option<(Pending, Vec<Option<String>>)> {
    if batch.is_empty() {
        return None;
    }
    let shas: Vec<String> = batch.iter().map(|(m, _)| sha256_hex(&m.raw)).collect();
    let known = match writer.known_blocking(shas.clone()) {
        Ok(k) => k,
        Err(e) => {
            let e = format!("{e:#}");
            for (_, source) in batch {
                on(Event::Failed(source, anyhow::anyhow!("{e}")));
            }
            return None;
        }
    };
    // Known messages still go to the writer (cheaply: its duplicate outcome is what reports
    // them), but neither analysed nor compressed nor hashed again: they are stored already.
    let mut sources = Vec::with_capacity(batch.len());
    let mut slots: Vec<Option<Prepared>> = Vec::with_capacity(batch.len());
    let mut fresh = Vec::new();
    for ((m, source), sha) in batch.into_iter().zip(shas) {
        sources.push(Some(source));
        if known.contains(&sha) {
            slots.push(Some(Prepared {
                sha256: sha,
                analysis: Analysis::unparsed("already stored"),
                raw: StoredRaw {
                    size: m.raw.len(),
                    bytes: m.raw,
                    encoding: RawEncoding::Plain,
                },
                origin: m.origin,
                fetch_failed: true,
            }));
        } else {
            slots.push(None);
            fresh.push(Message {
                sha256: Some(sha),
                ..m
            });
        }
    }
    let mut fresh = prepare(fresh, settings).into_iter();
    let prepared: Vec<Prepared> = slots
        .into_iter()
        .filter_map(|slot| slot.or_else(|| fresh.next()))
        .collect();
    Some((writer.submit_blocking(prepared, None), sources))
}

fn report(pending: Pending, sources: Vec<Option<String>>, on: &mut dyn FnMut(Event)) {
    match pending.wait_blocking() {
        Ok(outcomes) => {
            for (source, outcome) in sources.into_iter().zip(outcomes) {
                match (source, outcome) {
                    (_, Ok(o)) => on(Event::Stored(o)),
                    (Some(source), Err(e)) => on(Event::Failed(source, e)),
                    (None, Err(_)) => {}
                }
            }
        }
        Err(e) => {
            let e = format!("{e:#}");
            for source in sources.into_iter().flatten() {
                on(Event::Failed(source, anyhow::anyhow!("{e}")));
            }
        }
    }
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
