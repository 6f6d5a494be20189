//! What an operator sees when the config file is wrong, through the real commands: a secret
//! written in the file is refused without repeating it, and a typo in a table name is an error
//! with the name that was meant, never a silently ignored table.

use std::path::Path;
use std::process::{Command, Output};

const SECRET: &str = "Hunter2-Sekret-Value";

fn rebound(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rebound"))
        .args(args)
        .output()
        .expect("running rebound")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn samples() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/ledger")
        .display()
        .to_string()
}

const MAILBOX: &str = "[[mailbox]]\nname = \"b\"\nhost = \"imap.example.com\"\nusername = \"u\"\n";

#[test]
fn a_secret_in_the_config_is_refused_and_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rebound.toml");
    let cfg_s = cfg.to_str().unwrap();
    let db = dir.path().join("x.db");
    let files = [
        // The classic: a password beside the auth table.
        format!(
            "{MAILBOX}auth = {{ method = \"password_env\", var = \"P\" }}\npassword = \"{SECRET}\"\n"
        ),
        // Inside the auth table, under another spelling.
        format!("{MAILBOX}auth = {{ method = \"password_env\", imap_pass = \"{SECRET}\" }}\n"),
        // A token, and a syntax error later in the same file: the parse error used to quote
        // the line it was about.
        format!(
            "{MAILBOX}auth = {{ method = \"xoauth2\", token_command = \"oama\" }}\naccess_token = \"{SECRET}\"\nport = = 993\n"
        ),
        // The value's own line is broken (unterminated string).
        format!(
            "{MAILBOX}auth = {{ method = \"password_env\", var = \"P\" }}\nsecret = \"{SECRET}\n"
        ),
    ];
    for text in files {
        std::fs::write(&cfg, &text).unwrap();
        for args in [
            vec!["poll", "--config", cfg_s],
            vec![
                "ingest",
                "--config",
                cfg_s,
                "--db",
                db.to_str().unwrap(),
                &samples(),
            ],
            vec!["check", "--config", cfg_s],
        ] {
            let out = rebound(&args);
            // check reports on stdout, the others on stderr: the secret is in neither.
            let err = stderr(&out) + &String::from_utf8_lossy(&out.stdout);
            assert!(!out.status.success(), "{args:?} on\n{text}");
            assert!(!err.contains("Hunter2"), "the secret is echoed: {err}");
            assert!(
                !String::from_utf8_lossy(&out.stdout).contains("Hunter2"),
                "the secret is echoed on stdout"
            );
            assert!(err.contains("looks like a secret"), "{args:?}: {err}");
            // The sentence says where secrets go.
            for place in ["password_env", "password_file", "password_command"] {
                assert!(err.contains(place), "{err}");
            }
        }
    }
    assert!(!db.exists(), "nothing ran");
}

#[test]
fn other_config_errors_name_the_line_without_quoting_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rebound.toml");
    std::fs::write(
        &cfg,
        format!(
            "{MAILBOX}auth = {{ method = \"password_env\", var = \"P\" }}\nport = \"not-a-number-{SECRET}\"\n"
        ),
    )
    .unwrap();
    let out = rebound(&["poll", "--config", cfg.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("line 6"), "{err}");
    assert!(!err.contains("port = "), "the line is not quoted: {err}");
}

#[test]
fn a_typo_in_a_table_name_is_an_error_with_the_name_meant() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rebound.toml");
    let cfg_s = cfg.to_str().unwrap();
    for (text, hint) in [
        (
            "[databse]\npath = \"typo.db\"\n",
            "did you mean [database]?",
        ),
        ("[polcy]\nsoft_limit = 1\n", "did you mean [policy]?"),
        ("[rule]\nfile = \"local.toml\"\n", "did you mean [rules]?"),
        ("[[mailboxes]]\nname = \"b\"\n", "did you mean [[mailbox]]?"),
        ("[policy]\nsoft_limt = 1\n", "did you mean `soft_limit`?"),
    ] {
        std::fs::write(&cfg, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_rebound"))
            .current_dir(dir.path())
            .args(["ingest", "--config", cfg_s, &samples()])
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(hint), "{text}: {err}");
        assert!(
            !dir.path().join("rebound.db").exists(),
            "{text}: nothing may be written to the default ledger"
        );
    }
}
