//! What an operator meets around a poll, against the real Dovecot: processes started together,
//! secrets kept private, errors and logs a person can act on, runs that died, `rebound check`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn one<T: rusqlite::types::FromSql>(db: &Path, sql: &str) -> T {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Several polls started together on a ledger that does not exist yet: `poll` opens the ledger
/// before it takes the mailbox's lock, so all of them create the schema at once.
#[tokio::test(flavor = "multi_thread")]
async fn polls_started_together_on_a_new_ledger_all_succeed() {
    let user = server().add_user("together");
    let mail: Vec<_> = (0..5)
        .map(|n| bounce(1100 + n, &format!("t{n}@example.org")))
        .collect();
    append(&user, "INBOX", &mail).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &[mailbox_toml(dir.path(), "together", &user, Mode::Plain, "")],
    );
    let children: Vec<_> = (0..8)
        .map(|_| {
            Command::new(rebound_bin())
                .args(["poll", "--config", cfg.to_str().unwrap()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}\n{}{}",
            out.status,
            stdout(&out),
            stderr(&out)
        );
    }
    let db = dir.path().join("rebound.db");
    assert_eq!(stored_uids(&db, "together"), vec![1, 2, 3, 4, 5]);
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM runs WHERE ok = 1"), 8);
}

/// A password file other users can read works, with a warning that says how to fix it; a
/// private one gives no warning.
#[tokio::test(flavor = "multi_thread")]
async fn a_password_file_readable_by_others_is_warned_about() {
    let user = server().add_user("pwmode");
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &[mailbox_toml(dir.path(), "pwmode", &user, Mode::Plain, "")],
    );
    let pw = dir.path().join("pwmode.pw");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = rebound(&["poll", "--config", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "password_file {} can be read by every local user (mode 0644): chmod 600",
            pw.display()
        )),
        "{err}"
    );
    assert_eq!(err.matches("can be read by").count(), 1, "once: {err}");

    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = rebound(&["poll", "--config", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("can be read by"), "{}", stderr(&out));
}

/// True while `pid` is a live process (a zombie waiting for its parent counts as gone).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A password command that hangs is stopped at the timeout with everything it started: no
/// stray process is left behind (killing `sh` alone left its children running).
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_secret_command_leaves_no_process_behind() {
    let user = server().add_user("hangcmd");
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    let table = mailbox_toml(dir.path(), "hangcmd", &user, Mode::Plain, "attempts = 1\n")
        .replace("timeout_secs = 10", "timeout_secs = 1");
    let pw_line = table
        .lines()
        .find(|l| l.starts_with("auth ="))
        .unwrap()
        .to_string();
    let table = table.replace(
        &pw_line,
        &format!(
            "auth = {{ method = \"password_command\", command = \"sleep 300 >/dev/null 2>&1 & echo $! > {}; wait\" }}",
            pidfile.display()
        ),
    );
    let cfg = write_config(dir.path(), &[table]);
    let out = rebound(&["poll", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("did not finish within 1 s"),
        "{}",
        stderr(&out)
    );
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while alive(pid) {
        if std::time::Instant::now() > deadline {
            // Do not leave it behind ourselves.
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("the command's child {pid} survived rebound");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A running `rebound watch`, killed if a test fails before it is stopped.
struct Watch(std::process::Child);

impl Watch {
    fn start(cfg: &Path, mailbox: &str) -> Watch {
        Watch(
            Command::new(rebound_bin())
                .args([
                    "watch",
                    "--config",
                    cfg.to_str().unwrap(),
                    "--mailbox",
                    mailbox,
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    }

    /// Sends a signal and waits for the exit.
    fn signal(&mut self, sig: &str) -> std::process::ExitStatus {
        Command::new("kill")
            .args([sig, &self.0.id().to_string()])
            .status()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s;
            }
            assert!(std::time::Instant::now() < deadline, "watch did not stop");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `(id, heartbeat_at, finished_at, aborted_at, ok, errors)` of a mailbox's runs, by id.
type RunRow = (
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
);

fn runs(db: &Path, mailbox: &str) -> Vec<RunRow> {
    let Ok(conn) = rusqlite::Connection::open(db) else {
        return Vec::new();
    };
    let Ok(mut st) = conn.prepare(
        "SELECT id, heartbeat_at, finished_at, aborted_at, ok, errors FROM runs WHERE mailbox = ?1 ORDER BY id",
    ) else {
        return Vec::new();
    };
    st.query_map([mailbox], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// `watch` keeps "when did this mailbox last run fine" current while nothing arrives (a
/// heartbeat at every IDLE round); killed outright, it leaves its run open, and the next run
/// of any mailbox marks it aborted, but never while the watch is alive.
#[tokio::test(flavor = "multi_thread")]
async fn a_watch_beats_and_a_dead_one_is_marked_aborted() {
    let (wu, pu) = (server().add_user("beating"), server().add_user("bystander"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &[
            mailbox_toml(
                dir.path(),
                "beating",
                &wu,
                Mode::Plain,
                "poll_interval_secs = 1\n",
            ),
            mailbox_toml(dir.path(), "bystander", &pu, Mode::Plain, ""),
        ],
    );
    let db = dir.path().join("rebound.db");
    let mut watch = Watch::start(&cfg, "beating");
    wait_until("a first heartbeat", 20, || {
        runs(&db, "beating").first().is_some_and(|r| r.1.is_some())
    });
    let first = runs(&db, "beating")[0].1.clone();
    wait_until("a later heartbeat with no mail arriving", 20, || {
        runs(&db, "beating")[0].1 != first
    });
    let open = runs(&db, "beating");
    assert_eq!(open.len(), 1, "one open run for the one folder: {open:?}");
    assert_eq!(open[0].2, None, "still running");

    // Another mailbox's poll while the watch lives: its run is left alone.
    let out = rebound(&[
        "poll",
        "--config",
        cfg.to_str().unwrap(),
        "--mailbox",
        "bystander",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        runs(&db, "beating")[0].3,
        None,
        "a live watch is not aborted"
    );

    watch.signal("-KILL");
    let out = rebound(&[
        "poll",
        "--config",
        cfg.to_str().unwrap(),
        "--mailbox",
        "bystander",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ended without finishing"),
        "{}",
        stderr(&out)
    );
    let dead = &runs(&db, "beating")[0];
    assert!(dead.3.is_some(), "aborted_at is set: {dead:?}");
    assert_eq!(
        dead.2, None,
        "finished_at stays empty: nobody saw it finish"
    );
    assert_eq!(dead.4, Some(0));
    assert!(
        dead.5.as_deref().unwrap_or("").contains("aborted"),
        "{dead:?}"
    );
    // The health view tells the story.
    let aborted: i64 = one(
        &db,
        "SELECT aborted_runs FROM v_mailbox_runs WHERE mailbox = 'beating'",
    );
    assert_eq!(aborted, 1);
}

/// A run the ledger cannot record is a failed run: exit 1, with a sentence, for `poll` (start
/// and end of the run) and `watch` (heartbeats).
#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_cannot_be_recorded_is_not_a_success() {
    let user = server().add_user("unrecorded");
    append(&user, "INBOX", &[bounce(1200, "u@example.org")]).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &[mailbox_toml(
            dir.path(),
            "unrecorded",
            &user,
            Mode::Plain,
            "poll_interval_secs = 1\n",
        )],
    );
    let cfg_s = cfg.to_str().unwrap();
    let db = dir.path().join("rebound.db");
    let out = rebound(&["poll", "--config", cfg_s]);
    assert!(out.status.success(), "{}", stderr(&out));
    let conn = rusqlite::Connection::open(&db).unwrap();

    // The end of a run cannot be written (a full disk, simulated).
    conn.execute_batch(
        "CREATE TRIGGER no_end BEFORE UPDATE OF finished_at ON runs BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END;",
    )
    .unwrap();
    let out = rebound(&["poll", "--config", cfg_s]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("could not record the end of run"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("unrecorded: FAILED"),
        "{}",
        stdout(&out)
    );

    // Nor its start.
    conn.execute_batch(
        "DROP TRIGGER no_end; CREATE TRIGGER no_start BEFORE INSERT ON runs BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END;",
    )
    .unwrap();
    let out = rebound(&["poll", "--config", cfg_s]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("could not record the run"),
        "{}",
        stderr(&out)
    );

    // Nor a watch's heartbeat: the watch goes on, and says so at the end.
    conn.execute_batch(
        "DROP TRIGGER no_start; CREATE TRIGGER no_beat BEFORE UPDATE OF heartbeat_at ON runs WHEN NEW.finished_at IS NULL BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END;",
    )
    .unwrap();
    let mut watch = Watch::start(&cfg, "unrecorded");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let status = watch.signal("-TERM");
    let mut err = String::new();
    std::io::Read::read_to_string(watch.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("could not record the run"), "{err}");
}

/// What a poll of a self-signed server with the default config (no ca_file) prints: the
/// sentence that says what to do, once, no Debug dump, no colour codes (stderr is not a
/// terminal here); a missing folder likewise.
#[tokio::test(flavor = "multi_thread")]
async fn failures_are_sentences_printed_once() {
    let user = server().add_user("sentences");
    let dir = tempfile::tempdir().unwrap();
    let selfsigned = mailbox_toml(dir.path(), "selfsigned", &user, Mode::Implicit, "")
        .lines()
        .filter(|l| !l.starts_with("ca_file"))
        .collect::<Vec<_>>()
        .join("\n");
    let nofolder = mailbox_toml(
        dir.path(),
        "nofolder",
        &user,
        Mode::Plain,
        "folders = [\"INBOX\", \"Bounces\"]\nattempts = 1\n",
    );
    let cfg = write_config(dir.path(), &[selfsigned, nofolder]);
    let out = Command::new(rebound_bin())
        .args(["poll", "--config", cfg.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let (err, text) = (stderr(&out), stdout(&out));
    assert_eq!(out.status.code(), Some(1), "{err}");
    let sentence = "the server's certificate is not signed by a trusted CA: set ca_file =";
    assert_eq!(
        err.matches(sentence).count(),
        1,
        "once, after 3 attempts: {err}"
    );
    assert!(!text.contains(sentence), "not repeated on stdout: {text}");
    assert!(
        err.contains("mailbox selfsigned: TLS handshake with localhost: "),
        "{err}"
    );
    assert!(
        err.contains(
            "mailbox nofolder: folder Bounces: no folder \"Bounces\" on the server: create it there, or correct or remove it in folders"
        ),
        "{err}"
    );
    for dump in ["{", "Some(", "Outcome", "Context", "\x1b["] {
        assert!(!err.contains(dump), "{dump:?} in {err}");
    }
    assert!(text.contains("selfsigned: FAILED"), "{text}");

    // NO_COLOR is honoured even where colour would be allowed; here it changes nothing, and
    // no escape code appears either way.
    let out = Command::new(rebound_bin())
        .args([
            "poll",
            "--config",
            cfg.to_str().unwrap(),
            "--mailbox",
            "nofolder",
        ])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!stderr(&out).contains('\x1b'), "{}", stderr(&out));
}

/// `--log-format json`: every stderr line is one JSON object, with the mailbox, folder and run
/// it is about, for poll and watch.
#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_one_object_per_line_with_their_context() {
    let user = server().add_user("jsonlogs");
    append(&user, "INBOX", &[bounce(1300, "j@example.org")]).await;
    let dir = tempfile::tempdir().unwrap();
    let good = mailbox_toml(
        dir.path(),
        "jsonlogs",
        &user,
        Mode::Plain,
        "poll_interval_secs = 1\n",
    );
    let bad = mailbox_toml(dir.path(), "badjson", &user, Mode::Plain, "attempts = 2\n").replace(
        "auth = { method = \"password_file\"",
        "auth = { method = \"password_command\", command = \"echo nope\" }\n#",
    );
    let cfg = write_config(dir.path(), &[good, bad]);
    let out = Command::new(rebound_bin())
        .args([
            "poll",
            "-v",
            "--log-format",
            "json",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines = json_lines(&stderr(&out));
    assert!(lines.len() >= 2, "{lines:?}");
    let failure = lines
        .iter()
        .find(|l| l["level"] == "error")
        .unwrap_or_else(|| panic!("no error line: {lines:?}"));
    assert_eq!(failure["mailbox"], "badjson");
    assert!(failure["run"].as_i64().is_some(), "{failure}");
    assert!(
        failure["message"]
            .as_str()
            .unwrap()
            .starts_with("authentication failed for jsonlogs"),
        "{failure}"
    );
    let search = lines
        .iter()
        .find(|l| l["mailbox"] == "jsonlogs" && l["message"] == "search done")
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(search["folder"], "INBOX");
    assert!(search["run"].as_i64().is_some());
    assert!(search["time"].as_str().unwrap().ends_with('Z'));

    // A fatal error (exit 2) is a JSON line too.
    let out = rebound(&[
        "poll",
        "--log-format",
        "json",
        "--config",
        "/nonexistent/rebound.toml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let lines = json_lines(&stderr(&out));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["level"], "error");

    // watch: its folder task's lines name the folder and the run being recorded.
    let child = Command::new(rebound_bin())
        .args([
            "watch",
            "-v",
            "--log-format",
            "json",
            "--config",
            cfg.to_str().unwrap(),
            "--mailbox",
            "jsonlogs",
        ])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut watch = Watch(child);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(watch.signal("-TERM").success());
    let mut err = String::new();
    std::io::Read::read_to_string(watch.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    let lines = json_lines(&err);
    assert!(
        lines.iter().any(|l| l["mailbox"] == "jsonlogs"
            && l["folder"] == "INBOX"
            && l["run"].as_i64().is_some()),
        "{err}"
    );
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            assert!(v.is_object(), "{l}");
            assert!(v["level"].is_string() && v["message"].is_string(), "{l}");
            v
        })
        .collect()
}

/// `rebound check` on a good config: every line ok, exit 0, the secret never printed, nothing
/// created; on a wrong password and a missing folder: FAIL lines that say what to change.
#[tokio::test(flavor = "multi_thread")]
async fn check_reports_one_line_per_check_with_the_fix() {
    let user = server().add_user("checked");
    append(&user, "Bounces", &[bounce(1400, "c@example.org")]).await;
    let dir = tempfile::tempdir().unwrap();
    let good = mailbox_toml(
        dir.path(),
        "checked",
        &user,
        Mode::Starttls,
        "folders = [\"INBOX\", \"Bounces\"]\naction = \"move\"\n",
    );
    let cfg = write_config(dir.path(), std::slice::from_ref(&good));
    let db = dir.path().join("rebound.db");
    let out = rebound(&["check", "--config", cfg.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for expected in [
        "ok    config ",
        "does not exist yet; its directory is writable",
        "ok    mailbox checked: secret from password_file",
        "ok    mailbox checked: connected to localhost:",
        "ok    mailbox checked: logged in as checked",
        "ok    mailbox checked: folder \"INBOX\" exists (0 messages)",
        "ok    mailbox checked: folder \"Bounces\" exists (1 message)",
        "move_to folder \"Processed/Bounces\" does not exist yet",
    ] {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }
    assert!(!text.contains("FAIL"), "{text}");
    assert!(!text.contains(&user.password) && !stderr(&out).contains(&user.password));
    assert!(!db.exists(), "check creates no ledger");

    // An existing ledger is opened for writing, not changed.
    let polled = rebound(&["poll", "--config", cfg.to_str().unwrap()]);
    assert!(polled.status.success(), "{}", stderr(&polled));
    let out = rebound(&["check", "--config", cfg.to_str().unwrap()]);
    assert!(
        stdout(&out).contains("writable (schema version"),
        "{}",
        stdout(&out)
    );

    // A wrong password, and a folder that does not exist.
    let wrong = mailbox_toml(dir.path(), "wrongpw", &user, Mode::Plain, "")
        .lines()
        .map(|l| {
            if l.starts_with("auth =") {
                "auth = { method = \"password_command\", command = \"echo not-the-S3cret\" }"
                    .to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let missing = mailbox_toml(
        dir.path(),
        "missing",
        &user,
        Mode::Implicit,
        "folders = [\"INBOX\", \"Rückläufer\"]\n",
    );
    let cfg = write_config(dir.path(), &[good, wrong, missing]);
    let out = rebound(&["check", "--config", cfg.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "FAIL  mailbox wrongpw: authentication failed for checked on 127.0.0.1 (the server answered NO"
        ) && text.contains("check username and the password printed by password_command"),
        "{text}"
    );
    assert!(
        text.contains(
            "FAIL  mailbox missing: folder Rückläufer: no folder \"Rückläufer\" on the server: create it there, or correct or remove it in folders"
        ),
        "{text}"
    );
    assert!(
        text.contains("ok    mailbox missing: folder \"INBOX\" exists"),
        "{text}"
    );
    assert_eq!(text.matches("FAIL  ").count(), 2, "{text}");
    assert!(
        !text.contains("S3cret") && !stderr(&out).contains("S3cret"),
        "{text}"
    );
}
