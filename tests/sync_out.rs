//! The way out of the ledger, through the real path (config → CLI → SQLite): `export` and its
//! cursor, the Postfix map, `suppress`, `explain --json`, hooks, the metrics file, retention.

mod prometheus_text;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rusqlite::Connection;

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/ledger")
}

fn rebound(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_rebound"))
        .args(args)
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

fn ok(args: &[&str]) -> Output {
    let out = rebound(args);
    assert!(out.status.success(), "rebound {args:?} failed");
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn one<T: rusqlite::types::FromSql>(db: &Path, sql: &str) -> T {
    Connection::open(db)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn jsonl(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The one `cursor: N` line an export prints on stderr.
fn printed_cursor(o: &Output) -> i64 {
    let text = stderr(o);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("cursor: "))
        .map(|l| l.strip_prefix("cursor: ").unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{}", stderr(o));
    lines[0].parse().unwrap()
}

/// A hard bounce (a copy of the shipped sample) for another address.
fn hard_bounce_for(dir: &Path, address: &str) -> PathBuf {
    let text = std::fs::read_to_string(samples().join("hard-user-unknown.eml")).unwrap();
    let path = dir.join(format!("{address}.eml"));
    std::fs::write(
        &path,
        text.replace("ana@example.org", address)
            .replace("Ana@Example.org", address),
    )
    .unwrap();
    path
}

/// suppress → export → reactivate → export --since shows the removal; a new bounce shows as an
/// addition; nothing twice; every format says the same.
#[test]
fn the_export_cursor_round_trips_through_suppress_and_reactivate() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    let dbs = db.to_str().unwrap();
    let cursor_file = dir.path().join("sync.cursor");
    let cf = cursor_file.to_str().unwrap();
    ok(&["ingest", "--db", dbs, samples().to_str().unwrap()]);

    let out = ok(&[
        "suppress",
        "--db",
        dbs,
        "Carl@Example.org",
        "--reason",
        "manual",
        "--note",
        "asked by phone",
    ]);
    assert_eq!(
        stdout(&out),
        "carl@example.org: not in the ledger → suppressed (manual)\n"
    );

    // The first sync: the whole list, and a cursor file written.
    let out = ok(&["export", "--db", dbs, "--cursor-file", cf]);
    let first = jsonl(&stdout(&out));
    let listed: Vec<(&str, &str)> = first
        .iter()
        .map(|e| {
            (
                e["address"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("ana@example.org", "hard"),
            ("bruno@example.net", "soft_limit"),
            ("carl@example.org", "manual"),
            ("dora@isp.example", "complaint"),
            ("filipe@example.com", "unsubscribe"),
        ]
    );
    assert!(
        first
            .iter()
            .all(|e| e["op"] == "add" && e["state"] == "suppressed")
    );
    let carl = &first[2];
    assert_eq!(carl["rule"], "manual_suppress");
    assert!(carl["evidence"].as_i64().is_some() && carl["since"].as_str().is_some());
    assert!(
        !stderr(&out).contains("cursor:"),
        "the cursor goes to the file"
    );
    let c1: i64 = std::fs::read_to_string(&cursor_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(c1, one::<i64>(&db, "SELECT max(id) FROM suppression_log"));

    // Nothing changed: nothing printed, the cursor stays.
    let out = ok(&["export", "--db", dbs, "--cursor-file", cf]);
    assert_eq!(stdout(&out), "");

    // Reactivated: a removal, in every format.
    ok(&["reactivate", "--db", dbs, "carl@example.org", "--force"]);
    let out = ok(&[
        "export",
        "--db",
        dbs,
        "--since",
        &c1.to_string(),
        "--format",
        "csv",
    ]);
    let csv = stdout(&out);
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "op,address,state,reason,since,rule,evidence");
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(
        rows[1].starts_with("remove,carl@example.org,active,,")
            && rows[1].contains(",manual_reactivate,"),
        "{csv}"
    );
    let c2 = printed_cursor(&out);
    assert!(c2 > c1);
    let out = ok(&[
        "export",
        "--db",
        dbs,
        "--since",
        &c1.to_string(),
        "--format",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["op"], "remove");
    assert_eq!(json[0]["reason"], serde_json::Value::Null);
    let out = ok(&["export", "--db", dbs, "--cursor-file", cf]);
    let changes = jsonl(&stdout(&out));
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (
            &changes[0]["op"],
            &changes[0]["address"],
            &changes[0]["state"]
        ),
        (
            &serde_json::json!("remove"),
            &serde_json::json!("carl@example.org"),
            &serde_json::json!("active")
        )
    );
    // Given once: the cursor file moved on.
    assert_eq!(
        stdout(&ok(&["export", "--db", dbs, "--cursor-file", cf])),
        ""
    );

    // New mail suppressing someone: an addition. A reason filter sees only its reasons.
    let zed = hard_bounce_for(dir.path(), "zed@example.org");
    ok(&["ingest", "--db", dbs, zed.to_str().unwrap()]);
    let out = ok(&[
        "export",
        "--db",
        dbs,
        "--cursor-file",
        cf,
        "--reason",
        "complaint,unsubscribe",
    ]);
    assert_eq!(stdout(&out), "", "zed is hard, not listed");
    let out = ok(&[
        "export",
        "--db",
        dbs,
        "--since",
        &c2.to_string(),
        "--reason",
        "hard",
    ]);
    let changes = jsonl(&stdout(&out));
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (
            &changes[0]["op"],
            &changes[0]["address"],
            &changes[0]["rule"]
        ),
        (
            &serde_json::json!("add"),
            &serde_json::json!("zed@example.org"),
            &serde_json::json!("hard")
        )
    );

    // --output: the file, replaced whole; nothing on stdout; no temporary file left.
    let list = dir.path().join("out/list.jsonl");
    std::fs::create_dir(list.parent().unwrap()).unwrap();
    let out = ok(&["export", "--db", dbs, "--output", list.to_str().unwrap()]);
    assert_eq!(stdout(&out), "");
    assert_eq!(jsonl(&std::fs::read_to_string(&list).unwrap()).len(), 5);
    let names: Vec<_> = std::fs::read_dir(list.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["list.jsonl"]);

    // A cursor from elsewhere, or a file holding none: refused, nothing printed.
    let out = rebound(&["export", "--db", dbs, "--since", "999999"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("beyond the end"), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    std::fs::write(&cursor_file, "yesterday\n").unwrap();
    let out = rebound(&["export", "--db", dbs, "--cursor-file", cf]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("holds no cursor"), "{}", stderr(&out));
}

/// Where `postmap` is: `REBOUND_TEST_POSTMAP` (a program to run instead), else the usual places.
fn postmap() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("REBOUND_TEST_POSTMAP") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join("postmap"))
        .find(|p| p.is_file())
}

/// The Postfix format is an access(5) map of the whole list (with a cursor too), that postmap
/// accepts and answers from.
#[test]
fn the_postfix_map_is_the_whole_list_and_postmap_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    let dbs = db.to_str().unwrap();
    ok(&["ingest", "--db", dbs, samples().to_str().unwrap()]);
    ok(&[
        "suppress",
        "--db",
        dbs,
        "carl@example.org",
        "--reason",
        "complaint",
    ]);
    let map = dir.path().join("rebound_access");
    let out = ok(&[
        "export",
        "--db",
        dbs,
        "--format",
        "postfix",
        "--output",
        map.to_str().unwrap(),
    ]);
    let cursor = printed_cursor(&out);
    let text = std::fs::read_to_string(&map).unwrap();
    assert_eq!(
        text,
        "ana@example.org REJECT 5.1.1 suppressed: hard bounce\n\
         bruno@example.net REJECT 5.2.0 suppressed: repeated soft bounces\n\
         carl@example.org REJECT 5.7.1 suppressed: spam complaint\n\
         dora@isp.example REJECT 5.7.1 suppressed: spam complaint\n\
         filipe@example.com REJECT 5.7.1 suppressed: unsubscribed\n"
    );
    // With a cursor (nothing changed since): still the whole map, for postmap.
    let out = ok(&[
        "export",
        "--db",
        dbs,
        "--format",
        "postfix",
        "--since",
        &cursor.to_string(),
    ]);
    assert_eq!(stdout(&out), text);

    let Some(postmap) = postmap() else {
        eprintln!(
            "SKIPPED the postmap half of this test: postmap is not installed (apt-get install postfix, or set REBOUND_TEST_POSTMAP)"
        );
        return;
    };
    let run = |args: &[&str]| {
        Command::new(&postmap)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", postmap.display()))
    };
    let table = format!("hash:{}", map.display());
    let built = run(&[&table]);
    assert!(built.status.success(), "postmap: {}", stderr(&built));
    let found = run(&["-q", "CARL@example.org", &table]);
    assert_eq!(stdout(&found), "REJECT 5.7.1 suppressed: spam complaint\n");
    let found = run(&["-q", "ana@example.org", &table]);
    assert_eq!(stdout(&found), "REJECT 5.1.1 suppressed: hard bounce\n");
    let missing = run(&["-q", "eva@example.net", &table]);
    assert_eq!(
        missing.status.code(),
        Some(1),
        "not suppressed: not in the map"
    );
}

/// `explain --json`: one object with the address row, its events (phase, rule, evidence) and
/// state changes; an operator's suppression is there with its note.
#[test]
fn explain_json_has_stable_fields_and_operator_actions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    let dbs = db.to_str().unwrap();
    ok(&["ingest", "--db", dbs, samples().to_str().unwrap()]);
    let out = ok(&["explain", "--db", dbs, "--json", "Ana@Example.org"]);
    assert_eq!(stdout(&out).lines().count(), 1);
    let x: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(x["address"], "ana@example.org");
    assert_eq!(
        (&x["state"], &x["suppression_reason"]),
        (&"suppressed".into(), &"hard".into())
    );
    let e = &x["events"][0];
    assert_eq!(e["kind"], "bounce");
    assert!(
        e.as_object().unwrap().contains_key("phase"),
        "null when the report does not say"
    );
    assert_eq!(e["status"], "5.1.1");
    assert!(e["rule"].as_str().unwrap().contains("user unknown"), "{e}");
    assert!(e["diagnostic"].as_str().unwrap().contains("User unknown"));
    assert!(
        e["message"]["source_path"]
            .as_str()
            .unwrap()
            .ends_with("hard-user-unknown.eml")
    );
    assert_eq!(e["message"]["raw_purged_at"], serde_json::Value::Null);
    assert_eq!(x["state_event"], e["id"]);
    let sc = &x["state_changes"][0];
    assert_eq!(
        (&sc["from"], &sc["to"], &sc["rule"]),
        (&"active".into(), &"suppressed".into(), &"hard".into())
    );
    assert_eq!(sc["event"], e["id"]);

    // The phase, and both addresses a DSN names.
    let mail = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/mail");
    ok(&["ingest", "--db", dbs, mail.to_str().unwrap()]);
    let out = ok(&["explain", "--db", dbs, "--json", "sales+news@example.com"]);
    let x: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let e = &x["events"][0];
    assert_eq!(
        (&e["phase"], &e["final_recipient"], &e["label"]),
        (
            &"end_of_data".into(),
            &"ines.moreau@example.com".into(),
            &"soft".into()
        )
    );

    ok(&[
        "suppress",
        "--db",
        dbs,
        "eva@example.net",
        "--reason",
        "unsubscribe",
        "--note",
        "wrote to support",
    ]);
    let out = ok(&["explain", "--db", dbs, "--json", "eva@example.net"]);
    let x: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let last = x["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&last["role"], &last["action"]),
        (&"operator".into(), &"suppress".into())
    );
    assert_eq!(
        (&last["note"], &last["suppression_reason"]),
        (&"wrote to support".into(), &"unsubscribe".into())
    );
    assert_eq!(last["message"], serde_json::Value::Null);
    let change = x["state_changes"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(change["rule"], "manual_suppress");
    assert!(
        change["detail"]
            .as_str()
            .unwrap()
            .contains("wrote to support")
    );
    // Permanent: a reactivation needs --force.
    let out = rebound(&["reactivate", "--db", dbs, "eva@example.net"]);
    assert_eq!(out.status.code(), Some(1));
    // Unknown: exit 1, nothing on stdout.
    let out = rebound(&["explain", "--db", dbs, "--json", "nobody@example.org"]);
    assert_eq!((out.status.code(), stdout(&out)), (Some(1), String::new()));
}

/// A config file in `dir` with the database there and these extra tables.
fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("rebound.toml");
    std::fs::write(
        &path,
        format!(
            "[database]\npath = \"{}\"\n{extra}",
            dir.join("rebound.db").display()
        ),
    )
    .unwrap();
    path
}

fn executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A hook that fails once gets the same changes on the next run, and after its success never
/// again: exactly once. Its argv is passed as is, its input is one JSON object per change.
#[test]
fn a_hook_that_fails_once_gets_its_changes_on_the_next_run_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hook = d.join("sync hook.sh");
    executable(
        &hook,
        "#!/bin/sh\n\
         # Fails (without reading) the first time; then keeps what it is given, with its argument.\n\
         dir=$(dirname \"$0\")\n\
         if [ ! -e \"$dir/failed-once\" ]; then touch \"$dir/failed-once\"; echo 'hook: not today' >&2; exit 3; fi\n\
         [ \"$1\" = \"two words\" ] || exit 9\n\
         cat >> \"$dir/received.jsonl\"\n",
    );
    let cfg = config(
        d,
        &format!(
            "[hooks]\non_change = [[\"{}\", \"two words\"]]\n",
            hook.display()
        ),
    );
    let cfgs = cfg.to_str().unwrap();
    let db = d.join("rebound.db");
    let received = d.join("received.jsonl");

    let out = ok(&["ingest", "--config", cfgs, samples().to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(
        err.matches("will be given to it again on the next run")
            .count(),
        1,
        "logged once: {err}"
    );
    assert!(err.contains("failed (exit status: 3)"), "{err}");
    assert!(!received.exists());
    let logged: i64 = one(&db, "SELECT count(*) FROM suppression_log");
    assert!(logged >= 5, "{logged}");
    assert_eq!(one::<i64>(&db, "SELECT last_id FROM hook_cursors"), 0);
    assert!(one::<String>(&db, "SELECT last_error FROM hook_cursors").contains("exit status: 3"));

    // The next run has no new mail: the hook gets every change, once, in order.
    let out = ok(&["ingest", "--config", cfgs, samples().to_str().unwrap()]);
    assert!(!stderr(&out).contains("hook"), "{}", stderr(&out));
    let rows = jsonl(&std::fs::read_to_string(&received).unwrap());
    let ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, (1..=logged).collect::<Vec<_>>());
    let ana = rows
        .iter()
        .find(|r| r["address"] == "ana@example.org")
        .unwrap();
    assert_eq!(
        (
            &ana["old_state"],
            &ana["new_state"],
            &ana["reason"],
            &ana["rule"],
            &ana["mailbox"]
        ),
        (
            &"active".into(),
            &"suppressed".into(),
            &"hard".into(),
            &"hard".into(),
            &"files".into()
        )
    );
    assert_eq!(ana["event_time"], "2026-11-02T10:00:05Z");
    assert_eq!(one::<i64>(&db, "SELECT last_id FROM hook_cursors"), logged);
    assert_eq!(
        one::<Option<String>>(&db, "SELECT last_error FROM hook_cursors"),
        None
    );

    // Again: nothing new, nothing given twice.
    ok(&["ingest", "--config", cfgs, samples().to_str().unwrap()]);
    assert_eq!(
        jsonl(&std::fs::read_to_string(&received).unwrap()).len() as i64,
        logged
    );

    // A change made by an operator reaches the hook on the next run, alone.
    ok(&["reactivate", "--config", cfgs, "ana@example.org", "--force"]);
    ok(&["ingest", "--config", cfgs, samples().to_str().unwrap()]);
    let rows = jsonl(&std::fs::read_to_string(&received).unwrap());
    assert_eq!(rows.len() as i64, logged + 1);
    let last = rows.last().unwrap();
    assert_eq!(
        (
            &last["address"],
            &last["new_state"],
            &last["rule"],
            &last["mailbox"]
        ),
        (
            &"ana@example.org".into(),
            &"active".into(),
            &"manual_reactivate".into(),
            &serde_json::Value::Null
        )
    );
}

/// A hook that hangs is killed at its timeout with everything it started; the run stores
/// everything and ends; the hook keeps its changes for the next run.
#[test]
fn a_hanging_hook_is_killed_and_never_holds_up_ingestion() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hook = d.join("hang.sh");
    let pidfile = d.join("child.pid");
    executable(
        &hook,
        &format!(
            "#!/bin/sh\nsleep 300 &\necho $! > {}\nwait\n",
            pidfile.display()
        ),
    );
    let cfg = config(
        d,
        &format!(
            "[hooks]\non_change = [\"{}\"]\ntimeout_secs = 1\n",
            hook.display()
        ),
    );
    let out = ok(&[
        "ingest",
        "--config",
        cfg.to_str().unwrap(),
        samples().to_str().unwrap(),
    ]);
    assert!(
        stderr(&out).contains("did not finish within 1 s"),
        "{}",
        stderr(&out)
    );
    let db = d.join("rebound.db");
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM messages"), 16);
    assert_eq!(one::<i64>(&db, "SELECT last_id FROM hook_cursors"), 0);
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
    };
    let start = std::time::Instant::now();
    while alive(pid) && start.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!alive(pid), "the hook's child {pid} was killed with it");
}

/// The metrics file is Prometheus text that a strict reader accepts, and says what the ledger
/// holds.
#[test]
fn the_metrics_file_parses_as_prometheus_text_and_holds_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = config(d, "[hooks]\non_change = [\"/bin/false\"]\n");
    let cfgs = cfg.to_str().unwrap();
    let prom = d.join("textfile/rebound.prom");
    std::fs::create_dir(prom.parent().unwrap()).unwrap();
    let proms = prom.to_str().unwrap();
    ok(&[
        "ingest",
        "--config",
        cfgs,
        "--metrics-file",
        proms,
        samples().to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&prom).unwrap();
    let m = prometheus_text::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let v = |name: &str, labels: &[(&str, &str)]| {
        prometheus_text::value(&m, name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{text}"))
    };
    let db = d.join("rebound.db");
    for kind in [
        "bounce",
        "auto_reply",
        "complaint",
        "unsubscribe",
        "unparsed",
        "delay",
        "other",
    ] {
        let stored: i64 = one(
            &db,
            &format!("SELECT count(*) FROM messages WHERE kind = '{kind}'"),
        );
        assert_eq!(
            v("rebound_messages_total", &[("kind", kind)]),
            stored as f64,
            "{kind}"
        );
    }
    assert_eq!(
        v("rebound_bounced_recipients_total", &[("label", "hard")]),
        2.0
    );
    assert_eq!(
        v("rebound_bounced_recipients_total", &[("label", "blocked")]),
        5.0
    );
    assert_eq!(
        v(
            "rebound_addresses",
            &[("state", "suppressed"), ("reason", "hard")]
        ),
        1.0
    );
    assert_eq!(
        v(
            "rebound_addresses",
            &[("state", "suppressed"), ("reason", "manual")]
        ),
        0.0
    );
    assert_eq!(
        v(
            "rebound_addresses",
            &[("state", "quarantined"), ("reason", "")]
        ),
        1.0
    );
    let addresses: i64 = one(&db, "SELECT count(*) FROM addresses");
    let total: f64 = m
        .iter()
        .filter(|s| s.name == "rebound_addresses")
        .map(|s| s.value)
        .sum();
    assert_eq!(total, addresses as f64);
    assert_eq!(
        v("rebound_paused_domains", &[("reason", "blocked")]),
        0.0,
        "the 2026-11-02 pause is over"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    let last_ok = v(
        "rebound_last_success_timestamp_seconds",
        &[("mailbox", "files")],
    );
    assert!((now - last_ok).abs() < 120.0, "{last_ok} vs {now}");
    assert_eq!(v("rebound_errors_total", &[("mailbox", "files")]), 0.0);
    assert_eq!(v("rebound_run_errors", &[("command", "ingest")]), 0.0);
    assert!(v("rebound_run_duration_seconds", &[("command", "ingest")]) > 0.0);
    let logged: i64 = one(&db, "SELECT count(*) FROM suppression_log");
    assert_eq!(v("rebound_address_changes_total", &[]), logged as f64);
    assert_eq!(
        v("rebound_hook_pending_changes", &[("hook", "/bin/false")]),
        logged as f64,
        "the hook fails"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&prom).unwrap().permissions().mode() & 0o044,
            0o044,
            "the collector reads it"
        );
    }

    // Counters count new messages only: a rescan changes nothing.
    ok(&[
        "ingest",
        "--config",
        cfgs,
        "--metrics-file",
        proms,
        samples().to_str().unwrap(),
    ]);
    let again = prometheus_text::parse(&std::fs::read_to_string(&prom).unwrap()).unwrap();
    assert_eq!(
        prometheus_text::value(&again, "rebound_messages_total", &[("kind", "bounce")]),
        Some(12.0)
    );
}

/// Sets a file's modification time (what `ingest` takes as the message's arrival) `days` ago.
fn age(path: &Path, days: u64) {
    let when = std::time::SystemTime::now() - std::time::Duration::from_secs(days * 86400);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// Retention drops the raw bytes of old messages (auto-replies sooner), keeps every fact:
/// explain works, the projection is the same, show-raw says when, reclassify says how many it
/// could not re-derive, and the same bytes are still recognised.
#[test]
fn retention_drops_raw_bytes_and_keeps_explain_working() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mail = d.join("mail");
    std::fs::create_dir(&mail).unwrap();
    for entry in std::fs::read_dir(samples()).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, mail.join(p.file_name().unwrap())).unwrap();
    }
    // 100 days old: everything but two; the auto-reply and one bounce 40 days old.
    for entry in std::fs::read_dir(&mail).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let days = match name.as_str() {
            "auto-reply-eva.eml" | "complaint-dora.eml" => 40,
            _ => 100,
        };
        age(&p, days);
    }
    let cfg = config(d, "");
    let cfgs = cfg.to_str().unwrap();
    let db = d.join("rebound.db");
    ok(&["ingest", "--config", cfgs, mail.to_str().unwrap()]);
    let out = rebound(&["purge", "--config", cfgs]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no [retention]"), "{}", stderr(&out));
    let projection = |db: &Path| -> String {
        one(
            db,
            "SELECT group_concat(address || state || coalesce(suppression_reason, '') || attempts, ',')
             FROM (SELECT * FROM addresses ORDER BY address)",
        )
    };
    let before = projection(&db);
    let events_before: i64 = one(&db, "SELECT count(*) FROM events");

    let cfg = config(d, "[retention]\nraw_days = 90\nother_days = 30\n");
    let out = ok(&["purge", "--config", cfgs, "--dry-run"]);
    assert!(
        stdout(&out).contains("would purge the raw bytes of 15 messages"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("auto_reply=1"), "{}", stdout(&out));
    assert_eq!(
        one::<i64>(
            &db,
            "SELECT count(*) FROM messages WHERE raw_purged_at IS NOT NULL"
        ),
        0
    );
    let out = ok(&["purge", "--config", cfg.to_str().unwrap()]);
    assert!(
        stdout(&out).starts_with("purged the raw bytes of 15 messages"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        one::<String>(
            &db,
            "SELECT group_concat(source_path, ',') FROM messages WHERE raw_purged_at IS NULL"
        ),
        mail.join("complaint-dora.eml").to_str().unwrap(),
        "only the 40-day-old complaint keeps its bytes"
    );
    assert_eq!(
        one::<i64>(
            &db,
            "SELECT count(*) FROM messages WHERE raw_purged_at IS NOT NULL AND (length(raw) > 0 OR raw_size = 0 OR length(sha256) <> 64)"
        ),
        0,
        "bytes gone, size and hash kept"
    );
    assert_eq!(projection(&db), before);
    assert_eq!(
        one::<i64>(&db, "SELECT count(*) FROM events"),
        events_before
    );

    // explain still explains, and says the bytes are gone.
    let out = ok(&["explain", "--config", cfgs, "ana@example.org"]);
    assert!(
        stdout(&out).contains("hard-user-unknown.eml (raw bytes purged 20"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("User unknown") && stdout(&out).contains("rule hard"),
        "{}",
        stdout(&out)
    );
    let out = ok(&["explain", "--config", cfgs, "--json", "ana@example.org"]);
    let x: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(x["events"][0]["message"]["raw_purged_at"].is_string());
    assert_eq!(x["events"][0]["status"], "5.1.1");

    let id: i64 = one(
        &db,
        "SELECT id FROM messages WHERE source_path LIKE '%hard-user-unknown.eml'",
    );
    let out = rebound(&["show-raw", "--config", cfgs, &id.to_string()]);
    assert_eq!(out.status.code(), Some(2));
    let purged_at: String = one(
        &db,
        &format!("SELECT raw_purged_at FROM messages WHERE id = {id}"),
    );
    assert!(
        stderr(&out).contains(&format!("purged on {purged_at}")),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());

    let out = ok(&["reclassify", "--config", cfgs, "--all"]);
    assert!(
        stdout(&out).contains("re-analysed 1 messages"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("15 messages could not be re-derived"),
        "{}",
        stdout(&out)
    );
    assert_eq!(projection(&db), before);

    // The same files again: recognised by their hash.
    let out = ok(&["ingest", "--config", cfgs, mail.to_str().unwrap()]);
    assert!(
        stdout(&out).contains("0 new, 16 duplicates"),
        "{}",
        stdout(&out)
    );

    // A ledger whose config has retention purges at the end of every ingest.
    let other = d.join("other");
    std::fs::create_dir(&other).unwrap();
    let cfg2 = config(&other, "[retention]\nraw_days = 90\n");
    ok(&[
        "ingest",
        "--config",
        cfg2.to_str().unwrap(),
        mail.to_str().unwrap(),
    ]);
    assert_eq!(
        one::<i64>(
            &other.join("rebound.db"),
            "SELECT count(*) FROM messages WHERE raw_purged_at IS NOT NULL"
        ),
        14,
        "without other_days, the 40-day-old auto-reply keeps its bytes too"
    );
}
