//! The ledger writer alone: `cargo bench --bench writer [-- DIR...]`.
//!
//! Builds N messages (default 50,000; `BENCH_MESSAGES`) from a corpus (default the shared
//! Sisimai corpus beside the checkout, else `testdata/mail`), prepares them as the ingest
//! pipeline does (analysis, hash, zstd), then times only `Ledger::write` over groups of
//! `BENCH_GROUP` messages (default 2,000, the writer's group commit) into a fresh ledger, as an
//! IMAP folder's messages (UIDs in order). Messages are prepared 10,000 at a time, so that
//! memory stays flat at any N; the preparation is not timed.
//!
//! The data is the shape `bench/imap-poll.sh` gives a mailbox: copy i arrives 10 s after copy
//! i-1 (its `Date:` and DSN dates rewritten), and every recipient address gets `.b<i mod 500>`
//! added to its local part, so that busy addresses collect tens of events, not thousands.
//!
//! Commits are synced as a poll with the default action syncs them (not one by one;
//! `BENCH_SYNC=1`: every commit, as with `move` or `delete`).
//!
//! Prints the preparation's cost (all threads), then, per 50,000 messages, the wall time and this thread's CPU time per message, then the
//! ledger's size per message. Figures, not assertions: machines are noisy.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rebound::ingest::{Message, prepare};
use rebound::ledger::{Ledger, Origin, Policy};

fn main() {
    let args: Vec<PathBuf> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .collect();
    let dirs: Vec<PathBuf> = if args.is_empty() {
        ["../shared/corpus/sisimai/emails", "testdata/mail"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .into_iter()
            .collect()
    } else {
        args
    };
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let (n, group) = (
        env("BENCH_MESSAGES", 50_000),
        env("BENCH_GROUP", 2_000).max(1),
    );
    let rules = rebound::config::builtin_rules();
    let mut corpus = Vec::new();
    rebound::input::for_each_message(&dirs, |m| {
        if let Ok(m) = m {
            let recipients: Vec<String> = rebound::analysis::analyze(&m.raw)
                .recipients
                .iter()
                .map(|r| r.address.clone())
                .filter(|a| a.contains('@'))
                .collect();
            corpus.push((m.raw, recipients));
        }
    });
    if corpus.is_empty() {
        eprintln!("writer bench: no messages found under {dirs:?}");
        std::process::exit(1);
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("bench.db");
    let mut ledger = Ledger::open(&path, Policy::default(), rules.fingerprint()).expect("ledger");
    // As a poll with the default action (keep) and `ingest` write: commits are not synced one
    // by one (`BENCH_SYNC=1`: synced, as with move or delete).
    ledger
        .sync_every_commit(std::env::var_os("BENCH_SYNC").is_some())
        .expect("synchronous mode");
    let dates = regex::bytes::Regex::new(
        r"(?mi)^(Date|Arrival-Date|Last-Attempt-Date):[^\n]*(\n[ \t][^\n]*)*\n",
    )
    .expect("a valid regex");
    let start = 1_767_225_600i64; // 2026-01-01T00:00:00Z
    let (mut wall, mut cpu) = (Duration::ZERO, Duration::ZERO);
    let (mut seg_wall, mut seg_cpu, mut seg_from) = (Duration::ZERO, Duration::ZERO, 0usize);
    let mut done = 0usize;
    let (mut prep_wall, mut prep_cpu) = (Duration::ZERO, Duration::ZERO);
    println!(
        "writer: {n} messages from {} corpus messages, groups of {group}",
        corpus.len()
    );
    while done < n {
        let chunk = (n - done).min(10_000);
        let messages: Vec<Message> = (done..done + chunk)
            .map(|i| {
                let (raw, recipients) = &corpus[i % corpus.len()];
                let t = chrono::DateTime::from_timestamp(start + 10 * i as i64, 0)
                    .expect("a valid time")
                    .to_rfc2822();
                let mut raw = dates.replace_all(raw, &b""[..]).into_owned();
                for a in recipients {
                    let (local, domain) = a.split_once('@').expect("an address");
                    let to = format!("{local}.b{}@{domain}", i % 500);
                    raw = replace_all(&raw, a.as_bytes(), to.as_bytes());
                }
                let mut head = format!("X-Bench-Seq: {i}\nDate: {t}\n").into_bytes();
                head.extend_from_slice(&raw);
                Message::new(head, Origin::imap("bench", "INBOX", 1, i as u32 + 1, None))
            })
            .collect();
        let (t, c) = (Instant::now(), process_cpu());
        let prepared = prepare(
            messages,
            &rebound::analysis::Settings::new(Arc::clone(&rules)),
        );
        prep_wall += t.elapsed();
        prep_cpu += process_cpu().saturating_sub(c);
        for batch in prepared.chunks(group) {
            let (t, c) = (Instant::now(), cpu_now());
            let outcomes = ledger.write(batch).expect("a written batch");
            let (dt, dc) = (t.elapsed(), cpu_now().saturating_sub(c));
            assert!(outcomes.iter().all(Result::is_ok), "every message stored");
            wall += dt;
            cpu += dc;
            seg_wall += dt;
            seg_cpu += dc;
            done += batch.len();
            if done - seg_from >= 50_000 || done == n {
                let k = (done - seg_from) as f64;
                println!(
                    "writer: messages {seg_from:>7}-{done:<7} {:6.1} µs/msg wall, {:6.1} µs/msg CPU",
                    seg_wall.as_secs_f64() * 1e6 / k,
                    seg_cpu.as_secs_f64() * 1e6 / k
                );
                (seg_wall, seg_cpu, seg_from) = (Duration::ZERO, Duration::ZERO, done);
            }
        }
    }
    println!(
        "prepare (hash, analysis, zstd; all threads): {:.1} µs/msg wall, {:.1} µs/msg CPU",
        prep_wall.as_secs_f64() * 1e6 / n as f64,
        prep_cpu.as_secs_f64() * 1e6 / n as f64
    );
    drop(ledger);
    let bytes: u64 = std::fs::read_dir(dir.path())
        .expect("the ledger's directory")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "writer: {n} messages {:.1} µs/msg wall, {:.1} µs/msg CPU; ledger {:.1} MB, {:.0} bytes/message",
        wall.as_secs_f64() * 1e6 / n as f64,
        cpu.as_secs_f64() * 1e6 / n as f64,
        bytes as f64 / 1e6,
        bytes as f64 / n as f64
    );
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut rest = hay;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// This process's CPU time, all threads (user + system, from /proc/self/stat).
fn process_cpu() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        });
    // Clock ticks are 1/100 s on Linux.
    ticks.map_or(Duration::ZERO, |t| Duration::from_millis(t * 10))
}

/// This thread's CPU time (Linux schedstat; zero where it is not available).
fn cpu_now() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}
