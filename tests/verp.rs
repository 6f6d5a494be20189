//! VERP and signed return paths through the real path: a config with `[verp]` → `rebound
//! ingest` / `verp encode` / `explain` / `reclassify` → the SQLite ledger. The samples in
//! `testdata/verp/` were written for these tests (see its `about.txt`), addressed to return
//! paths signed with the test key below.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rusqlite::Connection;

/// The key the samples' return paths are signed with (test data, not a secret).
const KEY: &str = "rebound-test-key-2026-not-secret";
const KEY_VAR: &str = "REBOUND_TEST_VERP_KEYS";

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/verp")
        .join(name)
}

/// A config in `dir` with `[verp]` (keys from the environment) and `extra` lines in it.
fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("rebound.toml");
    std::fs::write(
        &path,
        format!(
            "[database]\npath = \"rebound.db\"\n\n[verp]\nreturn_paths = [\"bounces@mail.example.com\"]\nkey_env = \"{KEY_VAR}\"\n{extra}"
        ),
    )
    .unwrap();
    path
}

/// Runs rebound with the test key (or `keys`) in the environment.
fn rebound_with(keys: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rebound"));
    cmd.args(args).env_remove(KEY_VAR);
    if let Some(k) = keys {
        cmd.env(KEY_VAR, k);
    }
    let out = cmd.output().expect("run rebound");
    eprintln!(
        "rebound {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn rebound(args: &[&str]) -> Output {
    rebound_with(Some(KEY), args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ingest(cfg: &Path, files: &[&Path]) -> Output {
    let mut args = vec!["ingest", "--config", cfg.to_str().unwrap()];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let out = rebound(&args);
    assert!(out.status.success(), "ingest failed");
    out
}

fn explain(cfg: &Path, address: &str) -> String {
    let out = rebound(&["explain", "--config", cfg.to_str().unwrap(), address]);
    assert!(out.status.success());
    stdout(&out)
}

/// (state, suppression reason, attempts) of an address.
fn state(db: &Path, address: &str) -> Option<(String, Option<String>, i64)> {
    Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT state, suppression_reason, attempts FROM addresses WHERE address = ?1",
            [address],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .ok()
}

/// A copy of a sample in `dir` with its tag replaced (a bounce forged for the same address).
fn tampered(dir: &Path, name: &str, tag: &str, forged_tag: &str) -> PathBuf {
    let text = std::fs::read_to_string(sample(name)).unwrap();
    assert!(text.contains(tag));
    let path = dir.join(format!("tampered-{name}"));
    std::fs::write(&path, text.replace(tag, forged_tag)).unwrap();
    path
}

#[test]
fn verp_encode_prints_the_return_paths_the_samples_were_sent_to() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let out = rebound(&[
        "verp",
        "encode",
        "--config",
        cfg.to_str().unwrap(),
        "Carl@Example.org",
        "dana@example.org",
    ]);
    assert!(out.status.success());
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 2);
    let carl = std::fs::read_to_string(sample("postfix-forward.eml")).unwrap();
    let dana = std::fs::read_to_string(sample("nobody-notice.eml")).unwrap();
    assert!(
        carl.contains(&format!("To: {}\n", lines[0])),
        "{}",
        lines[0]
    );
    assert!(
        dana.contains(&format!("To: {}\n", lines[1])),
        "{}",
        lines[1]
    );
    // Unsigned without a key; one address that cannot be carried prints nothing at all.
    let out = rebound(&[
        "verp",
        "encode",
        "--return-path",
        "list-bounces@lists.example.net",
        "a+b=c@example.org",
    ]);
    assert_eq!(
        stdout(&out),
        "list-bounces+a+b=c=example.org@lists.example.net\n"
    );
    let out = rebound(&[
        "verp",
        "encode",
        "--config",
        cfg.to_str().unwrap(),
        "carl@example.org",
        "\"a b\"@example.org",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("quoted"));
    // decode tells valid, invalid and missing tags apart.
    let out = rebound(&[
        "verp",
        "decode",
        "--config",
        cfg.to_str().unwrap(),
        &lines[0],
        &lines[0].replace("carl=", "dave="),
        "bounces+carl=example.org@mail.example.com",
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("\tcarl@example.org\tsignature valid"),
        "{text}"
    );
    assert!(
        text.contains("\tdave@example.org\tsignature invalid"),
        "{text}"
    );
    assert!(
        text.contains("\tcarl@example.org\tsignature missing"),
        "{text}"
    );
}

#[test]
fn a_notice_naming_nobody_suppresses_the_verp_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let out = ingest(&cfg, &[&sample("nobody-notice.eml")]);
    assert!(
        stdout(&out)
            .contains("hard=1 soft=0 blocked=0 invalid=0 | recipients not counted: forged=0"),
        "{}",
        stdout(&out)
    );
    let db = dir.path().join("rebound.db");
    assert_eq!(
        state(&db, "dana@example.org"),
        Some(("suppressed".into(), Some("hard".into()), 1))
    );
    let text = explain(&cfg, "dana@example.org");
    assert!(
        text.contains("via VERP return path bounces+dana=example.org+fjsjyka5@mail.example.com (signature valid)"),
        "{text}"
    );
    // The same notice without [verp] names nobody: nothing is suppressed.
    let plain = tempfile::tempdir().unwrap();
    let db = plain.path().join("plain.db");
    let out = rebound(&[
        "ingest",
        "--db",
        db.to_str().unwrap(),
        sample("nobody-notice.eml").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert_eq!(state(&db, "dana@example.org"), None);
}

#[test]
fn a_forward_is_keyed_on_the_verp_address_and_keeps_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    ingest(&cfg, &[&sample("postfix-forward.eml")]);
    let db = dir.path().join("rebound.db");
    assert_eq!(
        state(&db, "carl@example.org"),
        Some(("suppressed".into(), Some("hard".into()), 1))
    );
    assert_eq!(state(&db, "carl.new@forward.example.net"), None);
    let conn = Connection::open(&db).unwrap();
    let (final_recipient, signature, return_path): (String, String, String) = conn
        .query_row(
            "SELECT final_recipient, signature, return_path FROM v_why WHERE address = 'carl@example.org'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(final_recipient, "carl.new@forward.example.net");
    assert_eq!(signature, "valid");
    assert_eq!(
        return_path,
        "bounces+carl=example.org+rv2qj6q4@mail.example.com"
    );
    let text = explain(&cfg, "carl@example.org");
    assert!(
        text.contains("final recipient carl.new@forward.example.net"),
        "{text}"
    );
}

/// A forged bounce changes no state, so it never reaches the change log: the export after it
/// is empty, while the genuine bounce is an addition; `explain --json` shows the flag.
#[test]
fn a_forged_bounce_never_reaches_the_export() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let cfgs = cfg.to_str().unwrap();
    let forged = tampered(dir.path(), "nobody-notice.eml", "fjsjyka5", "fjsjyka6");
    ingest(&cfg, &[&forged]);
    let out = rebound(&["export", "--config", cfgs, "--since", "0"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cursor: 0"));
    let out = rebound(&["explain", "--config", cfgs, "--json", "dana@example.org"]);
    let x: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let e = &x["events"][0];
    assert_eq!(
        (&e["forged"], &e["signature"]),
        (&true.into(), &"invalid".into())
    );
    assert!(
        e["return_path"]
            .as_str()
            .unwrap()
            .starts_with("bounces+dana=example.org+")
    );

    ingest(&cfg, &[&sample("nobody-notice.eml")]);
    let out = rebound(&["export", "--config", cfgs, "--since", "0"]);
    let line: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(
        (&line["op"], &line["address"], &line["reason"]),
        (&"add".into(), &"dana@example.org".into(), &"hard".into())
    );
}

#[test]
fn a_tampered_tag_changes_no_state_and_shows_as_forged() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let db = dir.path().join("rebound.db");
    let forged = tampered(dir.path(), "nobody-notice.eml", "fjsjyka5", "fjsjyka6");
    let out = ingest(&cfg, &[&forged]);
    assert!(
        stdout(&out)
            .contains("hard=0 soft=0 blocked=0 invalid=0 | recipients not counted: forged=1"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        state(&db, "dana@example.org"),
        Some(("active".into(), None, 0))
    );
    let conn = Connection::open(&db).unwrap();
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM v_why WHERE address = 'dana@example.org' AND forged = 1 AND signature = 'invalid' AND label = 'hard'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1, "kept as evidence, with its verdict and its flag");
    let forged_in_run: i64 = conn
        .query_row(
            "SELECT forged FROM runs ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(forged_in_run, 1);
    let text = explain(&cfg, "dana@example.org");
    assert!(
        text.contains("FORGED, counted against nothing: the return path's tag does not verify"),
        "{text}"
    );
    assert!(text.contains("state:      active"), "{text}");
    // The forward sample forged the same way leaves carl alone as well.
    let forged = tampered(dir.path(), "postfix-forward.eml", "rv2qj6q4", "rv2qj6qa");
    ingest(&cfg, &[&forged]);
    assert_eq!(
        state(&db, "carl@example.org"),
        Some(("active".into(), None, 0))
    );
}

#[test]
fn reclassify_follows_a_change_of_keys_and_a_missing_key_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let db = dir.path().join("rebound.db");
    ingest(&cfg, &[&sample("nobody-notice.eml")]);
    assert_eq!(state(&db, "dana@example.org").unwrap().0, "suppressed");
    // The key is replaced (not rotated): the stored tag no longer verifies. The settings'
    // fingerprint changed, so reclassify re-derives the message without --all.
    let other = "another-test-key-2026-not-secret";
    let out = rebound_with(
        Some(other),
        &["reclassify", "--config", cfg.to_str().unwrap()],
    );
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("re-analysed 1 messages"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        state(&db, "dana@example.org"),
        Some(("active".into(), None, 0))
    );
    // Rotated (new key first, the old one kept): valid again.
    let out = rebound_with(
        Some(&format!("{other} {KEY}")),
        &["reclassify", "--config", cfg.to_str().unwrap()],
    );
    assert!(out.status.success());
    assert_eq!(state(&db, "dana@example.org").unwrap().0, "suppressed");
    // Unchanged settings: nothing to re-derive.
    let out = rebound_with(
        Some(&format!("{other} {KEY}")),
        &["reclassify", "--config", cfg.to_str().unwrap()],
    );
    assert!(
        stdout(&out).contains("re-analysed 0 messages"),
        "{}",
        stdout(&out)
    );
    // No key in the environment: a sentence naming the variable, and nothing stored.
    let out = rebound_with(
        None,
        &[
            "ingest",
            "--config",
            cfg.to_str().unwrap(),
            sample("postfix-forward.eml").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(KEY_VAR) && err.contains("not set"), "{err}");
    assert_eq!(state(&db, "carl@example.org"), None);
}

#[test]
fn require_signature_counts_an_unsigned_bounce_only_when_its_dsn_names_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "require_signature = true\n");
    let db = dir.path().join("rebound.db");
    // Unsigned: the prose notice names nobody but the return path; the DSN names another
    // address than the return path's.
    let nobody = tampered(dir.path(), "nobody-notice.eml", "+fjsjyka5", "");
    let forward = tampered(dir.path(), "postfix-forward.eml", "+rv2qj6q4", "");
    let out = ingest(&cfg, &[&nobody, &forward]);
    assert!(stdout(&out).contains("forged=2"), "{}", stdout(&out));
    assert_eq!(state(&db, "dana@example.org").unwrap().0, "active");
    assert_eq!(state(&db, "carl@example.org").unwrap().0, "active");
    let text = explain(&cfg, "dana@example.org");
    assert!(text.contains("require_signature"), "{text}");
    // Signed, the same notices count.
    ingest(
        &cfg,
        &[&sample("nobody-notice.eml"), &sample("postfix-forward.eml")],
    );
    assert_eq!(state(&db, "dana@example.org").unwrap().0, "suppressed");
    assert_eq!(state(&db, "carl@example.org").unwrap().0, "suppressed");
}

#[test]
fn check_reads_the_keys_without_showing_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let out = rebound(&["check", "--config", cfg.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(
        text.contains("ok    verp: return paths bounces@mail.example.com; 1 key(s) from key_env REBOUND_TEST_VERP_KEYS (read, not shown)"),
        "{text}"
    );
    assert!(!text.contains(KEY), "{text}");
    let out = rebound_with(Some("short"), &["check", "--config", cfg.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains(
            "FAIL  verp: [verp] key_env REBOUND_TEST_VERP_KEYS: key 1 is shorter than 16 characters"
        ),
        "{text}"
    );
    assert!(!text.contains("short\n"), "{text}");
}
