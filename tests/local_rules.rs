//! Local rules from the config file go before the built-in table, through the real CLI.

use std::process::Command;

fn rebound(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rebound"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run rebound")
}

fn first_rule(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    v["recipients"][0]["rule"].as_str().unwrap().to_string()
}

/// A config file in `dir` whose `[rules] file` (a relative path) holds `rules`.
fn config_with_rules(dir: &std::path::Path, rules: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("local-rules.toml"), rules).unwrap();
    let config = dir.join("rebound.toml");
    std::fs::write(&config, "[rules]\nfile = \"local-rules.toml\"\n").unwrap();
    config
}

const SAMPLE: &str = "testdata/mail/dsn/postfix-user-unknown.eml";

#[test]
fn a_local_rule_decides_before_the_built_in_ones() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_rules(
        dir.path(),
        "[[rule]]\nid = \"local=virtual table\"\npattern = 'local recipient table'\nreason = \"recipient_filtered\"\n",
    );

    let builtin = first_rule(&rebound(&["classify", "--json", SAMPLE]));
    assert_ne!(builtin, "local=virtual table");
    let out = rebound(&[
        "classify",
        "--json",
        "--config",
        config.to_str().unwrap(),
        SAMPLE,
    ]);
    assert_eq!(first_rule(&out), "local=virtual table");
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(line.contains("\"reason\":\"recipient_filtered\""), "{line}");
}

#[test]
fn a_bad_local_rule_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_rules(
        dir.path(),
        "[[rule]]\nid = \"local=oops\"\npattern = 'x'\nreason = \"no_such_reason\"\n",
    );
    let out = rebound(&[
        "classify",
        "--json",
        "--config",
        config.to_str().unwrap(),
        SAMPLE,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("local-rules.toml") && err.contains("no_such_reason"),
        "{err}"
    );
}
