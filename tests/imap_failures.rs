//! The connection dies in the middle of a fetch: nothing may be lost or counted twice.
//!
//! A small TCP proxy sits between rebound and Dovecot and cuts the first connection after a
//! given number of bytes from the server, the way a crashed server or a dropped link would.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Forwards to Dovecot's plain port. While `cut_after` is non-zero, the next connection is cut
/// once that many bytes came from the server (and `cut_after` is reset).
async fn proxy(cut_after: Arc<AtomicUsize>) -> u16 {
    proxy_with(cut_after, None).await
}

/// Like [`proxy`]; with a marker, every connection is cut as soon as the marker comes from the
/// server: a message that breaks every session that fetches it.
async fn proxy_with(cut_after: Arc<AtomicUsize>, marker: Option<&'static [u8]>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (client, _) = listener.accept().await.unwrap();
            let limit = cut_after.swap(0, Ordering::SeqCst);
            tokio::spawn(async move {
                let upstream = TcpStream::connect(("127.0.0.1", server().port))
                    .await
                    .unwrap();
                let (mut cr, mut cw) = client.into_split();
                let (mut ur, mut uw) = upstream.into_split();
                let up = tokio::spawn(async move { tokio::io::copy(&mut cr, &mut uw).await });
                let mut sent = 0usize;
                let mut buf = vec![0u8; 4096];
                let mut tail: Vec<u8> = Vec::new();
                loop {
                    let n = match ur.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if let Some(m) = marker {
                        tail.extend_from_slice(&buf[..n]);
                        if tail.windows(m.len()).any(|w| w == m) {
                            break;
                        }
                        tail.drain(..tail.len().saturating_sub(m.len()));
                    }
                    let n = if limit > 0 { n.min(limit - sent) } else { n };
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    sent += n;
                    if limit > 0 && sent >= limit {
                        break; // the "crash": both directions are dropped mid-response
                    }
                }
                up.abort();
            });
        }
    });
    port
}

fn config(dir: &Path, user: &User, port: u16, attempts: u32) -> std::path::PathBuf {
    let table = mailbox_toml(
        dir,
        "cut",
        user,
        Mode::Plain,
        &format!("batch_size = 20\nattempts = {attempts}\n"),
    );
    let table = table.replace(
        &format!("port = {}", server().port),
        &format!("port = {port}"),
    );
    write_config(dir, &[table])
}

fn uids(dir: &Path) -> Vec<u32> {
    stored_uids(&dir.join("rebound.db"), "cut")
}

fn run(cfg: &Path) -> std::process::Output {
    rebound(&["poll", "--config", cfg.to_str().unwrap()])
}

#[tokio::test(flavor = "multi_thread")]
async fn cut_mid_fetch_then_a_poll_completes_with_nothing_lost_or_doubled() {
    let user = server().add_user("cut-once");
    let messages: Vec<Vec<u8>> = (0..60)
        .map(|i| bounce(500 + i, &format!("r{i}@example.org")))
        .collect();
    let size: usize = messages.iter().map(Vec::len).sum();
    append(&user, "INBOX", &messages).await;
    let cut = Arc::new(AtomicUsize::new(size / 2));
    let port = proxy(cut.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &user, port, 1);

    let first = tokio::task::spawn_blocking({
        let cfg = cfg.clone();
        move || run(&cfg)
    })
    .await
    .unwrap();
    assert_eq!(
        first.status.code(),
        Some(1),
        "the cut must fail the run: {}",
        String::from_utf8_lossy(&first.stdout)
    );
    let partial = uids(dir.path());
    assert!(
        !partial.is_empty() && partial.len() < 60,
        "the cut came mid-fetch: {} stored",
        partial.len()
    );
    assert_eq!(
        partial,
        (1..=partial.len() as u32).collect::<Vec<_>>(),
        "stored in UID order, no gap"
    );

    let second = tokio::task::spawn_blocking(move || run(&cfg))
        .await
        .unwrap();
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(
        uids(dir.path()),
        (1..=60).collect::<Vec<_>>(),
        "every message exactly once"
    );
    assert_eq!(
        new_count(&first) + new_count(&second),
        60,
        "counted once across both runs"
    );
    let listed = list(&user, "INBOX").await;
    assert!(
        listed
            .iter()
            .all(|(_, f)| f.iter().any(|x| x.contains("$Rebound"))),
        "every message got its action"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_is_retried_within_the_same_run() {
    let user = server().add_user("cut-retry");
    let messages: Vec<Vec<u8>> = (0..30)
        .map(|i| bounce(600 + i, &format!("s{i}@example.org")))
        .collect();
    append(&user, "INBOX", &messages).await;
    let port = proxy(Arc::new(AtomicUsize::new(20_000))).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &user, port, 2);
    let out = tokio::task::spawn_blocking(move || run(&cfg))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(new_count(&out), 30);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("errors=1"),
        "the cut is reported"
    );
    assert_eq!(uids(dir.path()), (1..=30).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_that_keeps_failing_is_stored_as_unparsed_and_skipped() {
    let user = server().add_user("poison");
    let mut poison = bounce(800, "p@example.org");
    poison.splice(0..0, b"X-Test: POISON-MARKER\r\n".iter().copied());
    append(
        &user,
        "INBOX",
        &[
            bounce(801, "a@example.org"),
            poison,
            bounce(802, "b@example.org"),
        ],
    )
    .await;
    let port = proxy_with(Arc::new(AtomicUsize::new(0)), Some(b"POISON-MARKER")).await;
    let dir = tempfile::tempdir().unwrap();
    // 1: the batch fails; 2: one message per fetch, fails at uid 2; 3: fails at uid 2 again,
    // so it is poison, which earns a 4th attempt: uid 2 is recorded as unparsed, the rest read.
    let cfg = config(dir.path(), &user, port, 3);
    let out = tokio::task::spawn_blocking(move || run(&cfg))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        uids(dir.path()),
        vec![1, 2, 3],
        "nothing lost, nothing blocked behind the bad message: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let conn = rusqlite::Connection::open(dir.path().join("rebound.db")).unwrap();
    let (kind, error): (String, String) = conn
        .query_row("SELECT kind, error FROM messages WHERE uid = 2", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(kind, "unparsed");
    assert!(error.contains("repeated failures"), "{error}");
    // The next run does not try it again.
    let cfg = dir.path().join("rebound.toml");
    let again = tokio::task::spawn_blocking(move || run(&cfg))
        .await
        .unwrap();
    assert!(again.status.success());
    assert_eq!(new_count(&again), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_action_still_counts_the_batch_already_committing_behind_it() {
    // Batch 2 is written while batch 1's action (a MOVE) runs; the connection dies at the
    // MOVE's answer. Whatever batch 2 committed must be in the run's count, or the summary and
    // the `runs` row under-report what the ledger holds.
    let user = server().add_user("cut-action");
    let messages: Vec<Vec<u8>> = (0..50)
        .map(|i| bounce(900 + i, &format!("t{i}@example.org")))
        .collect();
    append(&user, "INBOX", &messages).await;
    let port = proxy_with(Arc::new(AtomicUsize::new(0)), Some(b"Move completed")).await;
    let dir = tempfile::tempdir().unwrap();
    let table = mailbox_toml(
        dir.path(),
        "cut",
        &user,
        Mode::Plain,
        "batch_size = 20\nattempts = 1\naction = \"move\"",
    )
    .replace(
        &format!("port = {}", server().port),
        &format!("port = {port}"),
    );
    let cfg = write_config(dir.path(), &[table]);
    let out = tokio::task::spawn_blocking(move || run(&cfg))
        .await
        .unwrap();
    let summary = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the cut action fails the run: {summary}"
    );
    // The failure is printed once, on stderr; the line counts it.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("applying action"), "{err}");
    assert!(summary.contains("errors=1"), "{summary}");
    let stored = uids(dir.path());
    assert_eq!(
        new_count(&out) as usize,
        stored.len(),
        "the summary counts every committed message: {summary}"
    );
}
