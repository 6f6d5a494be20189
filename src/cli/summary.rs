//! The one summary line per mailbox (poll, watch) or per ingest, for cron mail and the journal:
//!
//! ```text
//! bounces: ok new=12 already_stored=0 | new messages by kind: bounce=9 delay=0 delivery_report=1 auto_reply=1 challenge=1 complaint=1 unsubscribe=0 other=0 unparsed=0 | bounced recipients by label: hard=6 soft=2 blocked=1 invalid=0 | recipients not counted: forged=0 | errors=0
//! ```
//!
//! Each group says what it counts: messages (new and already stored), the new ones by kind
//! (named as in the ledger's `messages.kind`), the recipients the bounces name, by label (a
//! bounce may name several), and the recipients stored as forged (a VERP return path whose
//! tag does not verify: evidence kept, counted against nothing, so not in the labels). Every kind has its own count, so a line adds up: the kinds sum to
//! `new`. The failures themselves are printed once, on stderr, not repeated here.

use crate::analysis::{Kind, Label};
use crate::ledger::RunSummary;

/// The summary line of `name` (a mailbox, `mailbox [folder]`, or `files`).
pub fn line(name: &str, failed: bool, s: &RunSummary) -> String {
    let kinds = Kind::ALL
        .iter()
        .map(|k| format!("{}={}", k.as_str(), s.kind(*k)))
        .collect::<Vec<_>>()
        .join(" ");
    let labels = [Label::Hard, Label::Soft, Label::Blocked, Label::Invalid]
        .iter()
        .map(|l| format!("{}={}", l.as_str(), s.label(*l)))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "{name}: {} new={} already_stored={} | new messages by kind: {kinds} | bounced recipients by label: {labels} | recipients not counted: forged={} | errors={}",
        if failed { "FAILED" } else { "ok" },
        s.new,
        s.duplicates,
        s.forged,
        s.errors.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_count_is_named_for_what_it_counts() {
        let mut s = RunSummary {
            new: 4,
            duplicates: 2,
            ..Default::default()
        };
        s.kinds.insert(Kind::Bounce, 1);
        s.kinds.insert(Kind::DeliveryReport, 1);
        s.kinds.insert(Kind::Challenge, 1);
        s.kinds.insert(Kind::AutoReply, 1);
        s.bounces_by_label.insert(Label::Hard, 3);
        let l = line("b", false, &s);
        assert_eq!(
            l,
            "b: ok new=4 already_stored=2 | new messages by kind: bounce=1 delay=0 delivery_report=1 auto_reply=1 challenge=1 complaint=0 unsubscribe=0 other=0 unparsed=0 | bounced recipients by label: hard=3 soft=0 blocked=0 invalid=0 | recipients not counted: forged=0 | errors=0"
        );
    }
}
