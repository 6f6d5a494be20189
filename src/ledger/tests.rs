//! Unit tests of the ledger with analyses built by hand where the engine's verdicts are not the
//! point: IMAP bookkeeping, failed fetches, rate limiting, delivery reports.

use super::*;
use crate::analysis::{Action, Analysis, Kind, Label, Reason, Recipient, Signature};

fn ledger() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(&dir.path().join("t.db"), Policy::default(), "test-rules").unwrap();
    (dir, l)
}

/// A message prepared as the ingest pipeline would, with a given analysis.
fn prepared(raw: &[u8], origin: &Origin, analysis: &Analysis) -> Prepared {
    Prepared {
        sha256: sha256_hex(raw),
        origin: origin.clone(),
        analysis: analysis.clone(),
        raw: raw::encode(raw),
        fetch_failed: false,
    }
}

impl Ledger {
    /// One message through the analysis (built-in rules) into the ledger.
    fn ingest(&mut self, raw: &[u8], origin: &Origin) -> anyhow::Result<Outcome> {
        let a = crate::analysis::analyze(raw);
        self.ingest_analysis(raw, origin, &a)
    }

    /// One message with a given analysis.
    fn ingest_analysis(
        &mut self,
        raw: &[u8],
        origin: &Origin,
        analysis: &Analysis,
    ) -> anyhow::Result<Outcome> {
        self.write(&[prepared(raw, origin, analysis)])?
            .pop()
            .unwrap()
    }

    /// A message that could not be fetched whole, kept as `unparsed` with the reason.
    fn ingest_failed(
        &mut self,
        raw: &[u8],
        origin: &Origin,
        error: &str,
    ) -> anyhow::Result<Outcome> {
        let p = Prepared {
            fetch_failed: true,
            ..prepared(raw, origin, &Analysis::unparsed(error))
        };
        self.write(&[p])?.pop().unwrap()
    }
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
            action: Some(Action::Failed),
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
    assert_eq!(
        l.reclassify(
            &crate::analysis::Settings::new(crate::config::builtin_rules()),
            None,
            true
        )
        .unwrap()
        .messages,
        0
    );
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
    delivered.recipients[0].action = Some(Action::Delivered);
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

/// Late events (old mail arriving after newer mail, many with equal times) on an address with
/// a stored fold make it replay: the result must be exactly the full replay's, state changes
/// included.
#[test]
fn late_events_on_a_folded_address_equal_a_full_replay() {
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
            a.recipients[0].action = Some(Action::Delivered);
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

/// The stepped projection (events arriving in time order, one per transaction, over many
/// transactions) must leave exactly what a full replay of the same events gives.
#[test]
fn stepped_projection_equals_a_full_replay() {
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
            a.recipients[0].action = Some(Action::Delivered);
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

/// Everything the projection holds, for comparing two ways of building it: addresses (but
/// the wall-clock `updated_at` and the fold, which is how, not what), state changes, pauses.
fn full_projection(l: &Ledger) -> Vec<String> {
    let mut out = projection_snapshot(l);
    for sql in [
        "SELECT scope || domain || reason || started_at || paused_until || escalation || window_events
             || event_count || coalesce(first_event_id, '') || first_event_at
             || coalesce(last_event_id, '') || last_event_at || coalesce(rule, '')
             || coalesce(window_sends, '') || coalesce(window_rate, '') || coalesce(window_start, '')
             FROM domain_pauses ORDER BY scope, domain, reason, started_at",
        "SELECT domain || provider FROM provider_domains ORDER BY domain",
        "SELECT address || coalesce(suppression_reason, '') || is_role || coalesce(last_reason, '')
             FROM addresses ORDER BY address",
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

/// Marks an analysis as the VERP step does for a return path whose tag does not verify.
fn forge(a: &mut Analysis) {
    for r in &mut a.recipients {
        r.signature = Some(Signature::Invalid);
        r.forged = true;
    }
    a.verp = Some(crate::analysis::VerpAddress {
        address: a
            .recipients
            .first()
            .map_or(String::new(), |r| r.address.clone()),
        return_path: "bounces+x=example.org+aaaaaaaa@mail.example.com".into(),
        signature: Signature::Invalid,
    });
}

/// Forged evidence is stored, with its flag, and changes nothing: no state, no attempt, no
/// pause, no label in the outcome; the same bounces unforged suppress and pause.
#[test]
fn forged_events_are_kept_and_count_against_nothing() {
    let (_d, mut l) = ledger();
    let mut hard = bounce(
        "carl@example.org",
        Label::Hard,
        Reason::UserUnknown,
        "5.1.1",
        "Mon, 2 Nov 2026 10:00:00 +0000",
    );
    forge(&mut hard);
    let o = l
        .ingest_analysis(b"forged hard", &Origin::file("f1"), &hard)
        .unwrap();
    assert_eq!((o.labels.len(), o.forged), (0, 1));
    for i in 0..8 {
        let mut blocked = bounce(
            &format!("u{i}@blocked.example"),
            Label::Blocked,
            Reason::Blocklisted,
            "5.7.1",
            &format!("Mon, 2 Nov 2026 10:0{i}:00 +0000"),
        );
        forge(&mut blocked);
        l.ingest_analysis(
            format!("forged block {i}").as_bytes(),
            &Origin::file("f2"),
            &blocked,
        )
        .unwrap();
    }
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM events WHERE forged = 1 AND signature = 'invalid'"
        ),
        9
    );
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM addresses WHERE state <> 'active' OR attempts > 0"
        ),
        0
    );
    assert_eq!(count(&l, "SELECT count(*) FROM domain_pauses"), 0);
    assert_eq!(count(&l, "SELECT count(*) FROM state_changes"), 0);
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM v_why WHERE forged = 1 AND return_path IS NOT NULL"
        ),
        9
    );
    assert_eq!(count(&l, "SELECT count(*) FROM v_list_sources"), 0);
    // A rebuild reads the flag from the events: still nothing.
    l.rebuild_projection().unwrap();
    assert_eq!(count(&l, "SELECT count(*) FROM domain_pauses"), 0);
    assert_eq!(
        count(&l, "SELECT count(*) FROM addresses WHERE state <> 'active'"),
        0
    );
    // The same evidence, not forged, does count.
    let real = bounce(
        "carl@example.org",
        Label::Hard,
        Reason::UserUnknown,
        "5.1.1",
        "Mon, 2 Nov 2026 11:00:00 +0000",
    );
    let o = l
        .ingest_analysis(b"real hard", &Origin::file("r1"), &real)
        .unwrap();
    assert_eq!((o.labels, o.forged), (vec![Label::Hard], 0));
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM addresses WHERE address = 'carl@example.org' AND state = 'suppressed' AND attempts = 1"
        ),
        1
    );
    // A duplicate reports what the stored events count.
    let again = l
        .ingest_analysis(b"forged hard", &Origin::file("f1"), &hard)
        .unwrap();
    assert!(again.duplicate);
    assert_eq!((again.labels.len(), again.forged), (0, 1));
}

/// Forged bounces weigh in no rate: 8 forged blocks against 10 sends (imported after them, so
/// that the pauses are replayed from the stored events) pause nothing, by rate or by count; the
/// same blocks unforged pause the domain and its provider by rate.
#[test]
fn forged_bounces_count_in_no_rate() {
    for forged in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&dir.path().join("t.db"), rate_policy(), "test-rules").unwrap();
        let hour = chrono::DateTime::parse_from_rfc3339("2026-11-02T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let mut lot = sends::Sends::new();
        lot.insert(
            sends::SendKey {
                hour,
                recipient_domain: "gmail.com".into(),
                sender_domain: "shop.example".into(),
                campaign: String::new(),
            },
            10,
        );
        for i in 0..8 {
            let mut a = bounce(
                &format!("u{i}@gmail.com"),
                Label::Blocked,
                Reason::Blocklisted,
                "5.7.1",
                &format!("Mon, 2 Nov 2026 10:0{i}:00 +0000"),
            );
            if forged {
                forge(&mut a);
            }
            l.ingest_analysis(format!("block {i}").as_bytes(), &Origin::file("b"), &a)
                .unwrap();
        }
        // The sends come after the bounces: the pause histories are replayed from the events.
        l.add_sends(&lot).unwrap();
        let rules: Vec<String> = {
            let mut stmt = l
                .connection()
                .prepare("SELECT scope || ' ' || rule FROM domain_pauses ORDER BY scope")
                .unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        if forged {
            assert!(rules.is_empty(), "{rules:?}");
        } else {
            assert_eq!(rules, ["domain blocked_rate", "provider blocked_rate"]);
        }
    }
}

/// A policy whose rate rules fire on the small numbers of the property test.
fn rate_policy() -> Policy {
    let mut p = Policy::default();
    p.blocked.rate = percent::Percent::whole(25);
    p.blocked.min_sends = 4;
    p.blocked.window = span::Span::hours(2);
    p.rate_limited.rate = percent::Percent::whole(10);
    p.rate_limited.min_sends = 6;
    p.rate_limited.window = span::Span::hours(3);
    p
}

/// The property the incremental projection rests on: random events (a few addresses and
/// domains, every signal, many equal times, some stored as forged) and random sends to those domains, written in a
/// random order split into random batches (the sends interleaved with the messages, before or
/// after the bounces they weigh), leave exactly the projection a full replay of the same events
/// and sends gives. Half the rounds run a policy whose rate rules fire on these small numbers;
/// pauses per provider (gmail.com and googlemail.com, hotmail.co.uk) are in every round.
#[test]
fn any_arrival_order_and_batching_equals_a_full_replay() {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let addresses = [
        "a@gmail.com",
        "b@example.org",
        "c@example.org",
        "info@example.net",
        "d@slow.example",
        "e@googlemail.com",
        "f@hotmail.co.uk",
    ];
    let send_domains = [
        "gmail.com",
        "googlemail.com",
        "example.org",
        "example.net",
        "slow.example",
        "hotmail.co.uk",
    ];
    let (mut rate_pauses, mut provider_pauses, mut replays) = (0, 0, 0);
    let verdicts = [
        (
            Kind::Bounce,
            Some(Label::Hard),
            Reason::UserUnknown,
            "5.1.1",
        ),
        (
            Kind::Bounce,
            Some(Label::Hard),
            Reason::Undetermined,
            "5.0.0",
        ),
        (
            Kind::Bounce,
            Some(Label::Soft),
            Reason::MailboxFull,
            "4.2.2",
        ),
        (
            Kind::Bounce,
            Some(Label::Soft),
            Reason::RateLimited,
            "4.7.0",
        ),
        (
            Kind::Bounce,
            Some(Label::Blocked),
            Reason::Blocklisted,
            "5.7.1",
        ),
        (
            Kind::Bounce,
            Some(Label::Invalid),
            Reason::DomainNotFound,
            "5.1.2",
        ),
        (Kind::DeliveryReport, None, Reason::Undetermined, "2.0.0"),
        (Kind::Complaint, None, Reason::Undetermined, "5.0.0"),
        (Kind::Delay, Some(Label::Soft), Reason::MailboxFull, "4.2.2"),
    ];
    for round in 0..24 {
        // Half the rounds on a very coarse grid: most events of an address share their time,
        // so the order among equal times (sort key, recipient index, id) decides.
        let slots = if round < 12 { 60 } else { 4 };
        let n = 40 + (next() % 80) as usize;
        let mut messages: Vec<(Vec<u8>, Analysis)> = Vec::new();
        for i in 0..n {
            let address = addresses[(next() % addresses.len() as u64) as usize];
            let (kind, label, reason, status) = verdicts[(next() % verdicts.len() as u64) as usize];
            // Times on a coarse grid (many equal times), over a few days.
            let slot = next() % slots;
            let when = format!(
                "Mon, {} Nov 2026 {:02}:{:02}:00 +0000",
                2 + slot / 24,
                slot % 24,
                (next() % 2) * 30
            );
            let mut a = bounce(address, label.unwrap_or(Label::Soft), reason, status, &when);
            a.kind = kind;
            a.recipients[0].label = label;
            a.recipients[0].action = Some(match kind {
                Kind::DeliveryReport => Action::Delivered,
                Kind::Delay => Action::Delayed,
                _ => Action::Failed,
            });
            // A fifth came to a return path whose tag does not verify: kept, never counted.
            if next() % 5 == 0 {
                forge(&mut a);
            }
            messages.push((
                format!("X-Round: {round}\nX-Seq: {i}\n\nbody\n").into_bytes(),
                a,
            ));
        }
        // Random arrival order.
        for i in (1..messages.len()).rev() {
            let j = (next() % (i as u64 + 1)) as usize;
            messages.swap(i, j);
        }
        let dir = tempfile::tempdir().unwrap();
        let policy = if round % 2 == 1 {
            rate_policy()
        } else {
            Policy::default()
        };
        let mut l = Ledger::open(&dir.path().join("t.db"), policy, "test-rules").unwrap();
        // Sends over the same hours, in random lots that arrive between the batches.
        let random_sends = |next: &mut dyn FnMut() -> u64| {
            let mut lot = sends::Sends::new();
            for _ in 0..(1 + next() % 4) {
                let h = (next() % slots.max(24)) as i64;
                let hour = chrono::DateTime::parse_from_rfc3339("2026-11-02T00:00:00Z")
                    .unwrap()
                    .with_timezone(&chrono::Utc)
                    + chrono::Duration::hours(h);
                let key = sends::SendKey {
                    hour,
                    recipient_domain: send_domains[(next() % send_domains.len() as u64) as usize]
                        .to_string(),
                    sender_domain: "shop.example".into(),
                    campaign: String::new(),
                };
                *lot.entry(key).or_insert(0) += 1 + next() % 12;
            }
            lot
        };
        let mut rest = &messages[..];
        let mut k = 0;
        while !rest.is_empty() {
            if next() % 3 == 0 {
                let lot = random_sends(&mut next);
                replays += l.add_sends(&lot).unwrap().replayed;
            }
            let size = (1 + next() % 17) as usize;
            let (batch, tail) = rest.split_at(size.min(rest.len()));
            let prepared: Vec<Prepared> = batch
                .iter()
                .map(|(raw, a)| prepared(raw, &Origin::file(format!("r{round}m{k}")), a))
                .collect();
            for o in l.write(&prepared).unwrap() {
                o.unwrap();
            }
            if next() % 9 == 0 {
                let who = addresses[(next() % addresses.len() as u64) as usize];
                let _ = l.reactivate(who, true, "test").unwrap();
            }
            if next() % 11 == 0 {
                let who = addresses[(next() % addresses.len() as u64) as usize];
                let why = operator::OPERATOR_REASONS[(next() % 3) as usize];
                l.suppress(&[who.to_string()], why, "test").unwrap();
            }
            rest = tail;
            k += 1;
        }
        for _ in 0..(next() % 3) {
            let lot = random_sends(&mut next);
            replays += l.add_sends(&lot).unwrap().replayed;
        }
        rate_pauses += count(
            &l,
            "SELECT count(*) FROM domain_pauses WHERE rule LIKE '%_rate'",
        );
        provider_pauses += count(
            &l,
            "SELECT count(*) FROM domain_pauses WHERE scope = 'provider'",
        );
        let incremental = full_projection(&l);
        assert_log_folds_to_the_addresses(&l);
        let head = l.log_head().unwrap();
        l.rebuild_projection().unwrap();
        assert_eq!(incremental, full_projection(&l), "round {round}");
        assert_eq!(
            l.log_head().unwrap(),
            head,
            "round {round}: a rebuild that changes nothing logs nothing"
        );
    }
    // The rounds exercised what they are about.
    assert!(rate_pauses > 0, "no pause by rate in any round");
    assert!(provider_pauses > 0, "no provider pause in any round");
    assert!(replays > 0, "no sends arrived after the bounces they weigh");
}

/// The change log, folded per address (in id order), gives exactly the `addresses` table:
/// each row starts where the address's previous row ended (an address the log has not named
/// yet is active), and the last one ends where the address is now; addresses the log never
/// names are active. So a sending system that applies every row in order holds the ledger's
/// list.
fn assert_log_folds_to_the_addresses(l: &Ledger) {
    use std::collections::BTreeMap;
    let mut folded: BTreeMap<String, (State, Option<SuppressionReason>)> = BTreeMap::new();
    for c in l.changes_after(0, usize::MAX >> 1).unwrap() {
        let was = folded
            .get(&c.address)
            .copied()
            .unwrap_or((State::Active, None));
        assert_eq!(
            (c.old_state, c.old_reason),
            was,
            "row {} starts where {} was",
            c.id,
            c.address
        );
        assert_ne!(
            (c.old_state, c.old_reason),
            (c.new_state, c.reason),
            "row {} changes something",
            c.id
        );
        if c.new_state == State::Suppressed {
            assert!(c.reason.is_some(), "row {}", c.id);
        }
        folded.insert(c.address.clone(), (c.new_state, c.reason));
    }
    let mut stmt = l
        .connection()
        .prepare("SELECT address, state, suppression_reason FROM addresses ORDER BY address")
        .unwrap();
    let table: BTreeMap<String, (State, Option<SuppressionReason>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (address, now) in &table {
        assert_eq!(
            folded
                .get(address)
                .copied()
                .unwrap_or((State::Active, None)),
            *now,
            "{address}: the log's last word is the address's state"
        );
    }
    for (address, last) in &folded {
        if !table.contains_key(address) {
            assert_eq!(*last, (State::Active, None), "{address} left the ledger");
        }
    }
}

/// A new policy (here: every hard bounce suppresses at once, two soft bounces are enough)
/// rebuilds the projection when the ledger is opened with it: the log gets the net
/// differences, and still folds to the table; opening again with the same policy logs nothing.
#[test]
fn a_rebuild_under_a_new_policy_logs_the_net_differences() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut l = Ledger::open(&path, Policy::default(), "test-rules").unwrap();
    let events = [
        (
            "q@gmail.com",
            Label::Hard,
            Reason::Undetermined,
            "5.0.0",
            10,
        ),
        (
            "s@example.org",
            Label::Soft,
            Reason::MailboxFull,
            "4.2.2",
            11,
        ),
        (
            "s@example.org",
            Label::Soft,
            Reason::MailboxFull,
            "4.2.2",
            12,
        ),
        (
            "h@example.org",
            Label::Hard,
            Reason::UserUnknown,
            "5.1.1",
            13,
        ),
    ];
    for (i, (who, label, reason, status, hour)) in events.into_iter().enumerate() {
        let when = format!("Mon, 2 Nov 2026 {hour:02}:00:00 +0000");
        let a = bounce(who, label, reason, status, &when);
        l.ingest_analysis(format!("m{i}").as_bytes(), &Origin::default(), &a)
            .unwrap();
    }
    assert_log_folds_to_the_addresses(&l);
    let head = l.log_head().unwrap();
    drop(l);
    let strict = Policy {
        soft_limit: 2,
        quarantine_unexplicit_provider_hard: false,
        ..Policy::default()
    };
    let l = Ledger::open(&path, strict.clone(), "test-rules").unwrap();
    let new = l.changes_after(head, 100).unwrap();
    let moved: Vec<(&str, State, Option<SuppressionReason>, Option<&str>)> = new
        .iter()
        .map(|c| (c.address.as_str(), c.new_state, c.reason, c.rule.as_deref()))
        .collect();
    assert_eq!(
        moved,
        [
            (
                "q@gmail.com",
                State::Suppressed,
                Some(SuppressionReason::Hard),
                Some("hard")
            ),
            (
                "s@example.org",
                State::Suppressed,
                Some(SuppressionReason::SoftLimit),
                Some("soft_limit_count")
            ),
        ],
        "h@ was suppressed already: not logged again"
    );
    assert_eq!(new[0].old_state, State::Quarantined);
    assert_eq!(
        new[1].mailbox.as_deref(),
        Some("files"),
        "a message read from no IMAP mailbox"
    );
    assert_log_folds_to_the_addresses(&l);
    let head = l.log_head().unwrap();
    drop(l);
    let l = Ledger::open(&path, strict, "test-rules").unwrap();
    assert_eq!(l.log_head().unwrap(), head);
}

/// An operator's suppression of an address the ledger never saw creates it; a second one over
/// a permanent reason changes nothing but is recorded; both are logged only when they change
/// the state, with the rule and no mailbox.
#[test]
fn operator_suppressions_are_events_and_reach_the_log() {
    let (_d, mut l) = ledger();
    let done = l
        .suppress(
            &["New@Example.org".to_string(), "new@example.org".to_string()],
            SuppressionReason::Unsubscribe,
            "asked by phone",
        )
        .unwrap();
    assert_eq!(done.len(), 1, "the same address once");
    assert!(!done[0].known && !done[0].unchanged());
    let again = l
        .suppress(
            &["new@example.org".to_string()],
            SuppressionReason::Manual,
            "",
        )
        .unwrap();
    assert!(again[0].unchanged());
    let log = l.changes_after(0, 10).unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (
            log[0].reason,
            log[0].rule.as_deref(),
            log[0].mailbox.as_deref()
        ),
        (
            Some(SuppressionReason::Unsubscribe),
            Some("manual_suppress"),
            None
        )
    );
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM events WHERE action = 'suppress' AND role = 'operator'"
        ),
        2
    );
    let detail: String = l
        .connection()
        .query_row("SELECT detail FROM state_changes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        detail,
        "suppressed by an operator (unsubscribe): asked by phone"
    );
    assert!(
        l.suppress(
            &["not an address".to_string()],
            SuppressionReason::Manual,
            ""
        )
        .is_err()
    );
    assert!(
        l.suppress(&["x@example.org".to_string()], SuppressionReason::Hard, "")
            .is_err(),
        "hard is evidence, not an operator's reason"
    );
    // Survives a rebuild.
    l.rebuild_projection().unwrap();
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM addresses WHERE suppression_reason = 'unsubscribe'"
        ),
        1
    );
    assert_log_folds_to_the_addresses(&l);
}

/// Two events of an address at the same second are folded in key order (sort key, then
/// recipient index, then id), whichever arrived first: the one arriving second with a smaller
/// key is not stepped after the other but makes the address replay. Here the order decides
/// the evidence: the first permanent reason folded stays.
#[test]
fn an_event_tied_in_time_with_the_last_one_folded_is_put_in_its_place() {
    let when = "Mon, 2 Nov 2026 10:00:00 +0000";
    let hard = bounce(
        "tie@example.org",
        Label::Hard,
        Reason::UserUnknown,
        "5.1.1",
        when,
    );
    let mut complaint = hard.clone();
    complaint.kind = Kind::Complaint;
    complaint.recipients[0].label = None;
    for (raw_a, raw_b) in [(&b"X-Seq: 1\n\nhard\n"[..], &b"X-Seq: 2\n\nspam\n"[..]); 2]
        .iter()
        .enumerate()
        .map(|(i, (a, b))| if i == 0 { (*a, *b) } else { (*b, *a) })
    {
        let (first, second) = if sha256_hex(raw_a) < sha256_hex(raw_b) {
            (raw_a, raw_b)
        } else {
            (raw_b, raw_a)
        };
        let analysis = |raw: &[u8]| {
            if raw.ends_with(b"hard\n") {
                &hard
            } else {
                &complaint
            }
        };
        let expected = if first.ends_with(b"hard\n") {
            "hard"
        } else {
            "complaint"
        };
        // The larger key arrives first, alone; the smaller one in a later batch.
        let (_dir, mut l) = ledger();
        for raw in [second, first] {
            let p = prepared(raw, &Origin::file("tie"), analysis(raw));
            l.write(&[p]).unwrap().pop().unwrap().unwrap();
        }
        let reason: String = l
            .connection()
            .query_row(
                "SELECT suppression_reason FROM addresses WHERE address = 'tie@example.org'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(reason, expected, "the first in key order is the evidence");
        let incremental = full_projection(&l);
        l.rebuild_projection().unwrap();
        assert_eq!(incremental, full_projection(&l));
    }
}
