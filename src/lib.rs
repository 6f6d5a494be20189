//! # rebound
//!
//! rebound reads the return-path ("bounce") mailboxes of e-mail senders, understands every
//! message that lands there, and keeps a SQLite ledger of which addresses must never be mailed
//! again, which may be retried and when, and which providers are refusing the sender.
//!
//! ## Design
//!
//! One pipeline, three stages, each its own module tree, and one path from message to ledger:
//!
//! ```text
//!  files, Maildirs, mbox ── input ──┐
//!                                   ├─ raw bytes ─ analysis::analyze ─ Analysis ─ ledger::Ledger::ingest ─ SQLite
//!  IMAP mailboxes ───────── imap ───┘       (pure: no I/O, no clock)             (one transaction per message)
//! ```
//!
//! - [`input`] (files, directories, Maildirs, mbox) and [`imap`] (mailboxes polled or watched
//!   with IDLE) produce raw messages. Neither knows anything about bounces. The IMAP worker is
//!   at-least-once: it commits a message's rows (and the folder's highest UID) before it flags,
//!   moves or deletes it, and the ledger's content hash makes a re-read a no-op.
//! - [`analysis`] turns the raw bytes of one message into an [`analysis::Analysis`]: its kind
//!   (bounce, delay, delivery report, auto-reply, complaint, unsubscribe, other, unparsed) and,
//!   for every recipient a report names, the evidence (status, reply code, diagnostic) and a
//!   verdict (label, finer reason, and the id of the rule that decided it). It is a pure
//!   function, so any stored message can be re-classified after the rules change.
//! - [`ledger`] stores the raw message and one event per recipient verdict in SQLite, and
//!   projects the events under a [`ledger::Policy`] onto per-address state (active, retry,
//!   suppressed, quarantined), an audit trail of state changes, and per-domain pauses. The
//!   projection depends only on the events and the policy, never on the order of ingestion.
//!
//! Rules are data: `src/analysis/rules/rules.toml` is compiled into the binary, ordered, first
//! match wins. MTA-specific parsing lives in [`analysis::lhost`], one module per MTA family.
//! [`config`] reads the one TOML file (database, policy, mailboxes); [`cli`] holds one small
//! module per subcommand, [`logging`] writes stderr for people or log shippers, and `main` only
//! parses arguments and prints errors.

pub mod analysis;
pub mod cli;
pub mod config;
pub mod imap;
pub mod ingest;
pub mod input;
pub mod ledger;
pub mod logging;

pub use analysis::{Analysis, Kind, Label, Reason, Recipient};
