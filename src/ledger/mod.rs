//! The ledger: a SQLite history of every inbound message and every verdict in it, projected
//! under a [`Policy`] onto per-address state and per-domain pauses.
//!
//! The ledger is storage and projection only: it is handed messages already hashed, analysed
//! and compressed ([`Prepared`], made by `crate::ingest` on the analysis threads) and writes a
//! batch of them in one transaction ([`Ledger::write`]): the raw bytes, the events, the IMAP
//! folders' watermarks and the projection of everything the batch touched land together or not
//! at all. A crash at any point followed by a rerun leaves the ledger as if there had been no
//! crash, because the rerun's duplicates are recognised by the sha256 of their bytes (or their
//! IMAP position) and change nothing. In a running process one thread owns the ledger (the
//! writer of `crate::ingest`); commands that only read, or that change little (`explain`,
//! `reactivate`), open it themselves.
//!
//! Evidence is never lost: the raw bytes are kept ([`raw`]), a message the analysis cannot
//! read is kept as `unparsed` with its error, and `reclassify` re-derives events from the
//! bytes.
//!
//! Files: [`schema`] (tables, views, migrations), [`write`](mod@write) (a batch: messages and events),
//! [`projection`] (addresses, state changes, pauses, kept incrementally), [`policy`] (the pure
//! fold of events into states), [`providers`] (the domain → mailbox provider map), [`sends`]
//! (what was sent: the denominator of the rates, and what was imported), [`percent`], [`raw`]
//! (stored bytes), [`vocabulary`] (the words as SQL), [`origin`], `reactivate`, `reclassify`,
//! `run` (the `runs` table), [`time`]; the way out: [`changes`] (the change log, exports, hook
//! cursors), [`operator`] (`rebound suppress`), [`retention`] (purging old raw bytes).

pub mod changes;
pub mod operator;
pub mod origin;
pub mod percent;
pub mod policy;
pub mod projection;
pub mod providers;
pub mod raw;
pub mod retention;
pub mod schema;
pub mod sends;
pub mod span;
pub mod time;
pub mod vocabulary;
pub mod write;

mod reclassify;
mod run;

use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};

pub use changes::{ExportEntry, ExportQuery, LoggedChange, Op};
pub use operator::Suppressed;
pub use origin::{FolderState, Origin};
pub use policy::{Policy, State, SuppressionReason};
pub use raw::{RawEncoding, StoredRaw};
pub use reclassify::ReclassifyReport;
pub use retention::{Purged, Retention};
pub use run::RunSummary;
pub use vocabulary::Role;
pub use write::{Clock, Outcome, Prepared};

/// Connection settings, and why.
///
/// - `synchronous = FULL` by default: under WAL, NORMAL does not sync the log at a commit, so
///   an OS crash or power cut can undo the last commits after they returned. The IMAP worker
///   applies its action (move, delete) to a batch right after its commit, so an undone commit
///   would be a deleted message the ledger never saw: a lost event. FULL costs one fsync of the
///   log per transaction (a whole batch); see [`Ledger::sync_every_commit`] for when it is not
///   needed.
/// - `temp_store = MEMORY`: sorts and temporary b-trees stay off the disk.
/// - `cache_size` 16 MiB (from 2 MiB): a batch touches more pages than the default cache holds
///   (index pages re-read from the file). A bound, so memory stays flat.
/// - `wal_autocheckpoint` 16384 pages (64 MiB of log, from 1000 pages): a checkpoint copies the
///   log's pages back into the database and syncs twice; at 4000 pages it ran after nearly
///   every batch of a poll. The log's size is the budget: the WAL file stays under it (plus
///   one batch), and a crash replays at most that much.
/// - the query planner stability guarantee (`SQLITE_DBCONFIG_ENABLE_QPSG`): the bundled SQLite
///   has STAT4, which marks statements to be re-prepared whenever a bound value might change
///   the plan; the cached statements of the replay were re-parsed on every execution (a fifth
///   of the ledger's CPU). Our queries have one good plan, the one from the indexes.
fn tune(conn: &Connection) -> anyhow::Result<()> {
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16384; PRAGMA wal_autocheckpoint = 16384;",
    )?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// The ledger database.
pub struct Ledger {
    conn: Connection,
    policy: Policy,
    path: PathBuf,
    /// Fingerprint of the rule table the analyses are made with (stored with each message, so
    /// that `reclassify` knows which verdicts an older table decided).
    rules: String,
}

/// Bumped when the stored projection's shape changes: a ledger projected by an older version
/// is replayed once when it is opened.
const PROJECTION_VERSION: &str = "4";

impl Ledger {
    /// Opens (creating and migrating as needed) the ledger at `path`: WAL, foreign keys on,
    /// file mode 0600 (it holds other people's addresses and whole messages). `rules` is the
    /// fingerprint of the rule table the messages written through it are analysed with.
    pub fn open(path: &Path, policy: Policy, rules: &str) -> anyhow::Result<Ledger> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the directory of {}", dir.display()))?;
        }
        restrict_file_mode(path)?;
        let mut conn = Connection::open(path)
            .with_context(|| format!("opening the ledger {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode, "the ledger could not switch to WAL mode");
        }
        tune(&conn)?;
        schema::migrate(&mut conn)
            .with_context(|| format!("migrating the ledger {}", path.display()))?;
        let mut ledger = Ledger {
            conn,
            policy,
            path: path.to_path_buf(),
            rules: rules.to_string(),
        };
        ledger.follow_policy()?;
        Ok(ledger)
    }

    /// The projection is a function of the events *and the policy*: when the policy in the
    /// config differs from the one the projection was built with (or the projection was stored
    /// by an older version), rebuild it all, so that addresses no new message touches do not
    /// keep a verdict from the old policy.
    fn follow_policy(&mut self) -> anyhow::Result<()> {
        let fingerprint = format!(
            "{}/{PROJECTION_VERSION}",
            sha256_hex(serde_json::to_string(&self.policy)?.as_bytes())
        );
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stored: Option<String> = tx
            .query_row(
                "SELECT value FROM ledger_meta WHERE key = 'policy'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if stored.as_deref() != Some(fingerprint.as_str()) {
            let has_events: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM events) OR EXISTS (SELECT 1 FROM sends)",
                [],
                |r| r.get(0),
            )?;
            if has_events {
                tracing::info!(
                    "the policy or the projection's form changed: rebuilding the projection"
                );
                projection::rebuild_all(&tx, &self.policy)?;
            }
            tx.execute(
                "INSERT INTO ledger_meta (key, value) VALUES ('policy', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [&fingerprint],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Whether every commit is synced to disk (the default) or only checkpoints are. Not
    /// syncing is safe, and saves one fsync per batch, when nothing irreversible follows a
    /// commit: files that stay where they are, or IMAP messages that are kept (or only
    /// flagged). A commit undone by a power cut then just means those messages are read again:
    /// the ledger stays consistent (WAL), and the IMAP watermark goes back with the events.
    pub fn sync_every_commit(&self, yes: bool) -> anyhow::Result<()> {
        let mode = if yes { "FULL" } else { "NORMAL" };
        self.conn
            .execute_batch(&format!("PRAGMA synchronous = {mode}"))?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The fingerprint of the rule table this ledger writes verdicts with.
    pub fn rules(&self) -> &str {
        &self.rules
    }

    /// Read access for reports (`explain`, tests). Writes go through the methods, which keep
    /// the projection consistent.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Records an operator's reactivation of an address (an event, so that it survives every
    /// rebuild of the projection) and recomputes it. Soft-limited, quarantined and retrying
    /// addresses may be reactivated; a permanent suppression (hard, invalid, complaint,
    /// unsubscribe, manual) needs `force`.
    pub fn reactivate(
        &mut self,
        address: &str,
        force: bool,
        note: &str,
    ) -> anyhow::Result<Reactivation> {
        let address = normalize_address(address)
            .with_context(|| format!("{address:?} is not an e-mail address"))?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some((state, reason)) = projection::address_state(&tx, &address)? else {
            return Ok(Reactivation::Unknown);
        };
        if state == State::Active.as_str() {
            return Ok(Reactivation::AlreadyActive);
        }
        let permanent = reason
            .as_deref()
            .and_then(SuppressionReason::parse)
            .is_some_and(SuppressionReason::is_permanent);
        if permanent && !force {
            return Ok(Reactivation::NeedsForce {
                reason: reason.unwrap_or_default(),
            });
        }
        let now = time::format(time::now());
        let note = if force {
            format!(
                "{note} (forced over suppression {})",
                reason.as_deref().unwrap_or("-")
            )
        } else {
            note.to_string()
        };
        let sort_key = format!("~operator {now}");
        tx.execute(
            "INSERT INTO events (message_id, recipient_index, role, address, domain, kind, action, rule,
                 event_time, time_source, sort_key, note)
             VALUES (NULL, 0, 'operator', ?1, ?2, 'manual', 'reactivate', 'manual', ?3, 'operator', ?4, ?5)",
            params![address, domain_of(&address), now, sort_key, note],
        )?;
        let event = projection::NewEvent {
            id: tx.last_insert_rowid(),
            address: address.clone(),
            domain: domain_of(&address),
            time: now,
            sort_key,
            index: 0,
            role: Role::Operator,
            kind: "manual".into(),
            action: Some(crate::analysis::Action::parse("reactivate")),
            label: None,
            reason: None,
            status: None,
            diagnostic: Some(note.clone()),
            suppression: None,
            forged: false,
        };
        projection::apply(&tx, &self.policy, &[event], &Clock::now())?;
        tx.commit()?;
        Ok(Reactivation::Done {
            from: state,
            reason,
        })
    }

    /// Re-runs the analysis of stored messages with `settings` (those different settings or
    /// parser version decided, or with `all` every one; only those received since `since`) and
    /// rebuilds the projection, in one transaction.
    pub fn reclassify(
        &mut self,
        rules: &crate::analysis::Settings,
        since: Option<&str>,
        all: bool,
    ) -> anyhow::Result<ReclassifyReport> {
        reclassify::run(&mut self.conn, &self.policy, rules, since, all)
    }

    /// Recomputes the whole projection from the events (`rebound rebuild`).
    pub fn rebuild_projection(&mut self) -> anyhow::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        projection::rebuild_all(&tx, &self.policy)?;
        tx.commit()?;
        Ok(())
    }

    /// A stored message's bytes as they arrived (`rebound show-raw`).
    pub fn raw_message(&self, id: i64) -> anyhow::Result<Option<Vec<u8>>> {
        let row: Option<(Vec<u8>, Option<String>, i64)> = self
            .conn
            .query_row(
                "SELECT raw, raw_encoding, raw_size FROM messages WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        row.map(|(bytes, encoding, size)| {
            raw::decode(
                bytes,
                RawEncoding::from_column(encoding.as_deref())?,
                size as usize,
            )
        })
        .transpose()
    }
}

/// What [`Ledger::reactivate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reactivation {
    Done {
        from: String,
        reason: Option<String>,
    },
    AlreadyActive,
    Unknown,
    NeedsForce {
        reason: String,
    },
}

pub fn sha256_hex(raw: &[u8]) -> String {
    let digest = Sha256::digest(raw);
    let mut s = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `"Name" <User@Example.COM>`, `rfc822;user@example.com` → `user@example.com`.
pub fn normalize_address(text: &str) -> Option<String> {
    let mut s = text.trim();
    if let (Some(start), Some(end)) = (s.rfind('<'), s.rfind('>'))
        && start < end
    {
        s = &s[start + 1..end];
    }
    if let Some((kind, rest)) = s.split_once(';')
        && kind.trim().eq_ignore_ascii_case("rfc822")
    {
        s = rest;
    }
    let s = s
        .trim()
        .trim_matches(|c| c == '<' || c == '>' || c == '"' || c == '\'');
    let s = s.trim();
    if s.is_empty() || s.contains(char::is_whitespace) {
        return None;
    }
    Some(s.to_lowercase())
}

/// The domain of a normalized address (empty when it has none).
pub fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_string())
        .unwrap_or_default()
}

/// Creates the ledger file with mode 0600, or narrows an existing one to it.
fn restrict_file_mode(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if !path.exists() {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating the ledger {}", path.display()))?;
        }
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {} to mode 0600", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
