//! The summary line names each count for what it counts: messages (new, already stored), the
//! new ones by kind (delivery reports and challenges under their own names, not under `other`
//! or `auto_reply`), and bounced recipients by label. The `runs` row keeps the same counts.

use std::path::{Path, PathBuf};
use std::process::Command;

fn mail(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/mail")
        .join(path)
}

/// The value of `key=` in a summary line.
fn count(line: &str, key: &str) -> u64 {
    let at = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line}"));
    line[at + key.len() + 2..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn ingest_names_every_count() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    let out = Command::new(env!("CARGO_BIN_EXE_rebound"))
        .args(["ingest", "--db", db.to_str().unwrap()])
        .arg(mail("dsn/postfix-delivered.eml"))
        .arg(mail("challenge/tmda-please-confirm.eml"))
        .arg(mail("dsn/postfix-user-unknown.eml"))
        .arg(mail("auto-reply"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("files: "))
        .unwrap_or_else(|| panic!("no summary line in {stdout}"));
    assert_eq!(count(line, "delivery_report"), 1, "{line}");
    assert_eq!(count(line, "challenge"), 1, "{line}");
    assert_eq!(count(line, "bounce"), 1, "{line}");
    assert_eq!(
        count(line, "other"),
        0,
        "a delivery report is not other: {line}"
    );
    assert!(count(line, "auto_reply") > 0, "{line}");
    assert!(line.contains("| new messages by kind: "), "{line}");
    assert!(line.contains("| bounced recipients by label: "), "{line}");
    // The kinds add up to the new messages.
    let kinds: u64 = [
        "bounce",
        "delay",
        "delivery_report",
        "auto_reply",
        "challenge",
        "complaint",
        "unsubscribe",
        "other",
        "unparsed",
    ]
    .iter()
    .map(|k| count(line, k))
    .sum();
    assert_eq!(kinds, count(line, "new"), "{line}");

    let conn = rusqlite::Connection::open(&db).unwrap();
    let (kinds, auto_replies): (String, i64) = conn
        .query_row("SELECT kinds, auto_replies FROM runs", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let kinds: serde_json::Value = serde_json::from_str(&kinds).unwrap();
    assert_eq!(kinds["challenge"], 1, "{kinds}");
    assert_eq!(kinds["delivery_report"], 1, "{kinds}");
    assert_eq!(kinds["auto_reply"], auto_replies, "{kinds}");
}
