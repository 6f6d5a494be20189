//! What the IMAP worker needs from storage, as a trait: the ledger implements it for real runs,
//! [`DryRun`] for `--dry-run` (classify, count, write nothing).
//!
//! The contract that makes the worker at-least-once and never-twice: `ingest` commits the
//! message *and* the folder's `(uidvalidity, last_uid)` in one transaction, and is a no-op
//! (`duplicate = true`) for a message already stored (same bytes, or same folder position).

use std::collections::HashMap;

use crate::analysis::{self, Kind, Label};

/// Where a fetched message came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageOrigin {
    pub mailbox: String,
    pub folder: String,
    pub uidvalidity: u32,
    pub uid: u32,
    /// The server's INTERNALDATE, RFC 3339.
    pub internal_date: Option<String>,
}

/// The result of storing one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub kind: Kind,
    /// Labels of the bounced recipients (empty for other kinds).
    pub labels: Vec<Label>,
    /// Already in the ledger: nothing was counted again.
    pub duplicate: bool,
}

/// A fetched message waiting to be stored by [`Store::ingest_batch`].
#[derive(Debug, Clone)]
pub struct Fetched {
    pub origin: MessageOrigin,
    /// The whole message, or what could be read of it when `failed` is set.
    pub raw: Vec<u8>,
    /// Set: store as `unparsed` with this error (see [`Store::ingest_failed`]).
    pub failed: Option<String>,
}

/// Progress stored per mailbox and folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderProgress {
    pub uidvalidity: u32,
    pub last_uid: u32,
}

pub trait Store: Send {
    fn folder_progress(
        &self,
        mailbox: &str,
        folder: &str,
    ) -> anyhow::Result<Option<FolderProgress>>;
    /// Stores and classifies one message, advancing the folder's progress in the same
    /// transaction.
    fn ingest(&mut self, raw: &[u8], origin: &MessageOrigin) -> anyhow::Result<Stored>;
    /// Stores what could be read of a message that cannot be processed (too large, or failing
    /// again and again) as `unparsed`, with the reason, so that it is skipped from now on.
    fn ingest_failed(
        &mut self,
        raw_or_headers: &[u8],
        origin: &MessageOrigin,
        error: &str,
    ) -> anyhow::Result<Stored>;
    /// Stores messages in order, with the same per-message outcome as `ingest` /
    /// `ingest_failed` one by one. The ledger does it in one transaction; after a message that
    /// fails, the following ones are not stored (the watermark must not pass it).
    fn ingest_batch(&mut self, items: &[Fetched]) -> Vec<anyhow::Result<Stored>> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let r = match &item.failed {
                Some(error) => self.ingest_failed(&item.raw, &item.origin, error),
                None => self.ingest(&item.raw, &item.origin),
            };
            let stop = r.is_err();
            out.push(r);
            if stop {
                break;
            }
        }
        out
    }
    /// [`Store::ingest_batch`] with the analyses [`analyse`] made of these very items beforehand
    /// (without the store, so that a batch is analysed while the previous one is written). The
    /// default ignores them.
    fn ingest_analysed(
        &mut self,
        items: &[Fetched],
        analysed: &crate::ledger::Analysed,
    ) -> Vec<anyhow::Result<Stored>> {
        let _ = analysed;
        self.ingest_batch(items)
    }
}

/// `--dry-run`: classifies in memory and writes nothing. Progress comes from the ledger as it
/// was when the run started (if there is one), so a dry run shows what a real run would find.
#[derive(Debug, Default)]
pub struct DryRun {
    pub progress: HashMap<(String, String), FolderProgress>,
}

impl Store for DryRun {
    fn folder_progress(
        &self,
        mailbox: &str,
        folder: &str,
    ) -> anyhow::Result<Option<FolderProgress>> {
        Ok(self
            .progress
            .get(&(mailbox.to_string(), folder.to_string()))
            .copied())
    }

    fn ingest(&mut self, raw: &[u8], _origin: &MessageOrigin) -> anyhow::Result<Stored> {
        Ok(dry_verdict(&analysis::analyze(raw)))
    }

    fn ingest_analysed(
        &mut self,
        items: &[Fetched],
        analysed: &crate::ledger::Analysed,
    ) -> Vec<anyhow::Result<Stored>> {
        (0..items.len())
            .map(|n| match (&items[n].failed, analysed.analysis(n)) {
                (None, Some(a)) => Ok(dry_verdict(a)),
                (Some(error), _) => self.ingest_failed(&items[n].raw, &items[n].origin, error),
                (None, None) => self.ingest(&items[n].raw, &items[n].origin),
            })
            .collect()
    }

    fn ingest_failed(
        &mut self,
        _raw: &[u8],
        _origin: &MessageOrigin,
        _error: &str,
    ) -> anyhow::Result<Stored> {
        Ok(Stored {
            kind: Kind::Unparsed,
            labels: Vec::new(),
            duplicate: false,
        })
    }
}

/// What a dry run reports for an analysed message.
fn dry_verdict(a: &analysis::Analysis) -> Stored {
    let labels = if a.kind == Kind::Bounce {
        a.recipients.iter().filter_map(|r| r.label).collect()
    } else {
        Vec::new()
    };
    Stored {
        kind: a.kind,
        labels,
        duplicate: false,
    }
}

impl MessageOrigin {
    fn to_ledger(&self) -> crate::ledger::Origin {
        crate::ledger::Origin {
            mailbox: Some(self.mailbox.clone()),
            folder: Some(self.folder.clone()),
            uidvalidity: Some(self.uidvalidity),
            uid: Some(self.uid),
            source_path: None,
            internal_date: self.internal_date.clone(),
        }
    }
}

fn stored(o: crate::ledger::IngestOutcome) -> Stored {
    Stored {
        kind: o.kind,
        labels: o.labels,
        duplicate: o.duplicate,
    }
}

/// The real thing: each `ingest` is one SQLite transaction holding the message, its events and
/// the folder's watermark.
impl Store for crate::ledger::Ledger {
    fn folder_progress(
        &self,
        mailbox: &str,
        folder: &str,
    ) -> anyhow::Result<Option<FolderProgress>> {
        Ok(self.folder_state(mailbox, folder)?.map(|s| FolderProgress {
            uidvalidity: s.uidvalidity,
            last_uid: s.last_uid,
        }))
    }

    fn ingest(&mut self, raw: &[u8], origin: &MessageOrigin) -> anyhow::Result<Stored> {
        crate::ledger::Ledger::ingest(self, raw, &origin.to_ledger()).map(stored)
    }

    fn ingest_failed(
        &mut self,
        raw_or_headers: &[u8],
        origin: &MessageOrigin,
        error: &str,
    ) -> anyhow::Result<Stored> {
        let raw = placeholder_if_empty(raw_or_headers, origin);
        crate::ledger::Ledger::ingest_failed(self, &raw, &origin.to_ledger(), error).map(stored)
    }

    fn ingest_batch(&mut self, items: &[Fetched]) -> Vec<anyhow::Result<Stored>> {
        let ledger = LedgerItems::new(items);
        let incoming = ledger.incoming(items);
        outcomes(items, crate::ledger::Ledger::ingest_batch(self, &incoming))
    }

    fn ingest_analysed(
        &mut self,
        items: &[Fetched],
        analysed: &crate::ledger::Analysed,
    ) -> Vec<anyhow::Result<Stored>> {
        let ledger = LedgerItems::new(items);
        let incoming = ledger.incoming(items);
        outcomes(
            items,
            crate::ledger::Ledger::write_analysed(self, &incoming, analysed),
        )
    }
}

/// The pure half of storing a batch (hashing, analysis), done without the store: see
/// [`Store::ingest_analysed`].
pub fn analyse(items: &[Fetched]) -> crate::ledger::Analysed {
    let ledger = LedgerItems::new(items);
    crate::ledger::Ledger::analyse(&ledger.incoming(items))
}

/// Fetched messages as the ledger takes them: origins, and bytes (with a placeholder for a
/// failed message of which nothing could be read).
struct LedgerItems<'a> {
    origins: Vec<crate::ledger::Origin>,
    raws: Vec<std::borrow::Cow<'a, [u8]>>,
}

impl<'a> LedgerItems<'a> {
    fn new(items: &'a [Fetched]) -> LedgerItems<'a> {
        LedgerItems {
            origins: items.iter().map(|i| i.origin.to_ledger()).collect(),
            raws: items
                .iter()
                .map(|i| match i.failed {
                    Some(_) => placeholder_if_empty(&i.raw, &i.origin),
                    None => std::borrow::Cow::Borrowed(&i.raw[..]),
                })
                .collect(),
        }
    }

    fn incoming<'b>(&'b self, items: &'b [Fetched]) -> Vec<crate::ledger::Incoming<'b>> {
        items
            .iter()
            .zip(&self.origins)
            .zip(&self.raws)
            .map(|((i, o), raw)| crate::ledger::Incoming {
                raw,
                origin: o,
                failed: i.failed.as_deref(),
            })
            .collect()
    }
}

/// A batch's outcomes per message; an error of the whole batch is every message's.
fn outcomes(
    items: &[Fetched],
    result: anyhow::Result<Vec<anyhow::Result<crate::ledger::IngestOutcome>>>,
) -> Vec<anyhow::Result<Stored>> {
    match result {
        Ok(outcomes) => outcomes.into_iter().map(|o| o.map(stored)).collect(),
        Err(e) => {
            let e = format!("{e:#}");
            items.iter().map(|_| Err(anyhow::anyhow!("{e}"))).collect()
        }
    }
}

/// Nothing could be read: a placeholder naming the message, so that two such messages are not
/// mistaken for one (the ledger deduplicates by content hash).
fn placeholder_if_empty<'a>(
    raw_or_headers: &'a [u8],
    origin: &MessageOrigin,
) -> std::borrow::Cow<'a, [u8]> {
    if raw_or_headers.is_empty() {
        std::borrow::Cow::Owned(
            format!(
                "X-Rebound-Unreadable: {}/{}/{}/{}\r\n\r\n",
                origin.mailbox, origin.folder, origin.uidvalidity, origin.uid
            )
            .into_bytes(),
        )
    } else {
        std::borrow::Cow::Borrowed(raw_or_headers)
    }
}
