//! # rebound
//!
//! rebound reads the return-path ("bounce") mailboxes of e-mail senders, understands every
//! message that lands there, and keeps a SQLite ledger of which addresses must never be mailed
//! again, which may be retried and when, and which providers are refusing the sender.
//!
//! ## Design
//!
//! One pipeline, three stages, each its own module tree:
//!
//! - [`input`] (files, directories, Maildirs, mbox) and `imap` (mailboxes polled or watched)
//!   produce raw messages. Neither knows anything about bounces.
//! - [`analysis`] turns the raw bytes of one message into an [`analysis::Analysis`]: its kind
//!   (bounce, delay, delivery report, auto-reply, complaint, unsubscribe, other, unparsed) and,
//!   for every recipient a report names, the evidence (status, reply code, diagnostic) and a
//!   verdict (label, finer reason, and the id of the rule that decided it). It is a pure
//!   function: no I/O, no clock, so any stored message can be re-classified later.
//! - `ledger` stores the raw message and its events in SQLite and projects them under a
//!   policy onto per-address state (suppressed, retry, quarantined) and per-domain pauses.
//!
//! Rules are data: `src/analysis/rules.toml` is compiled into the binary, ordered, first match
//! wins. MTA-specific parsing lives in `analysis::lhost`, one module per MTA family.

pub mod analysis;
pub mod cli;
pub mod config;
pub mod imap;
pub mod input;
pub mod ledger;

pub use analysis::{Analysis, Kind, Label, Reason, Recipient};
