//! # rebound
//!
//! rebound reads the return-path ("bounce") mailboxes of e-mail senders, understands every
//! message that lands there, and keeps a SQLite ledger of which addresses must never be mailed
//! again, which may be retried and when, and which providers are refusing the sender.
//!
//! ## Design
//!
//! One pipeline, and one path from message to ledger for files and IMAP alike:
//!
//! ```text
//!  files, Maildirs, mbox ── input ──┐                    analysis threads            one writer thread
//!                                   ├─ bounded batches ─ ingest::prepare ─ channel ─ ledger::Ledger::write ─ SQLite
//!  IMAP mailboxes ───────── imap ───┘  (count, bytes)    hash, analyse,              one transaction per batch,
//!                                                        compress (pure)             projection stepped
//! ```
//!
//! - [`input`] (files, directories, Maildirs, mbox) and [`imap`] (mailboxes polled or watched
//!   with IDLE) produce raw messages. Neither knows anything about bounces. The IMAP worker is
//!   at-least-once: a batch's rows (and the folder's highest UID) are committed before its
//!   messages are flagged, moved or deleted, and the ledger's content hash makes a re-read a
//!   no-op.
//! - [`ingest`] is the pipeline both call: [`ingest::prepare()`] hashes, analyses (with the
//!   config's [`analysis::Settings`]: the [`analysis::rules::RuleSet`] and the `[verp]` return
//!   paths and keys, a value passed in) and compresses on long-lived
//!   analysis threads; [`ingest::writer`] is the one thread that owns the SQLite connection,
//!   taking batches (and any other ledger job) over a bounded channel and answering each on a
//!   one-shot channel, in the manner of mini-redis's `db` task.
//! - [`analysis`] turns the raw bytes of one message into an [`analysis::Analysis`]: its kind
//!   (bounce, delay, delivery report, auto-reply, challenge, complaint, unsubscribe, other,
//!   unparsed) and, for every recipient a report names, the evidence (status, reply code,
//!   diagnostic, SMTP phase) and a verdict (label, finer reason, and the id of the rule that
//!   decided it). It is a pure function, so any stored message can be re-classified after the
//!   rules change.
//! - [`ledger`] stores the raw message (zstd-compressed) and one event per recipient verdict,
//!   and projects the events under a [`ledger::Policy`] onto per-address state (active, retry,
//!   suppressed, quarantined), an audit trail of state changes, and per-domain pauses. The
//!   projection depends only on the events and the policy, never on the order of ingestion:
//!   it is kept incrementally (each address's fold is stored and stepped by new events; an
//!   event that arrives late replays that address) and a property test checks it equals a full
//!   replay (`rebound rebuild`) for any arrival order and batching.
//!
//! - [`sends`] reads what the sending system sent (CSV, JSON lines, Postfix and Exim logs) into
//!   hourly send counts, the denominator of the rates that reports show and pauses weigh.
//!
//! Rules are data: `src/analysis/rules/rules.toml` is compiled into the binary, ordered, first
//! match wins. MTA-specific parsing lives in [`analysis::lhost`], one module per MTA family.
//! [`config`] reads the one TOML file (database, policy, providers, mailboxes, report,
//! alerts, hooks, retention); [`cli`] holds one small module per subcommand, [`logging`] writes stderr for people
//! or log shippers, and `main` only parses arguments and prints errors.
//!
//! The way out, for the sending system: the ledger's change log (`suppression_log`, see
//! [`ledger::changes`]) feeds `rebound export` (the list, or what changed since a cursor) and
//! the [`hooks`] (commands run as changes are committed); [`metrics`] writes a Prometheus
//! textfile; [`atomic_file`] is how every file other programs read is replaced.

pub mod analysis;
pub mod atomic_file;
pub mod cli;
pub mod config;
pub mod hooks;
pub mod imap;
pub mod ingest;
pub mod input;
pub mod ledger;
pub mod logging;
pub mod metrics;
pub mod sends;

pub use analysis::{Analysis, Kind, Label, Reason, Recipient};
