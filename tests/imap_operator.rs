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
