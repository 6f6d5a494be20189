//! Non-ASCII folder names end to end: the config says `Rückläufer`, the server is spoken to in
//! modified UTF-7, the ledger keeps the human form.

mod common;

use common::*;

/// How the test client (independent of rebound) names the folders on the wire.
const RUECKLAEUFER: &str = "R&APw-ckl&AOQ-ufer";
const VERARBEITET: &str = "Verarbeitet/R&APw-ckl&AOQ-ufer";

#[tokio::test(flavor = "multi_thread")]
async fn poll_reads_and_moves_between_non_ascii_folders() {
    let s = server();
    let user = s.add_user("umlaut");
    append(
        &user,
        RUECKLAEUFER,
        &[bounce(900, "a@example.org"), bounce(901, "b@example.org")],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &[mailbox_toml(
            dir.path(),
            "u",
            &user,
            Mode::Plain,
            "folders = [\"Rückläufer\"]\naction = \"move\"\n[mailbox.move_to]\nbounces = \"Verarbeitet/Rückläufer\"",
        )],
    );
    let out = rebound(&["poll", "--config", cfg.to_str().unwrap()]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("u: ok new=2"), "{stdout}");

    // The server holds the messages in the folder the config names, as Dovecot itself lists it.
    assert_eq!(count(&user, RUECKLAEUFER).await, 0);
    assert_eq!(count(&user, VERARBEITET).await, 2);
    let listed = s.doveadm(&["mailbox", "list", "-u", &user.name]);
    assert!(
        listed.lines().any(|l| l == "Verarbeitet/Rückläufer"),
        "{listed}"
    );
    assert!(
        !listed.contains("&"),
        "no doubly encoded folder was created: {listed}"
    );

    // The ledger and its progress keep the human form.
    let db = rusqlite::Connection::open(dir.path().join("rebound.db")).unwrap();
    let folders: Vec<String> = db
        .prepare("SELECT DISTINCT folder FROM messages")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(folders, ["Rückläufer"]);
    let progress: String = db
        .query_row(
            "SELECT folder FROM imap_folders WHERE mailbox = 'u'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(progress, "Rückläufer");

    // A second run finds nothing new in the now empty folder.
    append(&user, RUECKLAEUFER, &[bounce(902, "c@example.org")]).await;
    let again = rebound(&["poll", "--config", cfg.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{stdout}");
    assert!(stdout.contains("u: ok new=1"), "{stdout}");
    assert_eq!(count(&user, VERARBEITET).await, 3);
}

#[test]
fn a_folder_written_already_encoded_is_refused_with_its_human_form() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rebound.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[mailbox]]\nname = \"e\"\nhost = \"127.0.0.1\"\ntls = \"none\"\nusername = \"nobody\"\nauth = {{ method = \"password_env\", var = \"UNSET_FOR_TEST\" }}\nfolders = [\"{RUECKLAEUFER}\"]\n"
        ),
    )
    .unwrap();
    let out = rebound(&["poll", "--config", cfg.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("modified UTF-7") && stderr.contains("\"Rückläufer\""),
        "{stderr}"
    );
}
