//! The analysis threads: one long-lived thread per core, shared by every batch of the process.
//!
//! Why not threads started per batch (as `std::thread::scope` would): the analysis's regexes
//! keep their lazy-DFA caches per thread (the `regex` pool gives the first thread using a regex
//! its own cache, the others caches from a small stack), and a fresh thread starts with empty
//! caches, so every batch paid again for determinising the rules' automata. Profiled on
//! `rebound ingest` of 5,000 corpus messages: a quarter of the CPU was `regex_automata`
//! determinisation, against a tenth for the same messages on one long-lived thread.
//!
//! The messages are copied into the jobs (the threads outlive any borrow): a few MB per batch,
//! a memcpy next to an analysis that costs tens of microseconds per message.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use crate::analysis::Analysis;

/// Messages per job: enough to make the channel traffic negligible, few enough that the
/// threads finish a batch together.
const CHUNK: usize = 8;

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Pool {
    jobs: Mutex<mpsc::Sender<Job>>,
    threads: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("analysis-{n}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "could not start an analysis thread");
            }
        }
        Pool {
            jobs: Mutex::new(tx),
            threads,
        }
    })
}

/// Runs `analyze` on every message on the analysis threads; the results are in order. A
/// message whose job was lost (no thread could be started) is analysed on the caller's thread.
pub fn analyze_all(raws: &[&[u8]], analyze: fn(&[u8]) -> Analysis) -> Vec<Analysis> {
    let pool = pool();
    if raws.len() <= 1 || pool.threads <= 1 {
        return raws.iter().map(|r| analyze(r)).collect();
    }
    let (done_tx, done_rx) = mpsc::channel::<(usize, Vec<Analysis>)>();
    let mut sent = 0;
    {
        let Ok(jobs) = pool.jobs.lock() else {
            return raws.iter().map(|r| analyze(r)).collect();
        };
        for (n, chunk) in raws.chunks(CHUNK).enumerate() {
            let owned: Vec<Vec<u8>> = chunk.iter().map(|r| r.to_vec()).collect();
            let done = done_tx.clone();
            let job: Job = Box::new(move || {
                let out = owned.iter().map(|r| analyze(r)).collect();
                let _ = done.send((n * CHUNK, out));
            });
            if jobs.send(job).is_err() {
                break;
            }
            sent += 1;
        }
    }
    drop(done_tx);
    let mut out: Vec<Option<Analysis>> = (0..raws.len()).map(|_| None).collect();
    for (start, analyses) in done_rx.iter().take(sent) {
        for (slot, a) in out[start..].iter_mut().zip(analyses) {
            *slot = Some(a);
        }
    }
    out.into_iter()
        .zip(raws)
        .map(|(a, raw)| a.unwrap_or_else(|| analyze(raw)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(raw: &[u8]) -> Analysis {
        Analysis::unparsed(String::from_utf8_lossy(raw).into_owned())
    }

    #[test]
    fn results_are_in_the_order_of_the_messages() {
        let texts: Vec<String> = (0..103).map(|n| format!("message {n}")).collect();
        let raws: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
        let out = analyze_all(&raws, fake);
        let errors: Vec<String> = out.into_iter().map(|a| a.error.unwrap()).collect();
        assert_eq!(errors, texts);
    }
}
