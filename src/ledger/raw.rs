//! A message's raw bytes as the ledger keeps them: compressed with zstd (level 1) when that
//! saves space, with the format in `messages.raw_encoding` (NULL: the bytes as received, which
//! is what ledgers before schema 6 hold; `zstd`: a zstd frame). The raw bytes are most of what
//! a message costs on disk (5.9 of 7.2 KB on the bench data), and zstd at level 1 shrinks mail
//! about 2.7 times for some 14 microseconds of CPU, spent on the analysis threads, not by the
//! writer.
//!
//! To read one from `sqlite3`: `rebound show-raw ID` prints a stored message as it arrived.

use anyhow::Context;

/// How `messages.raw` is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawEncoding {
    /// The bytes as received (`raw_encoding` NULL).
    Plain,
    /// A zstd frame (`raw_encoding = 'zstd'`).
    Zstd,
}

impl RawEncoding {
    /// The column value.
    pub fn column(self) -> Option<&'static str> {
        match self {
            RawEncoding::Plain => None,
            RawEncoding::Zstd => Some("zstd"),
        }
    }

    pub fn from_column(value: Option<&str>) -> anyhow::Result<RawEncoding> {
        match value {
            None => Ok(RawEncoding::Plain),
            Some("zstd") => Ok(RawEncoding::Zstd),
            Some(other) => anyhow::bail!("unknown raw encoding {other:?} in the ledger"),
        }
    }
}

/// Raw bytes in the form they are stored in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRaw {
    pub bytes: Vec<u8>,
    pub encoding: RawEncoding,
    /// The size of the bytes as received.
    pub size: usize,
}

/// zstd's level 1: its fastest setting with a real gain on mail.
const LEVEL: i32 = 1;

/// Below this, a zstd frame's overhead is not worth it.
const MIN_COMPRESSED: usize = 256;

thread_local! {
    /// One compression context per thread: making one allocates and clears zstd's tables,
    /// which cost more than compressing a bounce (a quarter of an analysis thread's time when
    /// a context was made per message).
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// `raw` compressed with this thread's context.
fn compress(raw: &[u8]) -> Option<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Compressor::new(LEVEL).ok();
        }
        c.as_mut()?.compress(raw).ok()
    })
}

/// The stored form of `raw`: compressed when that makes it smaller.
pub fn encode(raw: &[u8]) -> StoredRaw {
    if raw.len() >= MIN_COMPRESSED
        && let Some(z) = compress(raw)
        && z.len() < raw.len()
    {
        return StoredRaw {
            bytes: z,
            encoding: RawEncoding::Zstd,
            size: raw.len(),
        };
    }
    StoredRaw {
        bytes: raw.to_vec(),
        encoding: RawEncoding::Plain,
        size: raw.len(),
    }
}

/// The bytes as received, from their stored form (`size` is `messages.raw_size`: no frame may
/// decompress to more).
pub fn decode(bytes: Vec<u8>, encoding: RawEncoding, size: usize) -> anyhow::Result<Vec<u8>> {
    match encoding {
        RawEncoding::Plain => Ok(bytes),
        RawEncoding::Zstd => {
            zstd::bulk::decompress(&bytes, size).context("decompressing a stored message")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_round_trips_and_small_or_random_bytes_stay_plain() {
        let mail = "Received: from a by b\nSubject: x\n\n".repeat(50);
        let stored = encode(mail.as_bytes());
        assert_eq!(stored.encoding, RawEncoding::Zstd);
        assert!(stored.bytes.len() < mail.len() / 2);
        assert_eq!(
            decode(stored.bytes, stored.encoding, stored.size).unwrap(),
            mail.as_bytes()
        );
        let small = encode(b"Subject: x\n\nhi\n");
        assert_eq!(small.encoding, RawEncoding::Plain);
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let n = encode(&noise);
        assert_eq!(decode(n.bytes, n.encoding, n.size).unwrap(), noise);
        assert!(RawEncoding::from_column(Some("lz4")).is_err());
    }
}
