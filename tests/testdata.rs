//! The project's own corpus, checked through the real command line.
//!
//! `testdata/mail/` holds messages we wrote ourselves, modelled on what real MTAs, mail services
//! and people send; `testdata/expected.toml` says what each one is. These tests run the built
//! binary as `rebound classify --json testdata/mail` (the same path a user takes) and compare
//! every JSON line with its expectation. A failure lists *every* mismatch, one per line, so the
//! analysis work can go down the list instead of fixing one sample per test run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use rebound::analysis::{Kind, Phase, Reason};
use serde::Deserialize;
use serde_json::Value;

/// Where the samples live, relative to the crate root; also the prefix of every `source`.
const MAIL_DIR: &str = "testdata/mail";
const CRLF_DIR: &str = "crlf/";
const MIN_SAMPLES: usize = 60;
const MIN_CRLF_COPIES: usize = 10;
const LABELS: [&str; 4] = ["hard", "soft", "blocked", "invalid"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    sample: Vec<Sample>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sample {
    /// Path under testdata/mail/, or `file.mbox#N`.
    source: String,
    kind: String,
    feedback_type: Option<String>,
    /// The exact set of recipients; not checked when absent.
    recipients: Option<Vec<ExpectedRecipient>>,
}

/// A missing label, reason, status or phase means the engine must report null; the original
/// and final recipients (RFC 3464 fields) are checked only where given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedRecipient {
    address: String,
    label: Option<String>,
    reason: Option<String>,
    status: Option<String>,
    phase: Option<String>,
    original_recipient: Option<String>,
    final_recipient: Option<String>,
}

fn crate_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn expected() -> &'static Expected {
    static EXPECTED: OnceLock<Expected> = OnceLock::new();
    EXPECTED.get_or_init(|| {
        let path = crate_root().join("testdata/expected.toml");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

/// Every JSON line of `rebound classify --json testdata/mail`, keyed by source relative to
/// testdata/mail/. Run once per test binary.
fn classified() -> &'static BTreeMap<String, Value> {
    static LINES: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    LINES.get_or_init(|| {
        let out = Command::new(env!("CARGO_BIN_EXE_rebound"))
            .args(["classify", "--json", MAIL_DIR])
            .current_dir(crate_root())
            .output()
            .expect("run rebound");
        let stdout = String::from_utf8(out.stdout).expect("classify output is UTF-8");
        assert!(
            out.status.success(),
            "rebound classify exited with {}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let mut lines = BTreeMap::new();
        for (n, line) in stdout.lines().enumerate() {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("output line {}: {e}: {line}", n + 1));
            let source = value["source"]
                .as_str()
                .unwrap_or_else(|| panic!("line {} has no source", n + 1));
            let rel = source
                .strip_prefix(MAIL_DIR)
                .and_then(|s| s.strip_prefix('/'))
                .unwrap_or_else(|| panic!("source {source:?} is not under {MAIL_DIR}"))
                .to_string();
            assert!(
                lines.insert(rel.clone(), value).is_none(),
                "{rel}: reported twice"
            );
        }
        lines
    })
}

/// A JSON field as an optional string (null and absent are both `None`).
fn opt_str(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn show(v: &Option<String>) -> String {
    v.as_deref()
        .map_or("null".to_string(), |s| format!("{s:?}"))
}

/// Compares one sample with its classification, appending every difference to `out`.
fn compare(sample: &Sample, got: &Value, out: &mut Vec<String>) {
    let src = &sample.source;
    let kind = opt_str(got, "kind");
    if kind.as_deref() != Some(sample.kind.as_str()) {
        let why = opt_str(got, "error")
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        out.push(format!(
            "{src}: kind expected {:?} got {}{why}",
            sample.kind,
            show(&kind)
        ));
    }
    if let Some(ft) = &sample.feedback_type {
        let got_ft = opt_str(got, "feedback_type");
        if got_ft.as_deref() != Some(ft.as_str()) {
            out.push(format!(
                "{src}: feedback_type expected {ft:?} got {}",
                show(&got_ft)
            ));
        }
    }
    let Some(want) = &sample.recipients else {
        return;
    };
    let empty = Vec::new();
    let got_rcpts = got["recipients"].as_array().unwrap_or(&empty);
    let by_addr: BTreeMap<String, &Value> = got_rcpts
        .iter()
        .map(|r| (opt_str(r, "address").unwrap_or_default(), r))
        .collect();
    let want_set: BTreeSet<&str> = want.iter().map(|r| r.address.as_str()).collect();
    let got_set: BTreeSet<&str> = by_addr.keys().map(String::as_str).collect();
    if want_set != got_set || got_rcpts.len() != want.len() {
        out.push(format!(
            "{src}: recipients expected {:?} got {:?}",
            want_set,
            got_rcpts
                .iter()
                .map(|r| opt_str(r, "address").unwrap_or_default())
                .collect::<Vec<_>>()
        ));
    }
    for w in want {
        let Some(g) = by_addr.get(&w.address) else {
            continue;
        };
        let checked_when_given = [
            ("original_recipient", &w.original_recipient),
            ("final_recipient", &w.final_recipient),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_some());
        for (field, want_value) in [
            ("label", &w.label),
            ("reason", &w.reason),
            ("status", &w.status),
            ("phase", &w.phase),
        ]
        .into_iter()
        .chain(checked_when_given)
        {
            let got_value = opt_str(g, field);
            if &got_value != want_value {
                let rule = opt_str(g, "rule")
                    .map(|r| format!(" [rule {r}]"))
                    .unwrap_or_default();
                out.push(format!(
                    "{src}: {} {field} expected {} got {}{rule}",
                    w.address,
                    show(want_value),
                    show(&got_value)
                ));
            }
        }
    }
}

#[test]
fn every_sample_gets_its_expected_verdict() {
    let lines = classified();
    let mut mismatches = Vec::new();
    for sample in &expected().sample {
        match lines.get(&sample.source) {
            Some(got) => compare(sample, got, &mut mismatches),
            None => mismatches.push(format!("{}: no output line at all", sample.source)),
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatch(es) over {} samples:\n{}",
        mismatches.len(),
        expected().sample.len(),
        mismatches.join("\n")
    );
}

/// The analysis without its `source`: what a CRLF copy must share with its LF original.
fn without_source(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(map) = v.as_object_mut() {
        map.remove("source");
    }
    v
}

#[test]
fn crlf_copies_match_their_lf_originals() {
    let lines = classified();
    let expected_sources: BTreeSet<&str> = expected()
        .sample
        .iter()
        .map(|s| s.source.as_str())
        .collect();
    let mut problems = Vec::new();
    let mut copies = 0;
    for (source, got) in lines.range(CRLF_DIR.to_string()..) {
        let Some(original) = source.strip_prefix(CRLF_DIR) else {
            break;
        };
        copies += 1;
        if !expected_sources.contains(original) {
            problems.push(format!(
                "{source}: its original {original} has no entry in expected.toml"
            ));
        }
        match lines.get(original) {
            None => problems.push(format!(
                "{source}: no LF original {original} was classified"
            )),
            Some(lf) if without_source(lf) != without_source(got) => problems.push(format!(
                "{source}: differs from its LF original\n  LF:   {}\n  CRLF: {}",
                without_source(lf),
                without_source(got)
            )),
            Some(_) => {}
        }
    }
    assert!(
        copies >= MIN_CRLF_COPIES,
        "only {copies} CRLF copies under {MAIL_DIR}/{CRLF_DIR} (want ≥ {MIN_CRLF_COPIES})"
    );
    assert!(
        problems.is_empty(),
        "{} CRLF problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Every regular file under `dir`, relative to `root`, skipping Maildir `tmp/` folders.
fn files_under(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "tmp") {
                continue;
            }
            files_under(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).expect("under root");
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

#[test]
fn nothing_is_dropped_and_every_output_is_expected() {
    let lines = classified();
    let root = crate_root().join(MAIL_DIR);
    let mut files = Vec::new();
    files_under(&root, &root, &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let mbox_prefix = format!("{file}#");
        let produced =
            lines.contains_key(file) || lines.keys().any(|k| k.starts_with(&mbox_prefix));
        if !produced {
            problems.push(format!("{file}: produced no output line (dropped)"));
        }
    }
    let expected_sources: BTreeSet<&str> = expected()
        .sample
        .iter()
        .map(|s| s.source.as_str())
        .collect();
    for source in lines.keys() {
        if source.split('/').any(|part| part == "tmp") {
            problems.push(format!("{source}: read from a Maildir tmp/ folder"));
        } else if !source.starts_with(CRLF_DIR) && !expected_sources.contains(source.as_str()) {
            problems.push(format!(
                "{source}: classified but has no entry in testdata/expected.toml"
            ));
        }
    }
    for source in &expected_sources {
        let file = source.split('#').next().unwrap_or(source);
        if !root.join(file).is_file() {
            problems.push(format!(
                "{source}: listed in expected.toml but {MAIL_DIR}/{file} does not exist"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Checks the expectation file itself (no binary needed): enough samples, every kind and label
/// covered, and every expected reason carrying the label the product gives it.
#[test]
fn corpus_is_large_and_covers_every_kind_and_label() {
    let samples = &expected().sample;
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for s in samples {
        if !seen.insert(s.source.as_str()) {
            problems.push(format!("{}: listed twice", s.source));
        }
        if Kind::parse(&s.kind).is_none() {
            problems.push(format!("{}: unknown kind {:?}", s.source, s.kind));
        }
        for r in s.recipients.iter().flatten() {
            if let Some(p) = &r.phase
                && Phase::parse(p).is_none()
            {
                problems.push(format!("{}: unknown phase {p:?}", s.source));
            }
            match (&r.label, &r.reason) {
                (Some(label), Some(reason)) => match Reason::parse(reason) {
                    None => problems.push(format!("{}: unknown reason {reason:?}", s.source)),
                    Some(reason) => {
                        // The label a reason carries under a temporary or a permanent failure
                        // (a 4xx user unknown is soft; undetermined follows the class).
                        let allowed = [Some('4'), Some('5')].map(|c| reason.label_for(c).as_str());
                        if !allowed.contains(&label.as_str()) {
                            problems.push(format!(
                                "{}: {} has reason {reason} (label {}) but expects label {label:?}",
                                s.source,
                                r.address,
                                allowed.join(" or ")
                            ));
                        }
                    }
                },
                (None, None) => {}
                _ => problems.push(format!(
                    "{}: {} needs both label and reason, or neither",
                    s.source, r.address
                )),
            }
        }
    }
    if samples.len() < MIN_SAMPLES {
        problems.push(format!(
            "only {} samples (want ≥ {MIN_SAMPLES})",
            samples.len()
        ));
    }
    for kind in Kind::ALL {
        if !samples.iter().any(|s| s.kind == kind.as_str()) {
            problems.push(format!("no sample of kind {kind}"));
        }
    }
    for label in LABELS {
        let present = samples
            .iter()
            .flat_map(|s| s.recipients.iter().flatten())
            .any(|r| r.label.as_deref() == Some(label));
        if !present {
            problems.push(format!("no recipient labelled {label}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) in testdata/expected.toml:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
