//! One advisory lock per mailbox, in a file beside the database, so that two overlapping runs
//! (a slow timer run and the next one, or `poll` while `watch` runs) never read the same mailbox
//! at the same time. The lock is held by the open file: the OS releases it when the process
//! dies, so a crash never leaves a stale lock behind.

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
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
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
