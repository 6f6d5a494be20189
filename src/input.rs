//! Where messages come from when there is no IMAP server: `.eml` files, directories (Maildirs
//! included) and mbox files. Every source yields `(source name, raw bytes)` records lazily, so
//! a large mbox or Maildir is never held in memory whole.
//!
//! The source name is the contract used by `classify --json` and the ledger: the path as
//! walked, and `file.mbox#N` (1-based) for the N-th message of an mbox file.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// One message read from a file source.
#[derive(Debug, Clone)]
pub struct InputMessage {
    /// The path as walked, or `path#N` for the N-th message of an mbox.
    pub source: String,
    pub raw: Vec<u8>,
}

/// An error reading one file: reported, never fatal to the rest of the run.
#[derive(Debug)]
pub struct InputError {
    pub source: String,
    pub error: io::Error,
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.source, self.error)
    }
}

/// Expands the given paths into the files to read, in a stable (sorted) order. Directories are
/// walked recursively; Maildir `tmp/` folders (deliveries in progress) and dot-files are skipped.
pub fn expand(paths: &[PathBuf]) -> Vec<Result<PathBuf, InputError>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let walker = walkdir::WalkDir::new(path)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| {
                    let name = e.file_name().to_string_lossy();
                    e.depth() == 0
                        || !(name.starts_with('.') || (e.file_type().is_dir() && name == "tmp"))
                });
            for entry in walker {
                match entry {
                    Ok(e) if e.file_type().is_file() => out.push(Ok(e.into_path())),
                    Ok(_) => {}
                    Err(e) => out.push(Err(InputError {
                        source: e
                            .path()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default(),
                        error: e
                            .into_io_error()
                            .unwrap_or_else(|| io::Error::other("walk error")),
                    })),
                }
            }
        } else if path.exists() {
            out.push(Ok(path.clone()));
        } else {
            out.push(Err(InputError {
                source: path.display().to_string(),
                error: io::Error::new(io::ErrorKind::NotFound, "no such file or directory"),
            }));
        }
    }
    out
}

/// Reads every message under the given paths, calling `f` for each one (or for each error).
pub fn for_each_message(paths: &[PathBuf], mut f: impl FnMut(Result<InputMessage, InputError>)) {
    for file in expand(paths) {
        match file {
            Ok(path) => {
                if let Err(error) = read_file(&path, &mut f) {
                    f(Err(InputError {
                        source: path.display().to_string(),
                        error,
                    }));
                }
            }
            Err(e) => f(Err(e)),
        }
    }
}

/// Reads one file: an mbox (first line starts with `From `) yields one record per message,
/// anything else is one message.
fn read_file(path: &Path, f: &mut impl FnMut(Result<InputMessage, InputError>)) -> io::Result<()> {
    let mut reader = BufReader::new(File::open(path)?);
    let is_mbox = reader.fill_buf()?.starts_with(b"From ");
    let name = path.display().to_string();
    if !is_mbox {
        let mut raw = Vec::new();
        reader.read_to_end(&mut raw)?;
        f(Ok(InputMessage { source: name, raw }));
        return Ok(());
    }
    // A file holding a single message behind a `From ` envelope line (as many tools and
    // archives save them) keeps its plain name; only real mboxes get `#N` records. So the
    // first record is held back until we know whether a second one follows.
    let mut first: Option<Vec<u8>> = None;
    split_mbox(reader, |n, raw| match n {
        1 => first = Some(raw),
        _ => {
            if let Some(raw1) = first.take() {
                f(Ok(InputMessage {
                    source: format!("{name}#1"),
                    raw: raw1,
                }));
            }
            f(Ok(InputMessage {
                source: format!("{name}#{n}"),
                raw,
            }))
        }
    })?;
    if let Some(raw) = first {
        f(Ok(InputMessage { source: name, raw }));
    }
    Ok(())
}

/// Splits an mbox stream into messages. A line starting with `From ` opens a new message (and
/// is not part of it); `>From ` quoting (mboxrd) is undone one level. Streams line by line.
pub fn split_mbox<R: BufRead>(
    mut reader: R,
    mut emit: impl FnMut(usize, Vec<u8>),
) -> io::Result<()> {
    let mut current: Option<Vec<u8>> = None;
    let mut count = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.starts_with(b"From ") {
            if let Some(msg) = current.take() {
                count += 1;
                emit(count, finish_mbox_message(msg));
            }
            current = Some(Vec::new());
            continue;
        }
        let buf = current.get_or_insert_with(Vec::new);
        let unquoted = {
            let gts = line.iter().take_while(|&&b| b == b'>').count();
            gts > 0 && line[gts..].starts_with(b"From ")
        };
        buf.extend_from_slice(if unquoted { &line[1..] } else { &line });
    }
    if let Some(msg) = current.take() {
        count += 1;
        emit(count, finish_mbox_message(msg));
    }
    Ok(())
}

/// Drops the blank line that separates mbox messages.
fn finish_mbox_message(mut msg: Vec<u8>) -> Vec<u8> {
    if msg.ends_with(b"\r\n\r\n") {
        msg.truncate(msg.len() - 2);
    } else if msg.ends_with(b"\n\n") {
        msg.truncate(msg.len() - 1);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_splits_and_unquotes() {
        let mbox = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: one\n\n>From here\nbody\n\nFrom c@d Mon Jan  1 00:00:00 2024\nSubject: two\n\nx\n";
        let mut got = Vec::new();
        split_mbox(&mbox[..], |n, m| {
            got.push((n, String::from_utf8(m).unwrap()))
        })
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], (1, "Subject: one\n\nFrom here\nbody\n".to_string()));
        assert_eq!(got[1], (2, "Subject: two\n\nx\n".to_string()));
    }
}
