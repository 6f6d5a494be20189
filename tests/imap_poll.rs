//! `rebound poll` end to end: a real Dovecot, the real binary, a real SQLite ledger.

mod common;

use std::path::Path;

use common::*;

fn db(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("rebound.db")).unwrap()
}

fn stored(dir: &Path, mailbox: &str) -> Vec<(u32, String)> {
    let conn = db(dir);
    let mut st = conn
        .prepare("SELECT uid, kind FROM messages WHERE mailbox = ?1 ORDER BY uid")
        .unwrap();
    st.query_map([mailbox], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn line_of<'a>(out: &'a str, mailbox: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains(&format!("{mailbox}: ")))
        .unwrap_or_else(|| panic!("no line for {mailbox} in {out}"))
}

fn has_flag(flags: &[String], flag: &str) -> bool {
    flags.iter().any(|f| f.contains(flag))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_mailboxes_keep_then_nothing_new() {
    let s = server();
    let (a, b) = (s.add_user("keep-a"), s.add_user("keep-b"));
    append(
        &a,
        "INBOX",
        &[
            bounce(1, "gone@example.org"),
            bounce(2, "old@example.org"),
            auto_reply(1),
            human(1),
        ],
    )
    .await;
    append(
        &b,
        "INBOX",
        &[bounce(3, "x@example.com"), bounce(4, "y@example.com")],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &[
            mailbox_toml(dir.path(), "a", &a, Mode::Implicit, ""),
            mailbox_toml(dir.path(), "b", &b, Mode::Starttls, ""),
        ],
    );
    let out = rebound(&["poll", "--config", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(line_of(&text, "a").contains("new=4"), "{text}");
    assert!(line_of(&text, "b").contains("new=2"), "{text}");
    assert_eq!(
        stored(dir.path(), "a")
            .iter()
            .map(|m| m.0)
            .collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(stored(dir.path(), "b").len(), 2);
    // keep: every message flagged with the keyword, none marked seen, none moved.
    let listed = list(&a, "INBOX").await;
    assert_eq!(listed.len(), 4);
    assert!(
        listed
            .iter()
            .all(|(_, f)| has_flag(f, "$Rebound") && !has_flag(f, "Seen")),
        "{listed:?}"
    );

    let again = rebound(&["poll", "--config", cfg.to_str().unwrap()]);
    assert!(again.status.success(), "{}", stderr(&again));
    let text = stdout(&again);
    for m in ["a", "b"] {
        let line = line_of(&text, m);
        assert!(
            line.contains("new=0") && line.contains("already_stored=0"),
            "{line}"
        );
    }
    let runs: i64 = db(dir.path())
        .query_row(
            "SELECT count(*) FROM runs WHERE ok = 1 AND finished_at IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(runs, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_changes_nothing() {
    let u = server().add_user("dry");
    append(&u, "INBOX", &[bounce(10, "a@example.org"), human(10)]).await;
    let before = list(&u, "INBOX").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &[mailbox_toml(
            dir.path(),
            "dry",
            &u,
            Mode::Plain,
            "action = \"delete\"",
        )],
    );
    let out = rebound(&["poll", "--dry-run", "--config", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        line_of(&stdout(&out), "dry").contains("new=2"),
        "{}",
        stdout(&out)
    );
    assert!(
        !dir.path().join("rebound.db").exists(),
        "a dry run must not create the ledger"
    );
    assert_eq!(
        list(&u, "INBOX").await,
        before,
        "a dry run must not touch a message"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn seen_move_and_delete_actions() {
    let s = server();
    let (seen, mv, del) = (
        s.add_user("act-seen"),
        s.add_user("act-move"),
        s.add_user("act-del"),
    );
    for (i, u) in [&seen, &mv, &del].into_iter().enumerate() {
        append(
            u,
            "INBOX",
            &[
                bounce(100 + i, "gone@example.org"),
                auto_reply(100 + i),
                human(100 + i),
            ],
        )
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &[
            mailbox_toml(dir.path(), "seen", &seen, Mode::Plain, "action = \"seen\""),
            mailbox_toml(dir.path(), "move", &mv, Mode::Plain, "action = \"move\""),
            mailbox_toml(dir.path(), "del", &del, Mode::Plain, "action = \"delete\""),
        ],
    );
    let out = rebound(&["poll", "--config", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));

    let l = list(&seen, "INBOX").await;
    assert_eq!(l.len(), 3);
    assert!(
        l.iter()
            .all(|(_, f)| has_flag(f, "Seen") && has_flag(f, "$Rebound")),
        "{l:?}"
    );

    // move: the folder is emptied into per-kind folders, created on the way.
    assert_eq!(count(&mv, "INBOX").await, 0);
    let kinds = stored(dir.path(), "move");
    let expect = |kind: &str| kinds.iter().filter(|k| k.1 == kind).count() as u32;
    let bounces = expect("bounce") + expect("delay") + expect("delivery_report");
    let other = expect("other") + expect("unparsed");
    assert_eq!(count(&mv, "Processed/Bounces").await, bounces, "{kinds:?}");
    assert_eq!(
        count(&mv, "Processed/AutoReplies").await,
        expect("auto_reply"),
        "{kinds:?}"
    );
    assert_eq!(count(&mv, "Processed/Other").await, other, "{kinds:?}");
    assert_eq!(bounces + expect("auto_reply") + other, 3);

    // delete: recognised reports are expunged; what is not recognised stays, flagged.
    let kinds = stored(dir.path(), "del");
    let l = list(&del, "INBOX").await;
    let unrecognised: Vec<u32> = kinds
        .iter()
        .filter(|k| k.1 == "other" || k.1 == "unparsed")
        .map(|k| k.0)
        .collect();
    assert!(
        !unrecognised.is_empty(),
        "the human reply is not a report: {kinds:?}"
    );
    assert_eq!(
        l.iter().map(|m| m.0).collect::<Vec<_>>(),
        unrecognised,
        "{kinds:?}"
    );
    assert!(l.iter().all(|(_, f)| has_flag(f, "$Rebound")));

    // A second poll finds nothing new anywhere.
    let again = rebound(&["poll", "--config", cfg.to_str().unwrap()]);
    assert!(again.status.success());
    assert_eq!(
        stdout(&again).matches("new=0").count(),
        3,
        "{}",
        stdout(&again)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_fails_clearly_and_other_mailbox_is_done() {
    let s = server();
    let (good, bad) = (s.add_user("pw-good"), s.add_user("pw-bad"));
    append(&good, "INBOX", &[bounce(200, "a@example.org")]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut wrong = bad.clone();
    wrong.password = "not-the-password".into();
    let cfg = write_config(
        dir.path(),
        &[
            mailbox_toml(dir.path(), "bad", &wrong, Mode::Implicit, ""),
            mailbox_toml(dir.path(), "good", &good, Mode::Implicit, ""),
        ],
    );
    let out = rebound(&["poll", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("mailbox bad") && err.contains("authentication failed"),
        "{err}"
    );
    assert!(!err.contains("not-the-password"));
    assert!(line_of(&stdout(&out), "good").contains("new=1"));
    assert!(line_of(&stdout(&out), "bad").contains("FAILED"));
    assert_eq!(stored(dir.path(), "good").len(), 1);
    let failed: i64 = db(dir.path())
        .query_row(
            "SELECT count(*) FROM runs WHERE mailbox = 'bad' AND ok = 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(failed, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn uidvalidity_change_rescans_without_double_counting() {
    let s = server();
    let u = s.add_user("uidv");
    append(
        &u,
        "INBOX",
        &[
            bounce(300, "a@example.org"),
            bounce(301, "b@example.org"),
            human(300),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &[mailbox_toml(
            dir.path(),
            "v",
            &u,
            Mode::Plain,
            "action = \"seen\"",
        )],
    );
    let out = rebound(&["poll", "--config", cfg.to_str().unwrap()]);
    assert!(
        line_of(&stdout(&out), "v").contains("new=3"),
        "{}",
        stdout(&out)
    );
    let before: u32 = db(dir.path())
        .query_row(
            "SELECT uidvalidity FROM imap_folders WHERE mailbox = 'v'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    s.doveadm(&[
        "mailbox",
        "update",
        "-u",
        &u.name,
        "--uid-validity",
        &(before + 1000).to_string(),
        "INBOX",
    ]);
    append(&u, "INBOX", &[bounce(302, "c@example.org")]).await;
    let out = rebound(&["poll", "--config", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = line_of(&stdout(&out), "v").to_string();
    assert!(
        line.contains("new=1") && line.contains("already_stored=3"),
        "{line}"
    );
    let after: u32 = db(dir.path())
        .query_row(
            "SELECT uidvalidity FROM imap_folders WHERE mailbox = 'v'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(after, before + 1000);
    let total: i64 = db(dir.path())
        .query_row(
            "SELECT count(*) FROM messages WHERE mailbox = 'v'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(total, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_message_is_stored_by_header_only() {
    let u = server().add_user("big");
    let mut big = bounce(400, "big@example.org");
    big.extend(std::iter::repeat_n(b'x', 8000));
    big.extend(b"\r\n");
    append(&u, "INBOX", &[big, bounce(401, "small@example.org")]).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &[mailbox_toml(
            dir.path(),
            "big",
            &u,
            Mode::Plain,
            "max_message_bytes = 4000",
        )],
    );
    let out = rebound(&["poll", "--config", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (kind, error, size, failed): (String, String, i64, i64) = db(dir.path())
        .query_row("SELECT kind, error, raw_size, fetch_failed FROM messages WHERE mailbox = 'big' AND uid = 1", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap();
    assert_eq!((kind.as_str(), failed), ("unparsed", 1));
    assert!(error.contains("max_message_bytes"), "{error}");
    assert!(size < 1000, "only the header is stored, got {size} bytes");
    assert_eq!(stored(dir.path(), "big").len(), 2);
}
