//! Several `rebound` processes on one ledger that does not exist yet (a timer's poll and an
//! operator's ingest, started together): every one of them must succeed and every message be
//! stored exactly once. The first one creates the schema; the others wait for its write lock
//! and find the schema already there.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rusqlite::Connection;

const PROCESSES: usize = 8;

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/ledger")
}

/// A bounce no other process has: each process stores at least one message of its own.
fn own_message(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join(format!("own-{n}.eml"));
    std::fs::write(
        &path,
        format!(
            "From: MAILER-DAEMON@mx.example.net\r\nTo: bounces@sender.example\r\nSubject: Undelivered Mail Returned to Sender\r\n\
Date: Mon, 2 Nov 2026 10:00:00 +0000\r\nMessage-ID: <own-{n}@mx.example.net>\r\n\r\n\
<user{n}@example.org>: host mx.example.org said: 550 5.1.1 <user{n}@example.org>: Recipient address rejected: User unknown\r\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn processes_started_together_on_a_new_ledger_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("new/ledger.db");
    let children: Vec<_> = (0..PROCESSES)
        .map(|n| {
            let own = own_message(dir.path(), n);
            Command::new(env!("CARGO_BIN_EXE_rebound"))
                .arg("ingest")
                .arg("--db")
                .arg(&db)
                .arg(samples())
                .arg(own)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (n, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "process {n}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let conn = Connection::open(&db).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let shared = std::fs::read_dir(samples()).unwrap().count() as i64;
    assert_eq!(
        count("SELECT count(*) FROM messages"),
        shared + PROCESSES as i64,
        "every message stored once"
    );
    assert_eq!(
        count("SELECT count(DISTINCT sha256) FROM messages"),
        count("SELECT count(*) FROM messages")
    );
    assert_eq!(
        count("SELECT count(*) FROM runs WHERE mailbox = 'files' AND ok = 1"),
        PROCESSES as i64
    );
    assert_eq!(
        count("PRAGMA user_version"),
        rebound::ledger::schema::MIGRATIONS.len() as i64
    );
}
