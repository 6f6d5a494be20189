//! The IMAP worker: reads return-path mailboxes and feeds every message to the ledger.
//!
//! ## At least once, never twice
//!
//! For each mailbox and folder the ledger keeps `(UIDVALIDITY, highest UID stored)`, updated in
//! the *same* SQLite transaction as the message itself. A poll then:
//!
//! 1. selects the folder and compares UIDVALIDITY: when it changed, the whole folder is read
//!    again (the ledger's content hash turns every old message into a no-op);
//! 2. searches the UIDs above the watermark, plus any older message still lacking the
//!    `$Rebound` keyword (stored, but its action was interrupted);
//! 3. fetches them with `BODY.PEEK[]` in batches of bounded size, in ascending UID order, and
//!    ingests each one (one transaction each: message + watermark);
//! 4. only then applies the post-processing action to the batch (keyword, `\Seen`, move,
//!    delete).
//!
//! A crash anywhere leaves either a message not yet committed (it is read again) or committed
//! but not yet acted on (it is read again, recognised as a duplicate, and only the action is
//! redone). Nothing is lost, nothing counted twice.
//!
//! ## Failure handling
//!
//! async-imap has no timeouts: every call is wrapped ([`connect::timed`]) and any error drops
//! the session, never reusing it. Each mailbox is retried with backoff and reported on its own,
//! so one unreachable or misconfigured mailbox never stops the others. A message that breaks the
//! session twice in a row is stored as `unparsed` with the error and skipped. Oversized
//! messages are stored by header only. A lock file per mailbox ([`lock`]) keeps overlapping
//! runs (a slow timer run and the next one) from reading the same mailbox at once.

pub mod action;
pub mod auth;
pub mod config;
pub mod connect;
pub mod diagnosis;
pub mod fetch;
pub mod folder_name;
pub mod lock;
pub mod poll;
pub mod sink;
pub mod watch;

pub use config::{Action, Auth, MailboxConfig, MoveTo, Tls};
pub use poll::{MailboxReport, PollOptions, poll_mailbox};
pub use sink::Sink;
