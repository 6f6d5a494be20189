//! Unit tests of the ledger with analyses built by hand where the engine's verdicts are not the
//! point: IMAP bookkeeping, failed fetches, rate limiting, delivery reports.

use super::*;
use crate::analysis::{Reason, Recipient};

fn ledger() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(&dir.path().join("t.db"), Policy::default()).unwrap();
    (dir, l)
}

fn imap(uidvalidity: u32, uid: u32) -> Origin {
    Origin {
        mailbox: Some("bounces".into()),
        folder: Some("INBOX".into()),
        uidvalidity: Some(uidvalidity),
        uid: Some(uid),
        source_path: None,
        internal_date: Some("2026-11-02T10:00:00Z".into()),
    }
}

fn bounce(address: &str, label: Label, reason: Reason, status: &str, when: &str) -> Analysis {
    Analysis {
        kind: Kind::Bounce,
        recipients: vec![Recipient {
            address: address.into(),
            action: Some("failed".into()),
            label: Some(label),
            reason: Some(reason),
            status: Some(status.into()),
            last_attempt: Some(when.into()),
            ..Recipient::default()
        }],
        ..Analysis::unparsed("")
    }
}

fn count(l: &Ledger, sql: &str) -> i64 {
    l.connection().query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn imap_uid_is_idempotent_and_advances_the_folder_in_the_same_transaction() {
    let (_d, mut l) = ledger();
    assert_eq!(l.folder_state("bounces", "INBOX").unwrap(), None);
    let a = l.ingest(b"Subject: one\n\nbody\n", &imap(7, 5)).unwrap();
    assert!(!a.duplicate);
    assert_eq!(
        l.folder_state("bounces", "INBOX").unwrap(),
        Some(FolderState {
            uidvalidity: 7,
            last_uid: 5
        })
    );
    // Same UID, other bytes: a duplicate by IMAP identity.
    let b = l
        .ingest(b"Subject: one, refetched\n\nbody\n", &imap(7, 5))
        .unwrap();
    assert!(b.duplicate);
    assert_eq!(b.message_row, a.message_row);
    // A lower UID never moves the mark back.
    l.ingest(b"Subject: two\n\nbody\n", &imap(7, 3)).unwrap();
    assert_eq!(
        l.folder_state("bounces", "INBOX")
            .unwrap()
            .unwrap()
            .last_uid,
        5
    );
    // Same bytes under a higher UID: a duplicate that still advances the mark.
    let c = l.ingest(b"Subject: one\n\nbody\n", &imap(7, 9)).unwrap();
    assert!(c.duplicate);
    assert_eq!(
        l.folder_state("bounces", "INBOX")
            .unwrap()
            .unwrap()
            .last_uid,
        9
    );
    // UIDVALIDITY changed: the folder row is replaced; the rescan's messages are duplicates.
    let d = l.ingest(b"Subject: two\n\nbody\n", &imap(8, 1)).unwrap();
    assert!(d.duplicate);
    assert_eq!(
        l.folder_state("bounces", "INBOX").unwrap(),
        Some(FolderState {
            uidvalidity: 8,
            last_uid: 1
        })
    );
    assert_eq!(count(&l, "SELECT count(*) FROM messages"), 2);
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM messages WHERE received_at = '2026-11-02T10:00:00Z' AND internal_date IS NOT NULL"
        ),
        2
    );
}

#[test]
fn failed_fetches_are_kept_unparsed_with_their_error_and_skipped_by_reclassify() {
    let (_d, mut l) = ledger();
    let o = l
        .ingest_failed(
            b"From: x@y\nSubject: half",
            &imap(1, 4),
            "connection reset after 3 tries",
        )
        .unwrap();
    assert_eq!((o.kind, o.duplicate), (Kind::Unparsed, false));
    assert_eq!(
        l.folder_state("bounces", "INBOX")
            .unwrap()
            .unwrap()
            .last_uid,
        4
    );
    let error: String = l
        .connection()
        .query_row(
            "SELECT error FROM messages WHERE fetch_failed = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(error, "connection reset after 3 tries");
    assert_eq!(l.reclassify(None).unwrap().messages, 0);
    assert!(
        l.ingest_failed(b"From: x@y\nSubject: half", &imap(1, 4), "again")
            .unwrap()
            .duplicate
    );
}

#[test]
fn rate_limiting_pauses_with_its_own_thresholds_and_retries_the_address() {
    let (_d, mut l) = ledger();
    for i in 0..10 {
        let a = bounce(
            &format!("u{i}@slow.example"),
            Label::Soft,
            Reason::RateLimited,
            "4.7.0",
            &format!("Mon, 2 Nov 2026 10:{:02}:00 +0000", i * 5),
        );
        l.ingest_analysis(format!("msg {i}").as_bytes(), &Origin::default(), &a)
            .unwrap();
        let pauses = count(
            &l,
            "SELECT count(*) FROM domain_pauses WHERE reason = 'rate_limited'",
        );
        assert_eq!(
            pauses,
            i64::from(i == 9),
            "paused at the 10th event, not before"
        );
    }
    assert_eq!(
        l.connection()
            .query_row("SELECT paused_until FROM domain_pauses", [], |r| r
                .get::<_, String>(0))
            .unwrap(),
        "2026-11-02T12:45:00Z"
    );
    assert_eq!(
        count(&l, "SELECT count(*) FROM addresses WHERE state = 'retry'"),
        10
    );
}

#[test]
fn a_delivery_report_lifts_quarantine_and_events_take_their_time_from_the_dsn() {
    let (_d, mut l) = ledger();
    let hard = bounce(
        "Zed@GMAIL.com",
        Label::Hard,
        Reason::Undetermined,
        "5.0.0",
        "Mon, 2 Nov 2026 10:00:00 +0000",
    );
    l.ingest_analysis(b"one", &Origin::default(), &hard)
        .unwrap();
    let mut delivered = bounce(
        "zed@gmail.com",
        Label::Soft,
        Reason::Undetermined,
        "2.0.0",
        "Tue, 3 Nov 2026 10:00:00 +0000",
    );
    delivered.kind = Kind::DeliveryReport;
    delivered.recipients[0].action = Some("delivered".into());
    delivered.recipients[0].label = None;
    l.ingest_analysis(b"two", &Origin::default(), &delivered)
        .unwrap();
    let rules: String = l
        .connection()
        .query_row(
            "SELECT group_concat(rule, ',') FROM state_changes WHERE address = 'zed@gmail.com'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rules, "provider_quarantine,alive");
    // A later non-explicit hard bounce is a "first" again (the address was proven alive).
    let again = bounce(
        "zed@gmail.com",
        Label::Hard,
        Reason::Undetermined,
        "5.0.0",
        "Wed, 4 Nov 2026 10:00:00 +0000",
    );
    l.ingest_analysis(b"three", &Origin::default(), &again)
        .unwrap();
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM addresses WHERE state = 'quarantined'"
        ),
        1
    );
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM events WHERE time_source = 'last_attempt'"
        ),
        3
    );
}

#[test]
fn addresses_are_normalized() {
    assert_eq!(
        normalize_address("\"Ana\" <Ana@Example.ORG>").as_deref(),
        Some("ana@example.org")
    );
    assert_eq!(
        normalize_address("rfc822; bob@example.net").as_deref(),
        Some("bob@example.net")
    );
    assert_eq!(normalize_address("  "), None);
    assert_eq!(domain_of("x@example.org."), "example.org");
}

/// What the projection holds, row by row, for comparing two ways of building it.
fn projection_snapshot(l: &Ledger) -> Vec<String> {
    let mut out = Vec::new();
    for sql in [
        "SELECT address || state || coalesce(suppression_reason, '') || attempts || soft_count
             || coalesce(last_event_id, '') || coalesce(state_event_id, '') || coalesce(next_retry_at, '')
             || first_seen_at || last_seen_at || coalesce(last_status, '') || coalesce(last_label, '')
             || coalesce(last_diagnostic, '') FROM addresses ORDER BY address",
        "SELECT address || changed_at || from_state || to_state || rule || detail || coalesce(event_id, '')
             FROM state_changes ORDER BY address, id",
    ] {
        let mut stmt = l.connection().prepare(sql).unwrap();
        out.extend(
            stmt.query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .map(Result::unwrap),
        );
    }
    out
}

/// Late events (old mail arriving after newer mail, many with equal times) on a checkpointed
/// address are merged into its history in memory and folded again: the result must be exactly
/// the full replay's, state changes included.
#[test]
fn late_events_on_a_checkpointed_address_equal_a_full_replay() {
    let (_dir, mut l) = ledger();
    let kinds = [
        (Label::Soft, Reason::MailboxFull, "4.2.2"),
        (Label::Soft, Reason::MailboxFull, "4.2.2"),
        (Label::Soft, Reason::RateLimited, "4.7.0"),
        (Label::Blocked, Reason::RateLimited, "5.7.1"),
    ];
    // 40 events in time order (a checkpoint with its history), then 80 in a scrambled order
    // over the same span, three per distinct time.
    let order = (0..40u32).chain((0..80u32).map(|i| (i * 37) % 80 + 40));
    for (n, i) in order.enumerate() {
        let slot = if i < 40 { i * 2 } else { (i - 40) / 3 * 2 + 1 };
        let (label, reason, status) = kinds[(i as usize * 5 / 3) % kinds.len()];
        let when = format!(
            "Mon, {} Nov 2026 {:02}:{:02}:00 +0000",
            2 + slot / 48,
            (slot / 2) % 24,
            (slot % 2) * 30
        );
        let mut a = bounce("late@example.org", label, reason, status, &when);
        if i % 7 == 3 {
            // Signs of life, so that the state keeps changing back and forth.
            a.kind = Kind::DeliveryReport;
            a.recipients[0].action = Some("delivered".into());
            a.recipients[0].label = None;
        }
        let raw = format!("X-Seq: {i}\n\nbody\n");
        l.ingest_analysis(raw.as_bytes(), &Origin::file(format!("m{i}")), &a)
            .unwrap();
        if n == 70 {
            l.reactivate("late@example.org", true, "test").unwrap();
        }
    }
    let incremental = projection_snapshot(&l);
    assert!(incremental.len() > 10, "{incremental:?}");
    l.rebuild_projection().unwrap();
    assert_eq!(incremental, projection_snapshot(&l));
}

/// The checkpointed replay (events arriving in time order, one per transaction, over many
/// transactions) must leave exactly what a full replay of the same events gives.
#[test]
fn checkpointed_replay_equals_a_full_replay() {
    let (_dir, mut l) = ledger();
    let labels = [
        (Label::Soft, Reason::MailboxFull, "4.2.2"),
        (Label::Soft, Reason::RateLimited, "4.7.0"),
        (Label::Blocked, Reason::RateLimited, "5.7.1"),
    ];
    for i in 0..120u32 {
        let (label, reason, status) = labels[(i as usize * 7 / 5) % labels.len()];
        let when = format!(
            "Mon, {} Nov 2026 {:02}:{:02}:00 +0000",
            2 + i / 48,
            (i / 2) % 24,
            (i % 2) * 30
        );
        let mut a = bounce("busy@example.org", label, reason, status, &when);
        if i % 5 == 4 {
            // A sign of life now and then, so that the state keeps changing.
            a.kind = Kind::DeliveryReport;
            a.recipients[0].action = Some("delivered".into());
            a.recipients[0].label = None;
        }
        let raw = format!("X-Seq: {i}\n\nbody\n");
        l.ingest_analysis(raw.as_bytes(), &Origin::file(format!("m{i}")), &a)
            .unwrap();
        if i == 60 {
            l.reactivate("busy@example.org", true, "test").unwrap();
        }
    }
    let snapshot = |l: &Ledger| -> Vec<String> {
        let mut out = Vec::new();
        for sql in [
            "SELECT address || state || coalesce(suppression_reason, '') || attempts || soft_count
                 || coalesce(last_event_id, '') || coalesce(state_event_id, '') || coalesce(next_retry_at, '')
                 || first_seen_at || last_seen_at || coalesce(last_status, '') FROM addresses ORDER BY address",
            "SELECT address || changed_at || from_state || to_state || rule || detail || coalesce(event_id, '')
                 FROM state_changes ORDER BY address, id",
        ] {
            let mut stmt = l.connection().prepare(sql).unwrap();
            out.extend(stmt.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap));
        }
        out
    };
    let incremental = snapshot(&l);
    assert!(incremental.len() > 40, "{incremental:?}");
    l.rebuild_projection().unwrap();
    assert_eq!(incremental, snapshot(&l));
}

/// Commits are synced to disk unless the caller says nothing irreversible follows them.
#[test]
fn commits_are_synced_unless_relaxed() {
    let (_dir, l) = ledger();
    let synchronous = |l: &Ledger| count(l, "PRAGMA synchronous");
    assert_eq!(synchronous(&l), 2, "FULL by default");
    l.sync_every_commit(false).unwrap();
    assert_eq!(synchronous(&l), 1, "NORMAL");
    l.sync_every_commit(true).unwrap();
    assert_eq!(synchronous(&l), 2);
}
