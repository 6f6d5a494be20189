//! The ledger through the real path: `rebound ingest` (and friends) → a SQLite file → queries.
//! The samples in `testdata/ledger/` are written for these tests, modelled on real DSNs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rusqlite::Connection;

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/ledger")
}

fn sample_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(samples())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files
}

fn rebound(args: &[&str], paths: &[PathBuf]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_rebound"))
        .args(args)
        .args(paths)
        .output()
        .expect("run rebound");
    eprintln!(
        "rebound {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ingest(db: &Path, paths: &[PathBuf]) -> Output {
    rebound(&["ingest", "--db", db.to_str().unwrap()], paths)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn one<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> T {
    conn.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Everything the policy derives, with event ids replaced by the identity of the event's
/// evidence (message sha256 + recipient index), and the wall-clock `updated_at` left out: two
/// ledgers fed the same messages must give exactly this same text.
fn projection(db: &Path) -> String {
    let conn = Connection::open(db).unwrap();
    let mut out = String::new();
    let queries = [
        "SELECT a.address, a.domain, a.first_seen_at, a.last_seen_at, a.attempts, a.soft_count,
                a.last_label, a.last_reason, a.last_status, a.last_diagnostic, a.state,
                a.suppression_reason, a.state_since, a.next_retry_at, a.is_role,
                (SELECT coalesce(m.sha256, e.note) || ':' || e.recipient_index FROM events e LEFT JOIN messages m ON m.id = e.message_id WHERE e.id = a.state_event_id)
         FROM addresses a ORDER BY a.address",
        "SELECT s.address, s.changed_at, s.from_state, s.to_state, s.suppression_reason, s.rule, s.detail,
                (SELECT coalesce(m.sha256, e.note) || ':' || e.recipient_index FROM events e LEFT JOIN messages m ON m.id = e.message_id WHERE e.id = s.event_id)
         FROM state_changes s ORDER BY s.address, s.id",
        "SELECT domain, reason, started_at, paused_until, escalation, window_events, event_count, first_event_at, last_event_at
         FROM domain_pauses ORDER BY domain, reason, started_at",
        "SELECT m.sha256, e.recipient_index, e.address, e.kind, e.label, e.event_time, e.time_source
         FROM events e JOIN messages m ON m.id = e.message_id ORDER BY m.sha256, e.recipient_index",
    ];
    for sql in queries {
        let mut stmt = conn.prepare(sql).unwrap();
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                let mut line = Vec::new();
                for i in 0..n {
                    let v: rusqlite::types::Value = r.get(i)?;
                    line.push(format!("{v:?}"));
                }
                Ok(line.join("|"))
            })
            .unwrap();
        for row in rows {
            out.push_str(&row.unwrap());
            out.push('\n');
        }
        out.push_str("--\n");
    }
    out
}

#[test]
fn ingest_projects_the_policy_onto_addresses_and_domains() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sub/ledger.db");
    let out = ingest(&db, &[samples()]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("16 new, 0 duplicates"),
        "{}",
        stdout(&out)
    );

    // The file is private, versioned, in WAL mode.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&db).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let conn = Connection::open(&db).unwrap();
    assert_eq!(
        one::<i64>(&conn, "PRAGMA user_version"),
        rebound::ledger::schema::MIGRATIONS.len() as i64
    );
    assert_eq!(one::<String>(&conn, "PRAGMA journal_mode"), "wal");

    let state = |a: &str| -> (String, Option<String>) {
        conn.query_row(
            "SELECT state, suppression_reason FROM addresses WHERE address = ?1",
            [a],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap_or_else(|e| panic!("{a}: {e}"))
    };
    let s = |x: &str| Some(x.to_string());
    // Hard with explicit evidence: suppressed at once, address lowercased.
    assert_eq!(state("ana@example.org"), ("suppressed".into(), s("hard")));
    // Three soft bounces: soft limit.
    assert_eq!(
        state("bruno@example.net"),
        ("suppressed".into(), s("soft_limit"))
    );
    assert_eq!(
        one::<String>(
            &conn,
            "SELECT rule FROM state_changes WHERE address = 'bruno@example.net' ORDER BY id DESC LIMIT 1"
        ),
        "soft_limit_count"
    );
    // Soft, an out-of-office reply from the address (alive), soft again: count reset to 1,
    // retry 4 h after the last bounce (the first backoff step).
    assert_eq!(state("eva@example.net"), ("retry".into(), None));
    assert_eq!(
        one::<String>(
            &conn,
            "SELECT soft_count || ' ' || next_retry_at FROM addresses WHERE address = 'eva@example.net'"
        ),
        "1 2026-11-04T13:00:00Z"
    );
    // A bare 5.0.0 at a big provider: quarantined, not suppressed.
    assert_eq!(state("carla@gmail.com"), ("quarantined".into(), None));
    assert_eq!(
        one::<String>(
            &conn,
            "SELECT rule FROM state_changes WHERE address = 'carla@gmail.com'"
        ),
        "provider_quarantine"
    );
    assert_eq!(
        state("dora@isp.example"),
        ("suppressed".into(), s("complaint"))
    );
    assert_eq!(
        state("filipe@example.com"),
        ("suppressed".into(), s("unsubscribe"))
    );
    // Blocked never suppresses the address; five within an hour pause the domain for 24 h.
    assert_eq!(state("user3@blocked.example"), ("active".into(), None));
    assert_eq!(
        one::<String>(
            &conn,
            "SELECT domain || ' ' || reason || ' ' || started_at || ' ' || paused_until || ' ' || window_events FROM domain_pauses"
        ),
        "blocked.example blocked 2026-11-02T12:40:00Z 2026-11-03T12:40:00Z 5"
    );
    // The unreadable file is kept, raw and with its error.
    assert_eq!(
        one::<String>(
            &conn,
            "SELECT kind || ': ' || error FROM messages WHERE source_path LIKE '%garbage.eml'"
        ),
        "unparsed: not an RFC 5322 message"
    );
    // Every message's bytes are kept (compressed: `raw_encoding`), and come back whole.
    assert_eq!(
        one::<i64>(&conn, "SELECT count(*) FROM messages WHERE raw_size > 0"),
        16
    );
    assert!(
        one::<i64>(
            &conn,
            "SELECT count(*) FROM messages WHERE raw_encoding = 'zstd' AND length(raw) < raw_size"
        ) >= 10
    );
    let (id, source): (i64, String) = conn
        .query_row(
            "SELECT id, source_path FROM messages WHERE raw_encoding = 'zstd' LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let shown = rebound(
        &["show-raw", "--db", db.to_str().unwrap(), &id.to_string()],
        &[],
    );
    assert!(shown.status.success());
    assert_eq!(shown.stdout, std::fs::read(&source).unwrap());
    // Evidence in the events: DSN time, status, diagnostic, original sender.
    assert_eq!(
        one::<String>(
            &conn,
            "SELECT event_time || ' ' || time_source || ' ' || status || ' ' || sender_domain FROM events WHERE address = 'ana@example.org'"
        ),
        "2026-11-02T10:00:05Z last_attempt 5.1.1 shop.example"
    );
    // The views answer the operators' questions.
    assert_eq!(
        one::<String>(
            &conn,
            "SELECT group_concat(address || '=' || reason, ',') FROM (SELECT * FROM v_suppressed ORDER BY address)"
        ),
        "ana@example.org=hard,bruno@example.net=soft_limit,dora@isp.example=complaint,filipe@example.com=unsubscribe"
    );
    assert!(
        one::<String>(
            &conn,
            "SELECT evidence FROM v_suppressed WHERE address = 'ana@example.org'"
        )
        .contains("User unknown")
    );
    assert_eq!(
        one::<i64>(
            &conn,
            "SELECT count(*) FROM v_retry_due WHERE address = 'eva@example.net'"
        ),
        1
    );
    assert_eq!(
        one::<i64>(
            &conn,
            "SELECT blocked_30d >= 0 AND bounces_all_time = 5 FROM v_domain_stats WHERE side = 'recipient' AND domain = 'blocked.example'"
        ),
        1
    );
    assert_eq!(
        one::<i64>(
            &conn,
            "SELECT bounces_all_time FROM v_domain_stats WHERE side = 'sender' AND domain = 'shop.example'"
        ),
        12
    );
    assert_eq!(
        one::<String>(
            &conn,
            "SELECT rule FROM v_why WHERE address = 'bruno@example.net' LIMIT 1"
        ),
        "keyword=mailbox full: mailbox (is )?full"
    );
    assert_eq!(
        one::<i64>(&conn, "SELECT count(*) FROM v_paused_domains"),
        0,
        "the 2026-11-02 pause is over by now"
    );
    // The run is recorded.
    assert_eq!(
        one::<String>(
            &conn,
            "SELECT mailbox || ' ' || new || ' ' || unparsed || ' ' || complaints || ' ' || ok || ' ' || bounces FROM runs"
        ),
        r#"files 16 1 1 1 {"hard":2,"soft":5,"blocked":5}"#
    );
}

#[test]
fn ingesting_again_or_a_copy_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    assert!(ingest(&db, &[samples()]).status.success());
    let before = projection(&db);
    let copy = dir.path().join("copy.eml");
    std::fs::copy(samples().join("hard-user-unknown.eml"), &copy).unwrap();
    let out = ingest(&db, &[samples(), copy]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("0 new, 17 duplicates"),
        "{}",
        stdout(&out)
    );
    assert_eq!(projection(&db), before);
    let conn = Connection::open(&db).unwrap();
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM messages"), 16);
    assert_eq!(
        one::<i64>(
            &conn,
            "SELECT attempts FROM addresses WHERE address = 'ana@example.org'"
        ),
        1
    );
}

#[test]
fn two_different_dsns_for_one_address_are_two_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    let original = std::fs::read_to_string(samples().join("hard-user-unknown.eml")).unwrap();
    let other = dir.path().join("other.eml");
    std::fs::write(
        &other,
        original.replace("Message-ID: <h1@", "Message-ID: <h2@"),
    )
    .unwrap();
    assert!(
        ingest(&db, &[samples().join("hard-user-unknown.eml"), other])
            .status
            .success()
    );
    let conn = Connection::open(&db).unwrap();
    assert_eq!(
        one::<i64>(
            &conn,
            "SELECT attempts FROM addresses WHERE address = 'ana@example.org'"
        ),
        2
    );
}

/// The projection is a function of the events, not of the order or grouping of runs.
#[test]
fn projection_is_the_same_in_any_order_and_any_number_of_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = sample_files();
    // The shared corpus, when present beside the project, makes this much stronger: hundreds
    // of real bounces for the same few addresses.
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/sisimai/emails");
    let with_corpus = corpus.is_dir();
    if with_corpus {
        files.push(corpus);
    }
    let forward = dir.path().join("forward.db");
    assert!(ingest(&forward, &files).status.success());

    let backward = dir.path().join("backward.db");
    let mut reversed = files.clone();
    reversed.reverse();
    let (first, second) = reversed.split_at(reversed.len() / 2);
    assert!(ingest(&backward, second).status.success());
    assert!(ingest(&backward, first).status.success());

    let a = projection(&forward);
    let b = projection(&backward);
    let floor = if with_corpus { 40 } else { 8 };
    assert!(
        a.lines().count() > floor,
        "a real projection to compare:\n{a}"
    );
    if a != b {
        for (x, y) in a.lines().zip(b.lines()) {
            if x != y {
                panic!("projections differ:\n  forward:  {x}\n  backward: {y}");
            }
        }
        panic!("projections differ in length");
    }
}

#[test]
fn a_failed_transaction_leaves_no_trace_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    assert!(
        ingest(&db, &[samples().join("blocked-1.eml")])
            .status
            .success()
    );
    // Make the projection step of one message fail, after its message and events rows are
    // written: the whole message must roll back.
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER boom BEFORE INSERT ON addresses WHEN NEW.address = 'user2@blocked.example'
             BEGIN SELECT RAISE(ABORT, 'simulated failure'); END;",
        )
        .unwrap();
    let out = ingest(
        &db,
        &[
            samples().join("blocked-2.eml"),
            samples().join("blocked-3.eml"),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "an error is reported in the exit code"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("simulated failure"));
    let conn = Connection::open(&db).unwrap();
    assert_eq!(
        one::<i64>(
            &conn,
            "SELECT count(*) FROM messages WHERE source_path LIKE '%blocked-2.eml'"
        ),
        0
    );
    assert_eq!(
        one::<i64>(
            &conn,
            "SELECT count(*) FROM events WHERE address = 'user2@blocked.example'"
        ),
        0
    );
    assert_eq!(
        one::<i64>(&conn, "SELECT count(*) FROM messages"),
        2,
        "blocked-3 went in"
    );
    assert_eq!(
        one::<i64>(&conn, "SELECT ok FROM runs ORDER BY id DESC LIMIT 1"),
        0
    );
    conn.execute_batch("DROP TRIGGER boom").unwrap();
    // The rerun completes the ledger as if the failure never happened.
    assert!(
        ingest(&db, &[samples().join("blocked-2.eml")])
            .status
            .success()
    );
    let fresh = dir.path().join("fresh.db");
    assert!(
        ingest(
            &fresh,
            &[1, 2, 3].map(|i| samples().join(format!("blocked-{i}.eml")))
        )
        .status
        .success()
    );
    assert_eq!(projection(&db), projection(&fresh));
}

#[test]
fn reclassify_rederives_events_from_raw_bytes_and_reports_changes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    assert!(ingest(&db, &[samples()]).status.success());
    let good = projection(&db);
    let dbs = db.to_str().unwrap();

    // Every message was decided by the rule table in use: nothing to re-derive, unless asked.
    let out = rebound(&["reclassify", "--db", dbs], &[]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("re-analysed 0 messages"), "{text}");
    assert!(text.contains("16 already current"), "{text}");
    let out = rebound(&["reclassify", "--db", dbs, "--all"], &[]);
    assert!(
        stdout(&out).contains("re-analysed 16 messages"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("nothing changed"), "{}", stdout(&out));
    assert_eq!(projection(&db), good);

    // As if an older parser had not understood the blocked bounces, and had mislabelled
    // bruno's soft bounces as hard.
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA foreign_keys = ON;
         UPDATE messages SET kind = 'unparsed' WHERE source_path LIKE '%blocked-%';
         DELETE FROM events WHERE address LIKE '%@blocked.example';
         DELETE FROM addresses WHERE address LIKE '%@blocked.example';
         DELETE FROM domain_pauses;
         UPDATE events SET label = 'hard' WHERE address = 'bruno@example.net';
         UPDATE addresses SET last_label = 'hard', suppression_reason = 'hard' WHERE address = 'bruno@example.net';
         UPDATE messages SET rules = 'an older rule table';",
    )
    .unwrap();
    drop(conn);
    let out = rebound(&["reclassify", "--db", dbs], &[]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("re-analysed 16 messages"), "{text}");
    assert!(text.contains("5 messages unparsed → bounce"), "{text}");
    assert!(text.contains("5 addresses (none) → blocked"), "{text}");
    assert!(text.contains("1 addresses hard → soft"), "{text}");
    assert!(
        text.contains("1 addresses suppressed(hard) → suppressed(soft_limit)"),
        "{text}"
    );
    assert_eq!(projection(&db), good);

    let out = rebound(&["reclassify", "--db", dbs, "--since", "2999-01-01"], &[]);
    assert!(
        stdout(&out).contains("re-analysed 0 messages"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn explain_and_reactivate_are_audited_and_survive_reclassify() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    let dbs = db.to_str().unwrap();
    assert!(ingest(&db, &[samples()]).status.success());

    let out = rebound(&["explain", "--db", dbs, "Bruno@Example.net"], &[]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("suppressed (soft_limit)"), "{text}");
    assert!(
        text.contains("rule soft_retry") && text.contains("rule soft_limit_count"),
        "{text}"
    );
    assert!(text.contains("Mailbox full, quota exceeded"), "{text}");
    assert!(text.contains("soft-mailbox-full-3.eml"), "{text}");
    assert_eq!(
        rebound(&["explain", "--db", dbs, "nobody@example.org"], &[])
            .status
            .code(),
        Some(1)
    );

    // Quarantined and soft-limited: no force needed.
    assert!(
        rebound(&["reactivate", "--db", dbs, "carla@gmail.com"], &[])
            .status
            .success()
    );
    assert!(
        rebound(&["reactivate", "--db", dbs, "bruno@example.net"], &[])
            .status
            .success()
    );
    // Hard: refused without --force, done with it.
    let out = rebound(&["reactivate", "--db", dbs, "ana@example.org"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    let out = rebound(
        &[
            "reactivate",
            "--db",
            dbs,
            "ana@example.org",
            "--force",
            "--note",
            "customer confirmed",
        ],
        &[],
    );
    assert!(out.status.success());

    let conn = Connection::open(&db).unwrap();
    let states = || -> String {
        one(
            &conn,
            "SELECT group_concat(address || '=' || state, ',') FROM (SELECT * FROM addresses WHERE address IN ('ana@example.org', 'bruno@example.net', 'carla@gmail.com') ORDER BY address)",
        )
    };
    assert_eq!(
        states(),
        "ana@example.org=active,bruno@example.net=active,carla@gmail.com=active"
    );
    assert_eq!(
        one::<i64>(
            &conn,
            "SELECT count(*) FROM state_changes WHERE rule = 'manual_reactivate'"
        ),
        3
    );
    assert!(
        one::<String>(
            &conn,
            "SELECT note FROM events WHERE address = 'ana@example.org' AND kind = 'manual'"
        )
        .contains("customer confirmed")
    );
    assert!(
        stdout(&rebound(&["explain", "--db", dbs, "ana@example.org"], &[]))
            .contains("rule manual_reactivate")
    );

    // Operator actions are events: a full rebuild keeps them.
    assert!(rebound(&["reclassify", "--db", dbs], &[]).status.success());
    assert_eq!(
        states(),
        "ana@example.org=active,bruno@example.net=active,carla@gmail.com=active"
    );
}

#[test]
fn config_file_places_the_database_and_sets_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rebound.toml");
    // A soft limit of 2 suppresses eva after her second soft bounce... except that her
    // out-of-office reply in between proves her alive and resets the count.
    std::fs::write(&config, "[policy]\nsoft_limit = 2\n[policy.blocked]\nthreshold = 6\n\n[[mailbox]]\nname = \"later\"\nhost = \"imap.example.com\"\nusername = \"u\"\nauth = { method = \"password_env\", var = \"P\" }\n").unwrap();
    let out = rebound(
        &["ingest", "--config", config.to_str().unwrap()],
        &[samples()],
    );
    assert!(out.status.success());
    let db = dir.path().join("rebound.db");
    assert!(db.exists(), "rebound.db beside the config file");
    let conn = Connection::open(&db).unwrap();
    assert_eq!(
        one::<String>(
            &conn,
            "SELECT state || ' ' || suppression_reason FROM addresses WHERE address = 'bruno@example.net'"
        ),
        "suppressed soft_limit"
    );
    assert_eq!(
        one::<String>(
            &conn,
            "SELECT state FROM addresses WHERE address = 'eva@example.net'"
        ),
        "retry"
    );
    assert_eq!(
        one::<i64>(&conn, "SELECT count(*) FROM domain_pauses"),
        0,
        "threshold 6 not reached"
    );
    // Back to the default policy: the whole projection follows, with no new message.
    std::fs::write(&config, "").unwrap();
    let out = rebound(
        &["ingest", "--config", config.to_str().unwrap()],
        &[samples()],
    );
    assert!(stdout(&out).contains("0 new"));
    assert_eq!(
        one::<i64>(&conn, "SELECT count(*) FROM domain_pauses"),
        1,
        "default threshold 5 reached"
    );
    std::fs::write(&config, "[policy]\nsoft_limitt = 2\n").unwrap();
    assert_eq!(
        rebound(
            &["ingest", "--config", config.to_str().unwrap()],
            &[samples()]
        )
        .status
        .code(),
        Some(2)
    );
}

#[test]
fn invalid_addresses_flag_the_stream_that_mailed_them() {
    // The expectation comes from `classify --json` (the analysis' own account of each returned
    // original's sender), the figures from the view over what `ingest` stored.
    let mail = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/mail");
    let classified = rebound(&["classify", "--json"], std::slice::from_ref(&mail));
    let mut expected: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for line in stdout(&classified).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["kind"] != "bounce" {
            continue;
        }
        let source = v["original"]["from"]
            .as_str()
            .map_or("(unknown)".to_string(), str::to_ascii_lowercase);
        for r in v["recipients"].as_array().unwrap() {
            if r["label"] == "invalid" {
                let address = r["address"].as_str().unwrap().to_ascii_lowercase();
                expected.entry(source.clone()).or_default().insert(address);
            }
        }
    }
    assert!(!expected.is_empty(), "testdata has invalid addresses");

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    assert!(ingest(&db, &[mail]).status.success());
    let conn = Connection::open(&db).unwrap();
    let mut st = conn
        .prepare("SELECT source, invalid_addresses, invalid_examples FROM v_list_sources")
        .unwrap();
    let rows: Vec<(String, i64, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let got: std::collections::BTreeMap<String, usize> = rows
        .iter()
        .map(|(s, n, _)| (s.clone(), *n as usize))
        .collect();
    let want: std::collections::BTreeMap<String, usize> =
        expected.iter().map(|(s, a)| (s.clone(), a.len())).collect();
    assert_eq!(got, want);
    for (source, _, examples) in &rows {
        let listed: Vec<&str> = examples.split(", ").collect();
        assert!(listed.len() <= 5, "{examples}");
        assert!(
            listed.iter().all(|a| expected[source].contains(*a)),
            "examples are that source's invalid addresses: {examples}"
        );
    }
}

/// The shared corpus of written samples, as a user would ingest it.
fn mail_samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/mail")
}

#[test]
fn phase_original_recipient_and_challenges_reach_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let out = ingest(&db, &[mail_samples()]);
    assert!(out.status.success());
    let conn = Connection::open(&db).unwrap();

    // An ORCPT that differs from the final recipient keys the event; both are kept.
    assert_eq!(
        one::<String>(
            &conn,
            "SELECT address || ' ' || final_recipient || ' ' || phase || ' ' || label FROM events
             WHERE original_recipient = 'sales+news@example.com'"
        ),
        "sales+news@example.com ines.moreau@example.com end_of_data soft"
    );
    // A refusal in reply to MAIL FROM is a refusal of the sender, whatever it said.
    assert_eq!(
        one::<i64>(
            &conn,
            "SELECT count(*) FROM events WHERE phase = 'mail_from' AND kind = 'bounce' AND label <> 'blocked'"
        ),
        0
    );
    assert!(
        one::<i64>(
            &conn,
            "SELECT count(*) FROM events WHERE phase = 'mail_from' AND kind = 'bounce'"
        ) >= 3
    );
    // v_why shows the phase next to the verdict.
    assert_eq!(
        one::<String>(
            &conn,
            "SELECT phase FROM v_why WHERE address = 'anders.berg@example.org' AND kind = 'bounce'"
        ),
        "connect"
    );
    // Challenge-response requests are stored, and count against no address.
    assert!(
        one::<i64>(
            &conn,
            "SELECT count(*) FROM messages WHERE kind = 'challenge'"
        ) >= 5
    );
    assert_eq!(
        one::<i64>(
            &conn,
            "SELECT count(*) FROM events e JOIN messages m ON m.id = e.message_id WHERE m.kind = 'challenge' AND e.role = 'recipient'"
        ),
        0
    );
    assert_eq!(
        one::<String>(
            &conn,
            "SELECT state FROM addresses WHERE address = 'erik.holm@example.net'
             UNION ALL SELECT 'absent' LIMIT 1"
        ),
        "absent",
        "the DSN-shaped challenge's recipient is not bounced"
    );
    // A notice in no known template, naming only a local part, still suppresses the address
    // the original was sent to.
    assert_eq!(
        one::<String>(
            &conn,
            "SELECT state || ' ' || suppression_reason FROM addresses WHERE address = 'mateo.ruiz@example.net'"
        ),
        "suppressed hard"
    );

    // explain shows the phase and the other address.
    let explained = stdout(&rebound(
        &[
            "explain",
            "--db",
            db.to_str().unwrap(),
            "sales+news@example.com",
        ],
        &[],
    ));
    assert!(
        explained.contains("failed at the end of the data")
            && explained.contains("final recipient ines.moreau@example.com"),
        "{explained}"
    );
}
