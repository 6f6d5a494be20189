//! One advisory lock per mailbox, in a file beside the database, so that two overlapping runs
//! (a slow timer run and the next one, or `poll` while `watch` runs) never read the same mailbox
//! at the same time. The lock is held by the open file: the OS releases it when the process
//! dies, so a crash never leaves a stale lock behind.
//!
//! The file is the lock, so it is private like the ledger (mode 0600 whatever the umask): a
//! lock file other users could open would let any local user take it and stop every poll.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Held while a mailbox is being read; dropping it releases the lock.
#[derive(Debug)]
pub struct MailboxLock {
    _file: File,
    pub path: PathBuf,
}

/// `<database>.<mailbox>.lock`, e.g. `rebound.db.bounces-eu.lock`.
pub fn lock_path(database: &Path, mailbox: &str) -> PathBuf {
    let mut name = database
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "rebound".into());
    name.push(format!(".{mailbox}.lock"));
    database.with_file_name(name)
}

/// Takes the mailbox's lock, waiting up to `wait` for another run to finish.
pub async fn acquire(
    database: &Path,
    mailbox: &str,
    wait: Duration,
) -> anyhow::Result<MailboxLock> {
    let path = lock_path(database, mailbox);
    let file =
        open_private(&path).with_context(|| format!("opening lock file {}", path.display()))?;
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(MailboxLock { _file: file, path }),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(TryLockError::WouldBlock) => bail!(
                "mailbox {mailbox} is being read by another rebound run (lock {} still held after {} s); skipped",
                path.display(),
                wait.as_secs()
            ),
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
    }
}

/// Opens (creating) a file only its owner may read or write: created 0600 (the umask can only
/// take bits away), and narrowed to 0600 when an older rebound created it wider.
fn open_private(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path)?;
        let meta = file.metadata()?;
        if meta.permissions().mode() & 0o077 != 0
            && let Err(e) = file.set_permissions(std::fs::Permissions::from_mode(0o600))
        {
            tracing::warn!(
                "lock file {} can be opened by other users and could not be made private ({e}): chmod 600 it",
                path.display()
            );
        }
        Ok(file)
    }
    #[cfg(not(unix))]
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_holder_waits_then_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("r.db");
        let held = acquire(&db, "a", Duration::ZERO).await.unwrap();
        let start = Instant::now();
        let err = acquire(&db, "a", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert!(err.to_string().contains("another rebound run"), "{err}");
        // Another mailbox is independent.
        acquire(&db, "b", Duration::ZERO).await.unwrap();
        drop(held);
        acquire(&db, "a", Duration::ZERO).await.unwrap();
    }
}
