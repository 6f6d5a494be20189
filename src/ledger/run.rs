//! Runs: one row per ingestion run (`rebound ingest`, one poll of an IMAP mailbox, or a stretch
//! of a `watch` folder), so that operators can see at a sqlite3 prompt what each run did,
//! whether it failed, and when each mailbox last ran fine.
//!
//! A run records the process that runs it (`pid`, `host`). A process can die without closing
//! its run (SIGKILL, out of memory, a power cut); the next run to start notices that the
//! process is gone and marks the run `aborted_at`, instead of leaving it "running" for ever.
//! `heartbeat_at` is the last time a run had read everything it reads: the end of a poll or
//! ingest that went fine, and every round of a `watch` folder, so that the answer to "when
//! did this mailbox last run fine" stays current while a watch waits for mail.

use std::collections::{BTreeMap, HashMap};

use rusqlite::params;
use serde::Serialize;

use super::{Ledger, Outcome, time};
use crate::analysis::{Kind, Label};

/// What one run did. Filled with [`RunSummary::record`] per message and
/// [`RunSummary::error`] per failure, then stored by [`Ledger::finish_run`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunSummary {
    /// Messages stored for the first time.
    pub new: u64,
    /// Messages already in the ledger (same bytes or same IMAP UID).
    pub duplicates: u64,
    /// New messages, by kind.
    pub kinds: HashMap<Kind, u64>,
    /// Bounced recipients of new messages, by label (forged ones left out).
    pub bounces_by_label: BTreeMap<Label, u64>,
    /// Recipients of new messages stored as forged: evidence counted against nothing.
    pub forged: u64,
    /// Failures that kept a message out of the ledger (unreadable file, database error...).
    pub errors: Vec<String>,
    /// The one folder the run covered (a `watch` task); `None`: every folder, or files.
    pub folder: Option<String>,
}

impl RunSummary {
    /// Counts one ingested message.
    pub fn record(&mut self, outcome: &Outcome) {
        if outcome.duplicate {
            self.duplicates += 1;
            return;
        }
        self.new += 1;
        *self.kinds.entry(outcome.kind).or_default() += 1;
        for label in &outcome.labels {
            *self.bounces_by_label.entry(*label).or_default() += 1;
        }
        self.forged += outcome.forged as u64;
    }

    /// New messages of one kind.
    pub fn kind(&self, kind: Kind) -> u64 {
        self.kinds.get(&kind).copied().unwrap_or(0)
    }

    /// Bounced recipients with one label.
    pub fn label(&self, label: Label) -> u64 {
        self.bounces_by_label.get(&label).copied().unwrap_or(0)
    }

    pub fn error(&mut self, error: impl Into<String>) {
        self.errors.push(error.into());
    }

    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// `{"bounce": 9, "challenge": 1}`: the kinds that occurred, in the order of [`Kind::ALL`].
    fn kinds_json(&self) -> String {
        let map: serde_json::Map<String, serde_json::Value> = Kind::ALL
            .iter()
            .filter(|k| self.kind(**k) > 0)
            .map(|k| (k.as_str().to_string(), self.kind(*k).into()))
            .collect();
        serde_json::Value::Object(map).to_string()
    }
}

/// A run left unfinished whose process is gone, found by [`Ledger::start_run`].
struct AbortedRun {
    id: i64,
    mailbox: String,
    started_at: String,
}

impl Ledger {
    /// Opens a run for a mailbox (`files` for `rebound ingest`); returns its id. Runs left
    /// unfinished by processes that are gone are marked aborted first.
    pub fn start_run(&self, mailbox: &str) -> anyhow::Result<i64> {
        self.start_folder_run(mailbox, None)
    }

    /// [`Ledger::start_run`] for one folder of a mailbox (a `watch` folder task).
    pub fn start_folder_run(&self, mailbox: &str, folder: Option<&str>) -> anyhow::Result<i64> {
        let now = time::format(time::now());
        self.conn.execute(
            "INSERT INTO runs (mailbox, folder, started_at, pid, host) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![mailbox, folder, now, std::process::id(), process::host()],
        )?;
        let id = self.conn.last_insert_rowid();
        for run in self.mark_aborted(id)? {
            tracing::warn!(
                "run {} of {} (started {}) ended without finishing: its process is gone (killed, out of memory, or the machine stopped); marked aborted",
                run.id,
                run.mailbox,
                run.started_at
            );
        }
        Ok(id)
    }

    /// Marks the unfinished runs of this host whose process is gone as aborted, now; returns
    /// them. Runs of other hosts are left alone: their processes cannot be seen from here.
    fn mark_aborted(&self, noticed_by: i64) -> anyhow::Result<Vec<AbortedRun>> {
        let host = process::host();
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, mailbox, started_at, pid FROM runs
             WHERE finished_at IS NULL AND aborted_at IS NULL AND id <> ?1
               AND (host = ?2 OR host IS NULL)",
        )?;
        let candidates = stmt
            .query_map(params![noticed_by, host], |r| {
                Ok((
                    AbortedRun {
                        id: r.get(0)?,
                        mailbox: r.get(1)?,
                        started_at: r.get(2)?,
                    },
                    r.get::<_, Option<u32>>(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let now = time::format(time::now());
        let mut aborted = Vec::new();
        for (run, pid) in candidates {
            // A run without a pid was started by a rebound older than these columns.
            if pid.is_some_and(process::alive) {
                continue;
            }
            let why = match pid {
                Some(pid) => format!(
                    "aborted: process {pid} ended without finishing this run (noticed by run {noticed_by})"
                ),
                None => {
                    format!("aborted: the run was never finished (noticed by run {noticed_by})")
                }
            };
            self.conn.execute(
                "UPDATE runs SET aborted_at = ?2, ok = 0, errors = ?3
                 WHERE id = ?1 AND finished_at IS NULL",
                params![run.id, now, serde_json::to_string(&[why])?],
            )?;
            aborted.push(run);
        }
        Ok(aborted)
    }

    /// Closes a run with its summary. A run that went fine has read everything: its
    /// `heartbeat_at` is now.
    pub fn finish_run(&self, id: i64, summary: &RunSummary) -> anyhow::Result<()> {
        self.close_run(id, summary, true)
    }

    /// Closes a run that ends without a read of its own (a `watch` stopping): its counts and
    /// errors are stored, its heartbeat stays the time of its last complete read.
    pub fn stop_run(&self, id: i64, summary: &RunSummary) -> anyhow::Result<()> {
        self.close_run(id, summary, false)
    }

    fn close_run(&self, id: i64, summary: &RunSummary, read: bool) -> anyhow::Result<()> {
        let now = time::format(time::now());
        let heartbeat = (read && summary.ok()).then_some(now.as_str());
        let changed = self.conn.execute(
            "UPDATE runs SET finished_at = ?2, new = ?3, duplicates = ?4, bounces = ?5,
                 complaints = ?6, unsubscribes = ?7, auto_replies = ?8, unparsed = ?9,
                 errors = ?10, ok = ?11, folder = coalesce(?12, folder), kinds = ?13,
                 heartbeat_at = coalesce(?14, heartbeat_at), aborted_at = NULL, forged = ?15
             WHERE id = ?1",
            params![
                id,
                now,
                summary.new as i64,
                summary.duplicates as i64,
                serde_json::to_string(&summary.bounces_by_label)?,
                summary.kind(Kind::Complaint) as i64,
                summary.kind(Kind::Unsubscribe) as i64,
                summary.kind(Kind::AutoReply) as i64,
                summary.kind(Kind::Unparsed) as i64,
                serde_json::to_string(&summary.errors)?,
                summary.ok(),
                summary.folder,
                summary.kinds_json(),
                heartbeat,
                summary.forged as i64,
            ],
        )?;
        anyhow::ensure!(changed == 1, "no run {id} in the ledger");
        Ok(())
    }

    /// Records that a run (a `watch` folder) has just read everything it reads.
    pub fn heartbeat(&self, id: i64) -> anyhow::Result<()> {
        let changed = self.conn.execute(
            "UPDATE runs SET heartbeat_at = ?2 WHERE id = ?1",
            params![id, time::format(time::now())],
        )?;
        anyhow::ensure!(changed == 1, "no run {id} in the ledger");
        Ok(())
    }
}

/// This process and its host, as a run records them.
mod process {
    /// The host name, so that runs of processes on another machine sharing the ledger file are
    /// never judged from here. Empty when the system will not say.
    pub fn host() -> String {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its whole length, which is what we pass; gethostname
        // writes at most that many bytes.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc != 0 {
            return String::new();
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    }

    /// True while a process with this pid exists (one of another user's counts too).
    pub fn alive(pid: u32) -> bool {
        let Ok(pid) = i32::try_from(pid) else {
            return false;
        };
        if pid <= 0 {
            return false;
        }
        // SAFETY: signal 0 sends nothing; kill(2) only checks that the process exists.
        let rc = unsafe { libc::kill(pid, 0) };
        rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
}
