//! Standard output as a reader may treat it: `rebound explain ADDR | head -1` closes the pipe
//! after one line, and that is the reader's choice, not an error. Rust ignores SIGPIPE, so a
//! write to a closed pipe returns `BrokenPipe`; `println!` would panic on it. Commands write
//! with `writeln!` and let the error travel up: [`closed_pipe`] recognises it and the command
//! ends quietly with exit 0. Commands whose work is done before they print (ingest, poll) use
//! [`Lines`] instead, so that their exit code still says how the work went.

use std::fmt::Display;
use std::io::{self, Write};

/// True when the error, or any error it wraps, is a write to a closed pipe.
pub fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|e| e.io_error_kind() == Some(io::ErrorKind::BrokenPipe))
    })
}

/// Lines of a report on standard output that stop quietly when the reader goes away; any other
/// write error (a full disk behind a redirection) is still an error.
#[derive(Debug, Default)]
pub struct Lines {
    closed: bool,
}

impl Lines {
    pub fn new() -> Lines {
        Lines::default()
    }

    /// Prints one line (flushed at once: `watch` prints as mail arrives).
    pub fn line(&mut self, text: impl Display) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let mut out = io::stdout().lock();
        match writeln!(out, "{text}").and_then(|_| out.flush()) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                tracing::debug!("standard output is closed: no more report lines");
                Ok(())
            }
            other => other,
        }
    }
}
