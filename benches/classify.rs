//! Classification throughput: `cargo bench --bench classify [-- DIR...]`.
//!
//! Loads every message under the given directories (default: the shared Sisimai corpus beside
//! the checkout if present, and the project's own `testdata/mail`) into memory, then runs the
//! analysis over them repeatedly, single-threaded, for a few seconds and prints messages per
//! second. Target: ≥ 20,000 msg/s on one core. Figures, not assertions: machines are noisy.

use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<PathBuf> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .collect();
    let dirs = if args.is_empty() {
        ["../shared/corpus/sisimai/emails", "testdata/mail"]
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .collect()
    } else {
        args
    };
    let mut messages = Vec::new();
    rebound::input::for_each_message(&dirs, |m| {
        if let Ok(m) = m {
            messages.push(m.raw)
        }
    });
    if messages.is_empty() {
        eprintln!("classify bench: no messages found under {dirs:?}");
        std::process::exit(1);
    }
    let bytes: usize = messages.iter().map(Vec::len).sum();
    // Warm-up: compiles the rule set and the lazily built regexes. Timed on its own: it is what
    // a one-off `rebound classify` over a mailbox pays, and the passes below do not show it.
    let cold = Instant::now();
    for m in &messages {
        std::hint::black_box(rebound::analysis::analyze(m));
    }
    println!(
        "classify: first pass (cold: rule table, regexes and their lazy DFAs built on the way): {:.0} msg/s",
        messages.len() as f64 / cold.elapsed().as_secs_f64()
    );
    let budget = Duration::from_secs(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    );
    // Steady state. The same messages come round again, so every lazy DFA already holds the
    // states their texts need; new mail would make a few more, which the first pass bounds.
    let start = Instant::now();
    let cpu_start = cpu_ns();
    let mut done = 0usize;
    while start.elapsed() < budget {
        for m in &messages {
            std::hint::black_box(rebound::analysis::analyze(m));
        }
        done += messages.len();
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_ns()
        .zip(cpu_start)
        .map(|(end, start)| (end - start) as f64 / 1e9);
    println!(
        "classify: {} messages ({:.1} MB) x {} passes in {:.2} s: {:.0} msg/s, {:.1} MB/s (one core)",
        messages.len(),
        bytes as f64 / 1e6,
        done / messages.len(),
        secs,
        done as f64 / secs,
        (bytes * (done / messages.len())) as f64 / 1e6 / secs
    );
    // How much of that is the MIME parse alone (mail-parser plus the body text we derive).
    let parse_start = Instant::now();
    let mut parsed = 0usize;
    while parse_start.elapsed() < budget / 2 {
        for m in &messages {
            std::hint::black_box(rebound::analysis::mail::Mail::parse(m).is_ok());
        }
        parsed += messages.len();
    }
    println!(
        "classify: parsing alone: {:.0} msg/s",
        parsed as f64 / parse_start.elapsed().as_secs_f64()
    );
    if std::env::var_os("BENCH_MODULES").is_some() {
        // Where detection time goes: each MTA module run over every message.
        let mails: Vec<_> = messages
            .iter()
            .filter_map(|m| rebound::analysis::mail::Mail::parse(m).ok())
            .collect();
        for module in rebound::analysis::lhost::MODULES {
            let t = Instant::now();
            for _ in 0..5 {
                for mail in &mails {
                    std::hint::black_box((module.parse)(mail).is_some());
                }
            }
            let us = t.elapsed().as_secs_f64() * 1e6 / (5 * mails.len()) as f64;
            println!("  module {:<16} {:6.2} µs/msg", module.name, us);
        }
    }
    if let Some(cpu) = cpu {
        // On a shared, loaded machine wall time undercounts: per CPU-second is the fair figure.
        println!(
            "classify: {:.2} s on CPU: {:.0} msg per CPU-second",
            cpu,
            done as f64 / cpu
        );
    }
}

/// Nanoseconds this thread has spent on a CPU (Linux schedstat), if available.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}
