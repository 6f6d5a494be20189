//! The systemd units shipped in `contrib/systemd/` are the ones the README shows, they parse
//! (`systemd-analyze verify`, where systemd is installed), and their command lines are ones
//! rebound accepts.

use std::path::{Path, PathBuf};
use std::process::Command;

const UNITS: [&str; 5] = [
    "rebound-poll.service",
    "rebound-poll.timer",
    "rebound-watch.service",
    "rebound-sends.service",
    "rebound-sends.timer",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn unit(name: &str) -> String {
    std::fs::read_to_string(root().join("contrib/systemd").join(name)).unwrap()
}

/// The fenced block that follows the README line naming `contrib/systemd/NAME`.
fn readme_copy(readme: &str, name: &str) -> String {
    let title = format!("`contrib/systemd/{name}`:\n");
    let at = readme
        .find(&title)
        .unwrap_or_else(|| panic!("the README does not show {name}"));
    let rest = &readme[at + title.len()..];
    let start = rest.find("```ini\n").expect("an ini block") + "```ini\n".len();
    let end = rest[start..].find("```").expect("the end of the block");
    rest[start..start + end].to_string()
}

#[test]
fn the_readme_shows_the_shipped_units() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for name in UNITS {
        assert_eq!(
            readme_copy(&readme, name),
            unit(name),
            "README's copy of contrib/systemd/{name} differs from the file"
        );
    }
}

#[test]
fn the_units_command_lines_are_accepted() {
    for name in [
        "rebound-poll.service",
        "rebound-watch.service",
        "rebound-sends.service",
    ] {
        let text = unit(name);
        let exec = text
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap_or_else(|| panic!("{name} has no ExecStart"));
        let mut words = exec.split_whitespace();
        assert_eq!(words.next(), Some("/usr/local/bin/rebound"), "{name}");
        // clap answers --help only when everything before it parses.
        let out = Command::new(env!("CARGO_BIN_EXE_rebound"))
            .args(words)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {exec}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn systemd_accepts_the_units() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    else {
        println!(
            "skipped: systemd-analyze is not installed (apt-get install systemd; scripts/test.sh does)"
        );
        return;
    };
    // Verified as shipped, except the binary's path: `verify` wants ExecStart to exist.
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for name in UNITS {
        let text = unit(name).replace("/usr/local/bin/rebound", env!("CARGO_BIN_EXE_rebound"));
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .args(&paths)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on unknown keys and bad values: it only warns, on stderr.
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}
