//! The analysis threads: one long-lived thread per core, shared by every batch of the process.
//!
//! Why not threads started per batch (as `std::thread::scope` would): the analysis's regexes
//! keep their lazy-DFA caches per thread (the `regex` pool gives the first thread using a regex
//! its own cache, the others caches from a small stack), and a fresh thread starts with empty
//! caches, so every batch paid again for determinising the rules' automata. Profiled on
//! `rebound ingest` of 5,000 corpus messages: a quarter of the CPU was `regex_automata`
//! determinisation, against a tenth for the same messages on one long-lived thread.
//!
//! The jobs own their items (the threads outlive any borrow): the messages of a batch move in
//! and their prepared forms move out, without a copy.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

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

/// Applies `f` to every item on the analysis threads; the results are in the items' order.
/// A chunk whose job cannot be queued (no thread could be started) is done on the caller's
/// thread.
pub fn map<T, R>(items: Vec<T>, f: Arc<dyn Fn(T) -> R + Send + Sync>) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
{
    let pool = pool();
    if items.len() <= 1 || pool.threads <= 1 {
        return items.into_iter().map(|t| f(t)).collect();
    }
    let total = items.len();
    let (done_tx, done_rx) = mpsc::channel::<(usize, Vec<R>)>();
    let mut out: Vec<Option<R>> = (0..total).map(|_| None).collect();
    let mut sent = 0;
    let mut items = items.into_iter();
    let mut start = 0;
    loop {
        let chunk: Vec<T> = items.by_ref().take(CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len();
        // The chunk travels to the job through a channel of its own, so that a job the pool
        // refuses gives it back.
        let (tx, rx) = mpsc::sync_channel::<Vec<T>>(1);
        let done = done_tx.clone();
        let g = f.clone();
        let job: Job = Box::new(move || {
            if let Ok(chunk) = rx.recv() {
                let _ = done.send((start, chunk.into_iter().map(|t| g(t)).collect()));
            }
        });
        let queued = pool.jobs.lock().is_ok_and(|jobs| jobs.send(job).is_ok());
        let unsent = if queued {
            match tx.send(chunk) {
                Ok(()) => None,
                Err(mpsc::SendError(chunk)) => Some(chunk),
            }
        } else {
            Some(chunk)
        };
        match unsent {
            None => sent += 1,
            Some(chunk) => {
                for (slot, t) in out[start..].iter_mut().zip(chunk) {
                    *slot = Some(f(t));
                }
            }
        }
        start += n;
    }
    drop(done_tx);
    for (start, results) in done_rx.iter().take(sent) {
        for (slot, r) in out[start..].iter_mut().zip(results) {
            *slot = Some(r);
        }
    }
    out.into_iter()
        .map(|r| r.expect("every chunk's job ran"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_in_the_order_of_the_items() {
        let texts: Vec<String> = (0..103).map(|n| format!("message {n}")).collect();
        let out = map(texts.clone(), Arc::new(|t: String| t.to_uppercase()));
        let want: Vec<String> = texts.iter().map(|t| t.to_uppercase()).collect();
        assert_eq!(out, want);
    }
}
