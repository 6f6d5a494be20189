//! Runs: one row per ingestion run (`rebound ingest`, or one poll of an IMAP mailbox), so that
//! operators can see at a sqlite3 prompt what each run did and whether it failed.

use std::collections::BTreeMap;

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
    /// Bounced recipients of new messages, by label.
    pub bounces_by_label: BTreeMap<Label, u64>,
    pub complaints: u64,
    pub unsubscribes: u64,
    pub auto_replies: u64,
    /// New messages the analysis could not read (stored all the same).
    pub unparsed: u64,
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
        for label in &outcome.labels {
            *self.bounces_by_label.entry(*label).or_default() += 1;
        }
        match outcome.kind {
            Kind::Complaint => self.complaints += 1,
            Kind::Unsubscribe => self.unsubscribes += 1,
            Kind::AutoReply | Kind::Challenge => self.auto_replies += 1,
            Kind::Unparsed => self.unparsed += 1,
            _ => {}
        }
    }

    pub fn error(&mut self, error: impl Into<String>) {
        self.errors.push(error.into());
    }

    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

impl Ledger {
    /// Opens a run for a mailbox (`files` for `rebound ingest`); returns its id.
    pub fn start_run(&self, mailbox: &str) -> anyhow::Result<i64> {
        self.conn.execute(
            "INSERT INTO runs (mailbox, started_at) VALUES (?1, ?2)",
            params![mailbox, time::format(time::now())],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Closes a run with its summary.
    pub fn finish_run(&self, id: i64, summary: &RunSummary) -> anyhow::Result<()> {
        let changed = self.conn.execute(
            "UPDATE runs SET finished_at = ?2, new = ?3, duplicates = ?4, bounces = ?5,
                 complaints = ?6, unsubscribes = ?7, auto_replies = ?8, unparsed = ?9,
                 errors = ?10, ok = ?11, folder = ?12
             WHERE id = ?1",
            params![
                id,
                time::format(time::now()),
                summary.new as i64,
                summary.duplicates as i64,
                serde_json::to_string(&summary.bounces_by_label)?,
                summary.complaints as i64,
                summary.unsubscribes as i64,
                summary.auto_replies as i64,
                summary.unparsed as i64,
                serde_json::to_string(&summary.errors)?,
                summary.ok(),
                summary.folder,
            ],
        )?;
        anyhow::ensure!(changed == 1, "no run {id} in the ledger");
        Ok(())
    }
}
