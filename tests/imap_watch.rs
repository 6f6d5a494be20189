//! `rebound watch`: IDLE picks up new mail in every configured folder, the lock keeps a timer
//! poll away, SIGTERM stops it.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn count_stored(dir: &std::path::Path) -> i64 {
    let Ok(conn) = rusqlite::Connection::open(dir.join("rebound.db")) else {
        return 0;
    };
    conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap_or(0)
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running `rebound watch`, killed if a test fails before stopping it. Its standard output
/// goes to `watch.out` beside the config.
struct Watching(std::process::Child);

impl Watching {
    fn start(cfg: &std::path::Path) -> Watching {
        let out = std::fs::File::create(cfg.with_file_name("watch.out")).unwrap();
        let child = Command::new(rebound_bin())
            .args(["watch", "--config", cfg.to_str().unwrap()])
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Watching(child)
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Sends SIGTERM and expects a clean exit within a generous bound.
fn stop(watching: &mut Watching) {
    let child = &mut watching.0;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "watch did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
}

/// Folders of the stored messages, in UID order per folder.
fn stored_folders(dir: &std::path::Path) -> Vec<String> {
    let Ok(conn) = rusqlite::Connection::open(dir.join("rebound.db")) else {
        return Vec::new();
    };
    let Ok(mut st) = conn.prepare("SELECT folder FROM messages ORDER BY folder, uid") else {
        return Vec::new();
    };
    st.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_picks_up_new_mail_and_sigterm_stops_cleanly() {
    let user = server().add_user("watcher");
    append(&user, "INBOX", &[bounce(700, "first@example.org")]).await;
    let dir = tempfile::tempdir().unwrap();
    // A long poll interval: only IDLE can deliver the second message in time.
    let cfg = write_config(
        dir.path(),
        &[mailbox_toml(
            dir.path(),
            "w",
            &user,
            Mode::Starttls,
            "poll_interval_secs = 600",
        )],
    );
    let mut child = Watching::start(&cfg);
    wait_for("the first sync", Duration::from_secs(15), || {
        count_stored(dir.path()) == 1
    });

    // An overlapping timer run waits for the lock, then gives up clearly.
    let out = rebound(&[
        "poll",
        "--config",
        cfg.to_str().unwrap(),
        "--lock-wait",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another rebound run"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    tokio::time::sleep(Duration::from_millis(500)).await; // let it enter IDLE
    let appended = Instant::now();
    append(&user, "INBOX", &[bounce(701, "second@example.org")]).await;
    wait_for(
        "IDLE to deliver the new message",
        Duration::from_secs(15),
        || count_stored(dir.path()) == 2,
    );
    eprintln!(
        "new message stored {:?} after the append",
        appended.elapsed()
    );

    stop(&mut child);
    let runs: i64 = rusqlite::Connection::open(dir.path().join("rebound.db"))
        .unwrap()
        .query_row(
            "SELECT count(*) FROM runs WHERE mailbox = 'w' AND new = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(runs, 2, "one run row per round that found mail");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_configured_folder_is_watched_live() {
    let user = server().add_user("watch-folders");
    append(&user, "INBOX", &[bounce(710, "inbox@example.org")]).await;
    append(&user, "Bounces", &[bounce(711, "first@example.org")]).await;
    let dir = tempfile::tempdir().unwrap();
    // A long poll interval: only an IDLE on "Bounces" itself can deliver the new message in
    // time (an IDLE on INBOX alone would leave it until the next refresh, 10 minutes away).
    let cfg = write_config(
        dir.path(),
        &[mailbox_toml(
            dir.path(),
            "wf",
            &user,
            Mode::Plain,
            "folders = [\"INBOX\", \"Bounces\"]\npoll_interval_secs = 600",
        )],
    );
    let mut child = Watching::start(&cfg);
    wait_for(
        "the first sync of both folders",
        Duration::from_secs(30),
        || count_stored(dir.path()) == 2,
    );
    assert_eq!(stored_folders(dir.path()), ["Bounces", "INBOX"]);

    tokio::time::sleep(Duration::from_millis(1000)).await; // let both tasks enter IDLE
    append(&user, "Bounces", &[bounce(712, "second@example.org")]).await;
    wait_for(
        "IDLE on the second folder to deliver the new message",
        Duration::from_secs(30),
        || count_stored(dir.path()) == 3,
    );
    assert_eq!(stored_folders(dir.path()), ["Bounces", "Bounces", "INBOX"]);
    // And the first folder is still watched too.
    append(&user, "INBOX", &[bounce(713, "third@example.org")]).await;
    wait_for(
        "IDLE on INBOX to deliver the new message",
        Duration::from_secs(30),
        || count_stored(dir.path()) == 4,
    );
    stop(&mut child);
    // One task per folder: each line says which folder it is about.
    let lines = std::fs::read_to_string(dir.path().join("watch.out")).unwrap();
    for folder in ["INBOX", "Bounces"] {
        assert!(
            lines.contains(&format!("[{folder}]: ok new=")),
            "no line for {folder}: {lines}"
        );
    }
    // ...and each round's `runs` row says which folder it read.
    let conn = rusqlite::Connection::open(dir.path().join("rebound.db")).unwrap();
    let folders: Vec<String> = conn
        .prepare("SELECT DISTINCT folder FROM runs WHERE new > 0 AND ok ORDER BY folder")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(folders, ["Bounces", "INBOX"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_arriving_during_a_sync_is_not_left_for_the_next_refresh() {
    let user = server().add_user("watch-during");
    let backlog: Vec<_> = (0..300)
        .map(|n| bounce(2000 + n, &format!("backlog{n}@example.org")))
        .collect();
    append(&user, "INBOX", &backlog).await;
    let dir = tempfile::tempdir().unwrap();
    // Small batches make the first sync a series of FETCH and STORE commands: the server
    // announces a message appended meanwhile in one of their answers, and not again in the IDLE
    // that follows. The long poll interval leaves no other way for it to arrive in time.
    let cfg = write_config(
        dir.path(),
        &[mailbox_toml(
            dir.path(),
            "wd",
            &user,
            Mode::Plain,
            "poll_interval_secs = 600\nbatch_size = 5",
        )],
    );
    let mut child = Watching::start(&cfg);
    wait_for(
        "the first sync to start storing",
        Duration::from_secs(30),
        || count_stored(dir.path()) >= 1,
    );
    append(&user, "INBOX", &[bounce(2300, "meanwhile@example.org")]).await;
    wait_for(
        "the message appended during the sync",
        Duration::from_secs(60),
        || count_stored(dir.path()) == 301,
    );
    stop(&mut child);
}
