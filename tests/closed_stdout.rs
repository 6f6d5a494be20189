//! A reader that closes the pipe early (`rebound explain ADDR | head -1`) ends a printing
//! command normally: exit 0, nothing on stderr (no panic, no "Broken pipe").
//!
//! The pipe's read end is closed before the command writes anything, so every write fails
//! with EPIPE: the same as `head` exiting after its first line, without the race.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rebound"))
}

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/ledger")
}

/// Runs `rebound ARGS` with its stdout a pipe nobody reads, closed at once.
fn with_closed_stdout(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn printing_commands_end_quietly_when_the_reader_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    let db = db.to_str().unwrap();
    let samples = samples();
    let samples = samples.to_str().unwrap();
    let status = bin()
        .args(["ingest", "--db", db, samples])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    for args in [
        vec!["explain", "--db", db, "eva@example.net"],
        vec!["classify", "--json", samples],
        vec!["classify", samples],
        vec!["ingest", "--db", db, samples],
        vec!["reclassify", "--db", db],
        vec!["reactivate", "--db", db, "eva@example.net"],
        vec!["--help"],
    ] {
        let (status, stderr) = with_closed_stdout(&args);
        assert!(
            status.success(),
            "rebound {args:?}: {status}, stderr: {stderr}"
        );
        assert_eq!(stderr, "", "rebound {args:?} must end quietly");
    }
}
