//! A time budget for the analysis of one message.
//!
//! Every path of the analysis is linear in the message and only its first MiB is read (see
//! [`super::MAX_ANALYSED_BYTES`]), so a message costs at most about a second. The budget is the
//! second line of defence, against a path nobody thought of: the loops that grow with the input
//! (each line of a notice, each recipient) call [`check`], and once the budget is spent the
//! analysis stops and the message is stored `unparsed`, with the reason, instead of holding a
//! poll (a crafted message must not outlast a service's start timeout).
//!
//! The stop unwinds to [`run`] with [`std::panic::resume_unwind`], which does not run the panic
//! hook: nothing is printed, and no state outlives it (the analysis holds no locks and writes
//! nothing).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How long the analysis of one message may take.
pub const BUDGET: Duration = Duration::from_secs(3);

/// Calls of [`check`] between two looks at the clock (a look costs about as much as a short
/// loop iteration).
const EVERY: u32 = 64;

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    static CALLS: Cell<u32> = const { Cell::new(0) };
}

/// The analysis ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded(pub Duration);

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the analysis took more than its budget of {} ms and was stopped: stored unanalysed",
            self.0.as_millis()
        )
    }
}

/// Runs `f` with `budget`; `Err` when it ran out. Another panic goes on unwinding.
pub fn run<T>(budget: Duration, f: impl FnOnce() -> T) -> Result<T, Exceeded> {
    let outer = DEADLINE.with(|d| d.replace(Some(Instant::now() + budget)));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    DEADLINE.with(|d| d.set(outer));
    match result {
        Ok(v) => Ok(v),
        Err(payload) => match payload.downcast::<Stop>() {
            Ok(_) => Err(Exceeded(budget)),
            Err(other) => std::panic::resume_unwind(other),
        },
    }
}

/// Stops the analysis when its budget is spent (a no-op outside [`run`]).
pub fn check() {
    let n = CALLS.with(|c| {
        let n = c.get().wrapping_add(1);
        c.set(n);
        n
    });
    if !n.is_multiple_of(EVERY) {
        return;
    }
    if let Some(deadline) = DEADLINE.with(Cell::get)
        && Instant::now() >= deadline
    {
        std::panic::resume_unwind(Box::new(Stop));
    }
}

/// The payload of a stop.
struct Stop;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_that_checks_stops_at_its_budget_and_other_panics_pass() {
        let spent = run(Duration::ZERO, || {
            loop {
                check();
            }
        });
        assert_eq!(spent, Err(Exceeded(Duration::ZERO)));
        assert_eq!(run(Duration::from_secs(60), || 7), Ok(7));
        // Outside a run, checks never stop anything.
        for _ in 0..1000 {
            check();
        }
        let other = std::panic::catch_unwind(|| run(Duration::from_secs(60), || panic!("boom")));
        assert!(other.is_err(), "a real panic is not mistaken for a stop");
    }
}
