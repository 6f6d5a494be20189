//! The IMAP server itself is killed (SIGKILL, every Dovecot process) in the middle of a fetch,
//! then started again: the next poll must complete with nothing lost and nothing counted twice.
//!
//! This binary has its own Dovecot instance (one per test binary), so killing it disturbs no
//! other test. A slow proxy between rebound and Dovecot stretches the fetch over seconds, so
//! that the kill lands while batches are still coming, whatever the machine's speed; the
//! proxy only paces bytes, it never cuts: the break comes from the dead server.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Forwards to Dovecot's plain port, server-to-client at most `bytes_per_tick` every 10 ms.
async fn slow_proxy(bytes_per_tick: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", server().port)).await else {
                    return; // the server is down: drop the client, as a refused connection
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut ur, mut uw) = upstream.into_split();
                let up = tokio::spawn(async move { tokio::io::copy(&mut cr, &mut uw).await });
                let mut buf = vec![0u8; bytes_per_tick];
                loop {
                    let n = match ur.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                up.abort();
            });
        }
    });
    port
}

fn config(dir: &Path, user: &User, port: u16) -> std::path::PathBuf {
    let table = mailbox_toml(
        dir,
        "crashbox",
        user,
        Mode::Plain,
        "batch_size = 10\nattempts = 1\n",
    );
    let table = table.replace(
        &format!("port = {}", server().port),
        &format!("port = {port}"),
    );
    write_config(dir, &[table])
}

fn stored(db: &Path) -> Vec<u32> {
    stored_uids(db, "crashbox")
}

#[tokio::test(flavor = "multi_thread")]
async fn server_killed_mid_fetch_then_restarted_loses_and_doubles_nothing() {
    const N: usize = 120;
    let user = server().add_user("crashbox");
    let messages: Vec<Vec<u8>> = (0..N)
        .map(|i| bounce(1000 + i, &format!("k{i}@example.org")))
        .collect();
    append(&user, "INBOX", &messages).await;
    // ~2 KB per message at 100 KB/s: the whole fetch takes a few seconds.
    let port = slow_proxy(1024).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &user, port);
    let db = dir.path().join("rebound.db");

    let first = tokio::task::spawn_blocking({
        let cfg = cfg.clone();
        move || rebound(&["poll", "--config", cfg.to_str().unwrap()])
    });
    // Kill once some batches are committed and many are still to come.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = stored(&db).len();
        if n >= 10 {
            break;
        }
        assert!(Instant::now() < deadline, "the poll made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server().kill();
    let first = first.await.unwrap();
    let partial = stored(&db);
    assert!(
        partial.len() < N,
        "the kill came after the fetch; slow the proxy down ({} stored)",
        partial.len()
    );
    assert_eq!(
        first.status.code(),
        Some(1),
        "a dead server fails the run: {}{}",
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        String::from_utf8_lossy(&first.stderr).contains("crashbox"),
        "the error names the mailbox: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(
        partial,
        (1..=partial.len() as u32).collect::<Vec<_>>(),
        "committed in UID order, no gap"
    );

    server().restart();
    let second =
        tokio::task::spawn_blocking(move || rebound(&["poll", "--config", cfg.to_str().unwrap()]))
            .await
            .unwrap();
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(
        stored(&db),
        (1..=N as u32).collect::<Vec<_>>(),
        "every message exactly once"
    );
    assert_eq!(
        new_count(&first) + new_count(&second),
        N as u32,
        "counted once across the crash: {} + {}",
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&second.stdout)
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (events, addresses): (u32, u32) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM addresses WHERE attempts = 1)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (events, addresses),
        (N as u32, N as u32),
        "one event and one attempt each"
    );
    assert!(
        list(&user, "INBOX")
            .await
            .iter()
            .all(|(_, f)| f.iter().any(|x| x.contains("$Rebound"))),
        "every message got its action after the restart"
    );
}
