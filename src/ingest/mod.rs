//! One ingest pipeline for files and IMAP: messages in, the ledger up to date.
//!
//! ```text
//!  files / IMAP fetch ──▶ prepare (analysis threads) ──▶ writer thread ──▶ SQLite
//!   bounded batches        sha256, analysis with the        one connection,
//!   (count and bytes)      config's Settings, raw bytes      one transaction per
//!                          compressed (zstd)                 batch, projection
//!                                                           stepped incrementally
//! ```
//!
//! - [`prepare()`] is pure and CPU-bound: it runs on long-lived analysis threads, one per core
//!   ([`pool`]), so that the regex caches stay warm from batch to batch.
//! - The [`writer`] is one thread that owns the ledger: callers queue batches over a bounded
//!   channel and each gets its outcome on a one-shot channel. While batch k is written, batch
//!   k+1 is fetched and prepared. Nobody else holds the connection, so no lock is held across
//!   an await or a commit.
//! - Batches are bounded in count *and* bytes ([`Bounds`]), and at most [`writer`]'s queue of
//!   them wait for the writer, so a run's memory does not depend on what is in the mailbox.
//! - The analysis settings are a value ([`crate::analysis::Settings`]: the rule set and the
//!   `[verp]` return paths and keys) passed in, never a global: their fingerprint is stored
//!   with every message.
//!
//! `rebound ingest` ([`files`]) and the IMAP worker (`crate::imap::poll`) are the two callers.

pub mod files;
pub mod pool;
pub mod prepare;
pub mod writer;

pub use prepare::{Message, prepare};
pub use writer::{Pending, Stream, Writer, WriterThread};

/// How much one batch may hold: a transaction per batch amortises the commit, the bound keeps
/// memory flat however many (or however large) the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub messages: usize,
    pub bytes: usize,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            messages: 256,
            bytes: 32 << 20,
        }
    }
}

impl Bounds {
    /// Whether a batch of `messages` holding `bytes` is full.
    pub fn full(&self, messages: usize, bytes: usize) -> bool {
        messages >= self.messages.max(1) || bytes >= self.bytes
    }
}
