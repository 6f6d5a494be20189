//! The way out through IMAP, against the real Dovecot: `poll` and `watch` run the hooks as
//! they commit and write the metrics file.

mod common;
mod prometheus_text;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A hook that appends what it is given to `received.jsonl` in `dir`.
fn recording_hook(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let hook = dir.join("record.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ncat >> {}\n",
            dir.join("received.jsonl").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    hook
}

fn received(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("received.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn metrics(path: &Path) -> Vec<prometheus_text::Sample> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    if text.is_empty() {
        return Vec::new();
    }
    prometheus_text::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poll_gives_its_changes_to_the_hooks_and_writes_metrics() {
    let user = server().add_user("syncpoll");
    append(
        &user,
        "INBOX",
        &[
            bounce(2101, "one@example.org"),
            bounce(2102, "two@example.org"),
            auto_reply(2101),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let hook = recording_hook(dir.path());
    let cfg = write_config(
        dir.path(),
        &[
            mailbox_toml(dir.path(), "syncpoll", &user, Mode::Plain, ""),
            format!("[hooks]\non_change = [\"{}\"]\n", hook.display()),
        ],
    );
    let prom = dir.path().join("rebound.prom");
    let out = rebound(&[
        "poll",
        "--config",
        cfg.to_str().unwrap(),
        "--metrics-file",
        prom.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = received(dir.path());
    let addresses: Vec<&str> = rows
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect();
    assert_eq!(addresses, ["one@example.org", "two@example.org"]);
    assert!(rows.iter().all(|r| r["mailbox"] == "syncpoll"
        && r["reason"] == "hard"
        && r["new_state"] == "suppressed"));

    let m = metrics(&prom);
    let v = |name: &str, labels: &[(&str, &str)]| prometheus_text::value(&m, name, labels);
    assert_eq!(
        v("rebound_messages_total", &[("kind", "bounce")]),
        Some(2.0)
    );
    assert_eq!(
        v("rebound_messages_total", &[("kind", "auto_reply")]),
        Some(1.0)
    );
    assert_eq!(
        v(
            "rebound_addresses",
            &[("state", "suppressed"), ("reason", "hard")]
        ),
        Some(2.0)
    );
    assert_eq!(v("rebound_run_errors", &[("command", "poll")]), Some(0.0));
    assert_eq!(
        v(
            "rebound_hook_pending_changes",
            &[("hook", hook.to_str().unwrap())]
        ),
        Some(0.0)
    );
    let now = chrono::Utc::now().timestamp() as f64;
    let last = v(
        "rebound_last_success_timestamp_seconds",
        &[("mailbox", "syncpoll")],
    )
    .unwrap();
    assert!((now - last).abs() < 120.0);
}

/// A running `rebound watch`, killed if the test fails before stopping it.
struct Watching(std::process::Child);

impl Drop for Watching {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A watch gives each change to the hooks as it is committed (not at its end), and keeps the
/// metrics file current after its rounds.
#[tokio::test(flavor = "multi_thread")]
async fn a_watch_runs_the_hooks_as_mail_arrives_and_keeps_metrics_current() {
    let user = server().add_user("syncwatch");
    append(&user, "INBOX", &[bounce(2201, "early@example.org")]).await;
    let dir = tempfile::tempdir().unwrap();
    let hook = recording_hook(dir.path());
    let cfg = write_config(
        dir.path(),
        &[
            mailbox_toml(
                dir.path(),
                "syncwatch",
                &user,
                Mode::Plain,
                "poll_interval_secs = 600",
            ),
            format!("[hooks]\non_change = [\"{}\"]\n", hook.display()),
        ],
    );
    let prom = dir.path().join("rebound.prom");
    let mut watching = Watching(
        Command::new(rebound_bin())
            .args([
                "watch",
                "--config",
                cfg.to_str().unwrap(),
                "--metrics-file",
                prom.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(
        "the first change at the hook",
        Duration::from_secs(20),
        || received(dir.path()).len() == 1,
    );
    append(&user, "INBOX", &[bounce(2202, "late@example.org")]).await;
    wait_for(
        "the second change at the hook",
        Duration::from_secs(20),
        || received(dir.path()).len() == 2,
    );
    assert_eq!(received(dir.path())[1]["address"], "late@example.org");
    wait_for("metrics with both bounces", Duration::from_secs(30), || {
        prometheus_text::value(
            &metrics(&prom),
            "rebound_messages_total",
            &[("kind", "bounce")],
        ) == Some(2.0)
    });
    let status = Command::new("kill")
        .args(["-TERM", &watching.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    let exit = loop {
        if let Some(s) = watching.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "watch did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    assert_eq!(received(dir.path()).len(), 2, "nothing given twice");
}
