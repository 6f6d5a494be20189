//! VERP through a real poll: bounces addressed to signed VERP return paths in a real Dovecot
//! mailbox, `rebound poll` with `[verp]` (keys in a `key_file`), the real SQLite ledger. The
//! samples are `testdata/verp/` (see its `about.txt`).

mod common;

use std::path::Path;

use common::*;

/// The key the samples' return paths are signed with (test data, not a secret).
const KEY: &str = "rebound-test-key-2026-not-secret";

/// A sample as an IMAP client would append it (CRLF), with a `(from, to)` replacement.
fn sample(name: &str, change: Option<(&str, &str)>) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/verp")
        .join(name);
    let mut text = std::fs::read_to_string(path).unwrap();
    if let Some((from, to)) = change {
        assert!(text.contains(from));
        text = text.replace(from, to);
    }
    text.replace('\n', "\r\n").into_bytes()
}

/// (state, suppression reason, attempts) of an address.
fn state(db: &Path, address: &str) -> Option<(String, Option<String>, i64)> {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT state, suppression_reason, attempts FROM addresses WHERE address = ?1",
            [address],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verp_bounce_in_the_mailbox_suppresses_the_decoded_address() {
    let s = server();
    let user = s.add_user("verp");
    append(
        &user,
        "INBOX",
        &[
            // A relay's notice naming nobody, to dana's signed return path.
            sample("nobody-notice.eml", None),
            // A DSN naming carl's forwarding target, its tag forged.
            sample("postfix-forward.eml", Some(("rv2qj6q4", "rv2qj6q5"))),
            // An ordinary DSN to the bare return path: unchanged by [verp].
            bounce(1, "gone@example.org"),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &[mailbox_toml(dir.path(), "verp", &user, Mode::Plain, "")],
    );
    let keys = dir.path().join("verp.keys");
    std::fs::write(&keys, format!("# test key\n{KEY}\n")).unwrap();
    std::fs::set_permissions(
        &keys,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .unwrap();
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    // A relative key_file is relative to the config file.
    text.push_str(
        "[verp]\nreturn_paths = [\"bounces@mail.example.com\"]\nkey_file = \"verp.keys\"\n",
    );
    std::fs::write(&cfg, text).unwrap();

    let out = rebound(&["poll", "--config", cfg.to_str().unwrap()]);
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{line}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(line.contains("new=3"), "{line}");
    assert!(
        line.contains("hard=2 soft=0 blocked=0 invalid=0 | recipients not counted: forged=1"),
        "{line}"
    );
    let db = dir.path().join("rebound.db");
    assert_eq!(
        state(&db, "dana@example.org"),
        Some(("suppressed".into(), Some("hard".into()), 1))
    );
    assert_eq!(
        state(&db, "gone@example.org"),
        Some(("suppressed".into(), Some("hard".into()), 1))
    );
    // The forged one is stored, keyed on the VERP address, and changed nothing.
    assert_eq!(
        state(&db, "carl@example.org"),
        Some(("active".into(), None, 0))
    );
    assert_eq!(state(&db, "carl.new@forward.example.net"), None);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (signature, forged, final_recipient): (String, bool, String) = conn
        .query_row(
            "SELECT signature, forged, final_recipient FROM events WHERE address = 'carl@example.org'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (signature.as_str(), forged, final_recipient.as_str()),
        ("invalid", true, "carl.new@forward.example.net")
    );
    let forged_in_run: i64 = conn
        .query_row("SELECT forged FROM runs WHERE mailbox = 'verp'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(forged_in_run, 1);
}
