//! Retention: the raw bytes of old messages are dropped, everything read from them is kept.
//!
//! `[retention] raw_days = N` drops the raw bytes of every message received more than N days
//! ago; `other_days = M` those of the kinds that never count against an address
//! ([`OTHER_KINDS`]: delays, delivery reports, auto-replies, challenges and other mail such as
//! people's replies, which hold the most personal content) after M days. Unparsed messages
//! follow `raw_days`: their bytes are the only record of what could not be read, and a fixed
//! parser can still re-derive them until then. Unset: kept for ever.
//!
//! A purged message keeps its row: the sha256 (so the same bytes arriving again are still a
//! duplicate), `raw_size`, its kind, headers read (Message-ID, From, Subject, Date), every
//! event with its evidence (status, diagnostic, rule, phase...) and so the whole projection;
//! `raw` becomes empty and `raw_purged_at` says when. `reclassify` cannot re-derive it any
//! more and says so; `show-raw` says when the bytes were purged. The bytes are overwritten in
//! the file (SQLite's `secure_delete` during the purge), which does not shrink (`VACUUM` does).

use chrono::{DateTime, Utc};
use rusqlite::{TransactionBehavior, params};
use serde::Deserialize;

use super::{Ledger, time};
use crate::analysis::Kind;

/// `[retention]` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Days after which the raw bytes of every message are dropped (unset: kept).
    pub raw_days: Option<u32>,
    /// Days after which the raw bytes of [`OTHER_KINDS`] are dropped (unset: `raw_days`).
    pub other_days: Option<u32>,
}

/// The kinds of message that never count against an address, purged after `other_days`.
pub const OTHER_KINDS: [Kind; 5] = [
    Kind::Delay,
    Kind::DeliveryReport,
    Kind::AutoReply,
    Kind::Challenge,
    Kind::Other,
];

/// Messages whose raw bytes a purge dropped (or would drop), per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purged {
    /// (kind, messages, stored bytes).
    pub by_kind: Vec<(Kind, u64, u64)>,
}

impl Purged {
    pub fn messages(&self) -> u64 {
        self.by_kind.iter().map(|k| k.1).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.by_kind.iter().map(|k| k.2).sum()
    }

    fn add(&mut self, kind: Kind, messages: u64, bytes: u64) {
        match self.by_kind.iter_mut().find(|k| k.0 == kind) {
            Some(k) => {
                k.1 += messages;
                k.2 += bytes;
            }
            None => self.by_kind.push((kind, messages, bytes)),
        }
    }

    /// Adds another purge's counts (a purge done in steps).
    pub fn merge(&mut self, other: &Purged) {
        for (k, m, b) in &other.by_kind {
            self.add(*k, *m, *b);
        }
    }
}

impl Retention {
    /// Whether anything is ever purged.
    pub fn is_set(&self) -> bool {
        self.raw_days.is_some() || self.other_days.is_some()
    }

    /// For each kind with a retention, the time before which its raw bytes go.
    pub fn cutoffs(&self, now: DateTime<Utc>) -> Vec<(Kind, String)> {
        Kind::ALL
            .iter()
            .filter_map(|&kind| {
                let days = if OTHER_KINDS.contains(&kind) {
                    match (self.raw_days, self.other_days) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    }
                } else {
                    self.raw_days
                }?;
                Some((
                    kind,
                    time::format(now - chrono::Duration::days(i64::from(days))),
                ))
            })
            .collect()
    }
}

impl Ledger {
    /// What a purge at `now` would drop (`rebound purge --dry-run`).
    pub fn purge_preview(
        &self,
        retention: &Retention,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Purged> {
        let mut out = Purged::default();
        let mut stmt = self.conn.prepare_cached(
            "SELECT count(*), coalesce(sum(length(raw)), 0) FROM messages
             WHERE kind = ?1 AND received_at < ?2 AND raw_purged_at IS NULL",
        )?;
        for (kind, cutoff) in retention.cutoffs(now) {
            let (n, bytes): (i64, i64) =
                stmt.query_row(params![kind, cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?;
            if n > 0 {
                out.add(kind, n as u64, bytes as u64);
            }
        }
        Ok(out)
    }

    /// Drops the raw bytes of at most `limit` messages that `retention` says are due at `now`,
    /// in one transaction; returns what it dropped (fewer than `limit`: nothing is left due).
    /// Callers that must not hold the ledger long (the writer of a `watch`) call it again
    /// while it returns `limit` messages.
    pub fn purge_raw(
        &mut self,
        retention: &Retention,
        now: DateTime<Utc>,
        limit: usize,
    ) -> anyhow::Result<Purged> {
        let cutoffs = retention.cutoffs(now);
        let mut out = Purged::default();
        if cutoffs.is_empty() || limit == 0 {
            return Ok(out);
        }
        // Freed pages are overwritten: purged mail must not linger in the file's free space.
        let secure: i64 = self
            .conn
            .query_row("PRAGMA secure_delete", [], |r| r.get(0))?;
        self.conn.execute_batch("PRAGMA secure_delete = ON")?;
        let result = (|| -> anyhow::Result<()> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let stamp = time::format(time::now());
            let mut left = limit;
            for (kind, cutoff) in &cutoffs {
                if left == 0 {
                    break;
                }
                let due: Vec<(i64, i64)> = tx
                    .prepare_cached(
                        "SELECT id, length(raw) FROM messages
                         WHERE kind = ?1 AND received_at < ?2 AND raw_purged_at IS NULL
                         ORDER BY received_at LIMIT ?3",
                    )?
                    .query_map(params![kind, cutoff, left as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?
                    .collect::<Result<_, _>>()?;
                let mut purge = tx.prepare_cached(
                    "UPDATE messages SET raw = X'', raw_encoding = NULL, raw_purged_at = ?2
                     WHERE id = ?1",
                )?;
                for (id, _) in &due {
                    purge.execute(params![id, stamp])?;
                }
                if !due.is_empty() {
                    out.add(
                        *kind,
                        due.len() as u64,
                        due.iter().map(|d| d.1 as u64).sum(),
                    );
                }
                left -= due.len();
            }
            tx.commit()?;
            Ok(())
        })();
        self.conn
            .execute_batch(&format!("PRAGMA secure_delete = {secure}"))?;
        result?;
        Ok(out)
    }

    /// When a message's raw bytes were purged (`None`: kept, or no such message).
    pub fn raw_purged_at(&self, id: i64) -> anyhow::Result<Option<String>> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn
            .query_row(
                "SELECT raw_purged_at FROM messages WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_kinds_take_the_shorter_of_both_retentions_and_unset_keeps_everything() {
        let now = time::parse_stored("2026-12-31T00:00:00Z").unwrap();
        assert!(Retention::default().cutoffs(now).is_empty());
        let both = Retention {
            raw_days: Some(90),
            other_days: Some(30),
        };
        let cut = both.cutoffs(now);
        let of = |k: Kind| cut.iter().find(|c| c.0 == k).map(|c| c.1.as_str());
        assert_eq!(of(Kind::Bounce), Some("2026-10-02T00:00:00Z"));
        assert_eq!(of(Kind::Unparsed), Some("2026-10-02T00:00:00Z"));
        assert_eq!(of(Kind::AutoReply), Some("2026-12-01T00:00:00Z"));
        assert_eq!(of(Kind::Other), Some("2026-12-01T00:00:00Z"));
        let only_other = Retention {
            raw_days: None,
            other_days: Some(30),
        };
        let cut = only_other.cutoffs(now);
        assert_eq!(cut.len(), OTHER_KINDS.len(), "bounces are kept: {cut:?}");
    }
}
