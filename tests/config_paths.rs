//! Relative paths in the config file are relative to the file's directory, whatever the current
//! directory: what a systemd unit (working directory `/`) needs.

mod common;

use std::process::Command;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn relative_paths_resolve_beside_the_config_not_in_the_working_directory() {
    let s = server();
    let user = s.add_user("relpaths");
    append(&user, "INBOX", &[bounce(950, "rel@example.org")]).await;

    let etc = tempfile::tempdir().unwrap();
    std::fs::create_dir(etc.path().join("secrets")).unwrap();
    std::fs::write(
        etc.path().join("secrets/imap.pw"),
        format!("{}\n", user.password),
    )
    .unwrap();
    std::fs::copy(&s.ca_file, etc.path().join("ca.pem")).unwrap();
    std::fs::write(
        etc.path().join("rules.toml"),
        "[[rule]]\nid = \"local=relative\"\npattern = 'Recipient address rejected: User unknown'\nreason = \"recipient_filtered\"\n",
    )
    .unwrap();
    let cfg = etc.path().join("rebound.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\npath = \"data.db\"\n[rules]\nfile = \"rules.toml\"\n\n\
[[mailbox]]\nname = \"r\"\nhost = \"localhost\"\nport = {port}\ntls = \"implicit\"\nca_file = \"ca.pem\"\n\
username = \"{u}\"\nauth = {{ method = \"password_file\", path = \"secrets/imap.pw\" }}\ntimeout_secs = 10\n",
            port = s.tls_port,
            u = user.name
        ),
    )
    .unwrap();

    // Run from elsewhere, as a service started in `/` would.
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(rebound_bin())
        .current_dir(cwd.path())
        .args(["poll", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("r: ok new=1"), "{stdout}");
    let stored: i64 = rusqlite::Connection::open(etc.path().join("data.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 1, "the ledger is beside the config");
    let rule: String = rusqlite::Connection::open(etc.path().join("data.db"))
        .unwrap()
        .query_row(
            "SELECT rule FROM events WHERE address = 'rel@example.org'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        rule, "local=relative",
        "the rules file beside the config was used"
    );
    assert_eq!(
        std::fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "nothing is created in the working directory"
    );
}
