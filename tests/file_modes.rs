//! Files rebound creates are private whatever the umask: the ledger (other people's addresses
//! and whole messages) and the mailbox lock files (a lock other users can open lets any local
//! user take it and stop every poll).

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn lock_files_and_ledger_are_private_under_umask_000() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: the poll fails to connect, after it took the lock.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("rebound.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[mailbox]]\nname = \"m\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nusername = \"u\"\n\
auth = {{ method = \"password_env\", var = \"REBOUND_TEST_UNUSED\" }}\nattempts = 1\ntimeout_secs = 2\n"
        ),
    )
    .unwrap();
    // An older rebound left a world-readable lock file for a second mailbox.
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg).unwrap()
            + &format!(
                "[[mailbox]]\nname = \"old\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nusername = \"u\"\n\
auth = {{ method = \"password_env\", var = \"REBOUND_TEST_UNUSED\" }}\nattempts = 1\ntimeout_secs = 2\n"
            ),
    )
    .unwrap();
    let old = dir.path().join("rebound.db.old.lock");
    std::fs::write(&old, "").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o666)).unwrap();

    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_rebound"))
        .args(["poll", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the mailbox is unreachable: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&dir.path().join("rebound.db.m.lock")), 0o600);
    assert_eq!(mode(&old), 0o600, "an old wide lock file is narrowed");
    assert_eq!(mode(&dir.path().join("rebound.db")), 0o600);
}
