//! The pure half of ingesting: a message's bytes in, the [`Prepared`] form the ledger writes
//! out (its sha256, its analysis with the settings in use, its raw bytes compressed). All of it
//! runs on the analysis threads, so that the writer does nothing but write.

use std::sync::Arc;

use super::pool;
use crate::analysis::{Analysis, Settings};
use crate::ledger::{Origin, Prepared, raw, sha256_hex};

/// A message to ingest: its bytes and where it came from.
#[derive(Debug, Clone)]
pub struct Message {
    pub raw: Vec<u8>,
    pub origin: Origin,
    /// Set when the message could not be fetched whole (too large: only its header), or failed
    /// again and again: it is stored as `unparsed` with this error, never dropped.
    pub failed: Option<String>,
    /// The sha256 of `raw` when the caller has it already (file ingest hashes to skip what
    /// the ledger holds): not computed twice.
    pub sha256: Option<String>,
}

impl Message {
    pub fn new(raw: Vec<u8>, origin: Origin) -> Message {
        Message {
            raw,
            origin,
            failed: None,
            sha256: None,
        }
    }

    pub fn failed(raw: Vec<u8>, origin: Origin, error: impl Into<String>) -> Message {
        Message {
            raw,
            origin,
            failed: Some(error.into()),
            sha256: None,
        }
    }
}

/// Hashes, analyses (with the rule table and VERP settings given) and compresses messages on
/// the analysis threads, in order.
pub fn prepare(messages: Vec<Message>, settings: &Settings) -> Vec<Prepared> {
    let settings = settings.clone();
    pool::map(
        messages,
        Arc::new(move |m: Message| prepare_one(m, &settings)),
    )
}

fn prepare_one(m: Message, settings: &Settings) -> Prepared {
    let Message {
        raw,
        origin,
        failed,
        sha256: known_sha,
    } = m;
    // Nothing could be read: a placeholder naming the message, so that two such messages are
    // not mistaken for one (the ledger deduplicates by content hash).
    let raw = if failed.is_some() && raw.is_empty() {
        placeholder(&origin)
    } else {
        raw
    };
    let sha256 = match known_sha {
        // (A failed message may have been replaced by its placeholder above.)
        Some(sha) if failed.is_none() => sha,
        _ => sha256_hex(&raw),
    };
    let analysis = match &failed {
        Some(error) => Analysis::unparsed(error.clone()),
        None => analyze_guarded(&raw, settings),
    };
    Prepared {
        sha256,
        origin,
        analysis,
        raw: raw::encode(&raw),
        fetch_failed: failed.is_some(),
    }
}

/// The analysis is promised never to panic; if it does anyway, the message is still kept.
fn analyze_guarded(raw: &[u8], settings: &Settings) -> Analysis {
    std::panic::catch_unwind(|| settings.analyze(raw)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Analysis::unparsed(format!("analysis panicked: {what}"))
    })
}

fn placeholder(origin: &Origin) -> Vec<u8> {
    format!(
        "X-Rebound-Unreadable: {}/{}/{}/{}\r\n\r\n",
        origin.mailbox.as_deref().unwrap_or("-"),
        origin.folder.as_deref().unwrap_or("-"),
        origin.uidvalidity.unwrap_or(0),
        origin.uid.unwrap_or(0)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::RuleSet;

    #[test]
    fn prepared_in_order_with_the_rule_set_given() {
        let local = "[[rule]]\nid = \"local=acme\"\npattern = \"acme overflow\"\nreason = \"mailbox_full\"\n";
        let rules = Settings::new(Arc::new(RuleSet::with_local(local).unwrap()));
        let dsn = |n: usize| {
            format!(
                "From: MAILER-DAEMON@mx.example.net\nTo: news@example.com\nSubject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\nFinal-Recipient: rfc822; u{n}@example.org\nAction: failed\nStatus: 5.0.0\nDiagnostic-Code: smtp; 550 acme overflow\n\n--B--\n"
            )
        };
        let messages: Vec<Message> = (0..20)
            .map(|n| Message::new(dsn(n).into_bytes(), Origin::file(format!("m{n}"))))
            .collect();
        let prepared = prepare(messages, &rules);
        assert_eq!(prepared.len(), 20);
        for (n, p) in prepared.iter().enumerate() {
            assert_eq!(
                p.origin.source_path.as_deref(),
                Some(format!("m{n}").as_str())
            );
            assert_eq!(
                p.analysis.recipients[0].address,
                format!("u{n}@example.org")
            );
            assert_eq!(p.analysis.recipients[0].rule.as_deref(), Some("local=acme"));
            assert_eq!(p.sha256, sha256_hex(dsn(n).as_bytes()));
        }
        let failed = prepare(
            vec![Message::failed(
                Vec::new(),
                Origin::imap("mb", "INBOX", 7, 9, None),
                "too big",
            )],
            &rules,
        );
        assert!(failed[0].fetch_failed);
        assert_eq!(failed[0].analysis.error.as_deref(), Some("too big"));
    }
}
