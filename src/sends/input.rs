//! Opening an input of sends: a file (plain or gzip, told by its first bytes, not its name) or
//! standard input; its identity (first KB, device and inode); reading on from an offset; lines
//! of bounded length.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::Context;

use crate::ledger::sends::HEAD_BYTES;

/// The longest line read as a line; a longer one is skipped whole (and reported by the
/// parsers that care) so that a file without newlines cannot fill the memory.
pub const MAX_LINE: usize = 64 * 1024;

/// An opened input: its first bytes read (for its identity), the rest behind them.
pub struct Input {
    pub head: Vec<u8>,
    pub device: Option<u64>,
    pub inode: Option<u64>,
    /// Whether the content is decompressed from gzip (then it cannot be sought in).
    pub gzip: bool,
    /// A plain file, positioned after `head`: reading on from an offset seeks.
    file: Option<File>,
    /// Otherwise the stream, positioned after `head`.
    stream: Option<Box<dyn Read>>,
}

impl Input {
    /// Opens a file (`-`: standard input).
    pub fn open(path: &Path) -> anyhow::Result<Input> {
        if path.as_os_str() == "-" {
            return Input::from_stream(Box::new(io::stdin()), None, None);
        }
        let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let (device, inode) = identity(&file);
        let mut magic = [0u8; 2];
        let n = read_full(&mut file, &mut magic)?;
        file.seek(SeekFrom::Start(0))?;
        if n == 2 && magic == [0x1f, 0x8b] {
            let gz = flate2::read::MultiGzDecoder::new(BufReader::new(file));
            let mut input = Input::from_stream(Box::new(gz), device, inode)?;
            input.gzip = true;
            return Ok(input);
        }
        let mut head = vec![0u8; HEAD_BYTES];
        let n = read_full(&mut file, &mut head)
            .with_context(|| format!("reading {}", path.display()))?;
        head.truncate(n);
        Ok(Input {
            head,
            device,
            inode,
            gzip: false,
            file: Some(file),
            stream: None,
        })
    }

    fn from_stream(
        mut stream: Box<dyn Read>,
        device: Option<u64>,
        inode: Option<u64>,
    ) -> anyhow::Result<Input> {
        let mut head = vec![0u8; HEAD_BYTES];
        let n = read_full(&mut stream, &mut head).context("reading the input")?;
        head.truncate(n);
        Ok(Input {
            head,
            device,
            inode,
            gzip: false,
            file: None,
            stream: Some(stream),
        })
    }

    /// The content from byte `offset` on, or `None` when the content is shorter than that
    /// (it was rewritten since it was imported).
    pub fn from_offset(self, offset: u64) -> anyhow::Result<Option<Lines>> {
        let head_len = self.head.len() as u64;
        let reader: Box<dyn Read> = if offset <= head_len {
            let rest: Box<dyn Read> = match (self.file, self.stream) {
                (Some(f), _) => Box::new(f),
                (None, Some(s)) => s,
                (None, None) => Box::new(io::empty()),
            };
            Box::new(io::Cursor::new(self.head[offset as usize..].to_vec()).chain(rest))
        } else if let Some(mut f) = self.file {
            let len = f.metadata()?.len();
            if len < offset {
                return Ok(None);
            }
            f.seek(SeekFrom::Start(offset))?;
            Box::new(f)
        } else {
            let mut s = self.stream.unwrap_or_else(|| Box::new(io::empty()));
            let skip = offset - head_len;
            let skipped = io::copy(&mut (&mut s).take(skip), &mut io::sink())
                .context("reading the input up to where the last import stopped")?;
            if skipped < skip {
                return Ok(None);
            }
            s
        };
        Ok(Some(Lines {
            reader: BufReader::with_capacity(64 * 1024, reader),
        }))
    }
}

/// Lines of an input, each with its end (`\n` kept, so that the bytes can be counted).
pub struct Lines {
    reader: BufReader<Box<dyn Read>>,
}

/// One line read.
pub enum Line {
    /// A whole line (ends with `\n`), or the last one of the input without it.
    Text(Vec<u8>),
    /// A line longer than [`MAX_LINE`], skipped: its length in bytes (with its `\n`).
    TooLong(u64),
}

impl Lines {
    /// The next line, `None` at the end.
    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        let mut buf = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        if buf.len() <= MAX_LINE || buf.ends_with(b"\n") {
            return Ok(Some(Line::Text(buf)));
        }
        // Too long: skip to the end of the line.
        let mut skipped = buf.len() as u64;
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.reader.consume(i + 1);
                    skipped += i as u64 + 1;
                    break;
                }
                None => {
                    let len = chunk.len();
                    self.reader.consume(len);
                    skipped += len as u64;
                }
            }
        }
        Ok(Some(Line::TooLong(skipped)))
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(unix)]
fn identity(f: &File) -> (Option<u64>, Option<u64>) {
    use std::os::unix::fs::MetadataExt;
    f.metadata()
        .map(|m| (Some(m.dev()), Some(m.ino())))
        .unwrap_or((None, None))
}

#[cfg(not(unix))]
fn identity(_: &File) -> (Option<u64>, Option<u64>) {
    (None, None)
}
