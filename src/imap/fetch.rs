//! Finding and fetching what is new in a folder, in bounded batches.
//!
//! The candidates are the UIDs above the stored watermark (all of them after a UIDVALIDITY
//! change) plus, when the server keeps keywords, any older message still lacking our keyword:
//! one that was stored but whose post-processing action a crash interrupted. Re-reading such a
//! message is harmless: the ledger recognises it and only the action is applied again.
//!
//! The candidates' sizes (`RFC822.SIZE`) are fetched first, so that batches are bounded in
//! bytes as well as in count: a mailbox of 20 MB messages is read a message or two per batch, a
//! mailbox of small bounces hundreds per batch, and a poll's memory does not depend on what is
//! in the folder. Bodies are fetched with `BODY.PEEK[]` (never setting `\Seen`) one batch at a
//! time and streamed message by message. Messages above the size limit get only their header
//! fetched.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use async_imap::types::Fetch;
use futures::TryStreamExt;

use super::connect::{Session, timed};

/// How to find the messages to read in a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `UID SEARCH` criteria, or `None` when there is certainly nothing to read.
    pub query: Option<String>,
    /// UIDs at or below this were already stored; only relevant without keywords.
    pub above: u32,
}

/// Decides the search for one folder. `last_uid` is 0 when the folder was never read or its
/// UIDVALIDITY changed (a re-scan).
pub fn plan(last_uid: u32, uid_next: Option<u32>, keyword: Option<&str>) -> Plan {
    let nothing_above = last_uid > 0 && uid_next.is_some_and(|n| last_uid.saturating_add(1) >= n);
    let query = match (last_uid, keyword) {
        (0, _) => Some("ALL".to_string()),
        (_, Some(kw)) if nothing_above => Some(format!("UNKEYWORD {kw}")),
        (_, None) if nothing_above => None,
        (n, Some(kw)) => Some(format!("OR UID {}:* UNKEYWORD {kw}", n + 1)),
        (n, None) => Some(format!("UID {}:*", n + 1)),
    };
    // Without keywords, `UID n:*` also matches the highest UID when it is below n: filter.
    Plan {
        query,
        above: if keyword.is_some() { 0 } else { last_uid },
    }
}

/// Runs the plan's search: returns the sorted candidate UIDs and their sizes (`RFC822.SIZE`).
pub async fn candidates(
    session: &mut Session,
    plan: &Plan,
    limit: std::time::Duration,
) -> anyhow::Result<(Vec<u32>, HashMap<u32, u64>)> {
    let Some(query) = &plan.query else {
        return Ok((Vec::new(), HashMap::new()));
    };
    let found = timed(
        limit,
        &format!("UID SEARCH {query}"),
        session.uid_search(query),
    )
    .await?;
    let mut uids: Vec<u32> = found.into_iter().filter(|&u| u > plan.above).collect();
    uids.sort_unstable();
    let mut sizes = HashMap::with_capacity(uids.len());
    if uids.is_empty() {
        return Ok((uids, sizes));
    }
    let set = uid_set(&uids);
    let what = format!("UID FETCH {set} (RFC822.SIZE)");
    let mut stream = timed(limit, &what, session.uid_fetch(&set, "(UID RFC822.SIZE)")).await?;
    while let Some(f) = timed(limit, &what, stream.try_next()).await? {
        if let (Some(uid), Some(size)) = (f.uid, f.size) {
            sizes.insert(uid, u64::from(size));
        }
    }
    Ok((uids, sizes))
}

/// What a header-only message is counted as in a batch's bytes (its size is the body's).
const HEADER_BYTES: u64 = 64 * 1024;

/// Splits sorted UIDs into batches of at most `max_count` messages and, unless a single
/// message is larger, `max_bytes` bytes (by `RFC822.SIZE`; a message of unknown size counts as
/// `max_bytes / max_count`). Oversized messages (`large`) count as their header.
pub fn batches(
    uids: &[u32],
    sizes: &HashMap<u32, u64>,
    large: &HashSet<u32>,
    max_count: usize,
    max_bytes: u64,
) -> Vec<Vec<u32>> {
    let max_count = max_count.max(1);
    let unknown = max_bytes / max_count as u64;
    let mut out: Vec<Vec<u32>> = Vec::new();
    let mut bytes = 0u64;
    for &uid in uids {
        let cost = cost(uid, sizes, large, unknown);
        match out.last_mut() {
            Some(b) if b.len() < max_count && bytes + cost <= max_bytes => {
                b.push(uid);
                bytes += cost;
            }
            _ => {
                out.push(vec![uid]);
                bytes = cost;
            }
        }
    }
    out
}

/// The bytes a batch will hold once fetched (by `RFC822.SIZE`; a large message's header only).
pub fn batch_cost(
    batch: &[u32],
    sizes: &HashMap<u32, u64>,
    large: &HashSet<u32>,
    max_count: usize,
    max_bytes: u64,
) -> u64 {
    let unknown = max_bytes / max_count.max(1) as u64;
    batch.iter().map(|&u| cost(u, sizes, large, unknown)).sum()
}

/// What fetching one message costs in bytes: its size, the header only for a large one, and
/// a batch's share when the server did not say.
fn cost(uid: u32, sizes: &HashMap<u32, u64>, large: &HashSet<u32>, unknown: u64) -> u64 {
    match (large.contains(&uid), sizes.get(&uid)) {
        (true, s) => s.copied().unwrap_or(HEADER_BYTES).min(HEADER_BYTES),
        (false, Some(&s)) => s,
        (false, None) => unknown,
    }
}

/// Compresses sorted UIDs into an IMAP sequence set: `1:3,7,9:10`.
pub fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// Splits a sorted batch into consecutive runs of the same size class, so that messages are
/// still processed in ascending UID order (the watermark must never pass an unread message).
pub fn runs(batch: &[u32], large: &HashSet<u32>) -> Vec<(bool, Vec<u32>)> {
    let mut out: Vec<(bool, Vec<u32>)> = Vec::new();
    for &uid in batch {
        let is_large = large.contains(&uid);
        match out.last_mut() {
            Some((l, v)) if *l == is_large => v.push(uid),
            _ => out.push((is_large, vec![uid])),
        }
    }
    out
}

/// The FETCH items: the whole message, or only its header for oversized ones.
pub fn items(header_only: bool) -> &'static str {
    if header_only {
        "(UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER])"
    } else {
        "(UID RFC822.SIZE INTERNALDATE BODY.PEEK[])"
    }
}

/// Fetches one run and hands each message to `each` in the order the server sends them (UID
/// order for Dovecot and every server we know). Each message, not the whole fetch, has the
/// deadline, so a large batch on a slow link is fine but a stalled one is not.
pub async fn fetch_run(
    session: &mut Session,
    uids: &[u32],
    header_only: bool,
    limit: std::time::Duration,
    mut each: impl FnMut(Fetch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let set = uid_set(uids);
    let what = format!("UID FETCH {set}");
    let mut stream = timed(limit, &what, session.uid_fetch(&set, items(header_only))).await?;
    let mut received = 0usize;
    loop {
        let item = timed(limit, &what, stream.try_next()).await?;
        match item {
            Some(fetch) => {
                received += usize::from(fetch.uid.is_some_and(|u| uids.binary_search(&u).is_ok()));
                each(fetch).with_context(|| what.clone())?
            }
            None => break,
        }
    }
    drop(stream);
    if received < uids.len() {
        // async-imap ends the stream quietly when the connection closes between two responses,
        // exactly as when the command completes (and a NOOP on the dead connection may quietly
        // succeed too). So fewer messages than asked for is an error: the session is dropped
        // and retried. Messages expunged meanwhile are not searched again by the retry; one the
        // server never returns fails at the same place twice and is recorded as `unparsed`.
        anyhow::bail!(
            "{what}: the server sent {received} of {} messages (connection lost?)",
            uids.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_compress_ranges() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[5]), "5");
    }

    #[test]
    fn runs_keep_uid_order() {
        let large: HashSet<u32> = [3, 4].into();
        assert_eq!(
            runs(&[1, 2, 3, 4, 5], &large),
            vec![(false, vec![1, 2]), (true, vec![3, 4]), (false, vec![5])]
        );
    }

    #[test]
    fn batches_are_bounded_in_count_and_bytes() {
        let uids: Vec<u32> = (1..=10).collect();
        let mut sizes: HashMap<u32, u64> = uids.iter().map(|&u| (u, 1_000)).collect();
        sizes.insert(4, 20_000_000);
        sizes.insert(5, 20_000_000);
        sizes.insert(9, 90_000_000);
        let large: HashSet<u32> = [9].into();
        let b = batches(&uids, &sizes, &large, 3, 16_000_000);
        assert_eq!(
            b,
            vec![vec![1, 2, 3], vec![4], vec![5], vec![6, 7, 8], vec![9, 10]],
            "a 20 MB message is a batch of its own; an oversized one counts as its header"
        );
    }

    #[test]
    fn plans() {
        assert_eq!(plan(0, Some(10), Some("$R")).query.as_deref(), Some("ALL"));
        assert_eq!(
            plan(9, Some(10), Some("$R")).query.as_deref(),
            Some("UNKEYWORD $R")
        );
        assert_eq!(plan(9, Some(10), None).query, None);
        assert_eq!(
            plan(5, Some(10), Some("$R")).query.as_deref(),
            Some("OR UID 6:* UNKEYWORD $R")
        );
        let p = plan(5, Some(10), None);
        assert_eq!((p.query.as_deref(), p.above), (Some("UID 6:*"), 5));
    }
}
