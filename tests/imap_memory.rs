//! A poll's memory does not depend on what is in the mailbox: twenty messages of 20 MB each
//! (a returned original with an incompressible attachment) go through a real Dovecot into the
//! ledger with the default config while the process stays under 150 MB of peak RSS. Alone in
//! its test binary, so that the peak of this binary's children is `rebound`'s.

mod common;

use common::*;

/// A bounce for `rcpt` returning an original with an attachment of about `bytes`, base64 of
/// pseudo-random bytes (what zstd cannot shrink).
fn huge_bounce(n: u64, rcpt: &str, bytes: usize) -> Vec<u8> {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ n;
    let mut attachment = Vec::with_capacity(bytes + bytes / 76 * 2);
    while attachment.len() < bytes {
        for _ in 0..76 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            attachment.push(B64[(state >> 58) as usize]);
        }
        attachment.extend_from_slice(b"\r\n");
    }
    let mut m = format!(
        "From: MAILER-DAEMON@mx.example.net\r\nTo: bounces@example.com\r\n\
         Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <huge{n}@mx.example.net>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
         --B\r\nContent-Type: text/plain\r\n\r\n<{rcpt}>: host mx.example.org said: 550 5.1.1 \
         <{rcpt}>: Recipient address rejected: User unknown\r\n\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n\
         Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n\
         --B\r\nContent-Type: message/rfc822\r\n\r\nFrom: news@example.com\r\nTo: {rcpt}\r\n\
         Subject: the big one\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"C\"\r\n\r\n\
         --C\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n\
         --C\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    m.extend_from_slice(&attachment);
    m.extend_from_slice(b"--C--\r\n--B--\r\n");
    m
}

/// The largest peak resident set of the children this process has waited for, in bytes.
fn children_peak_rss() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    usage.ru_maxrss as u64 * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_messages_of_20_mb_are_polled_in_under_150_mb() {
    let user = server().add_user("huge");
    for i in 0..20u64 {
        // One APPEND at a time: the test itself holds one message, not four hundred MB.
        append(
            &user,
            "INBOX",
            &[huge_bounce(i, &format!("big{i}@example.org"), 20 << 20)],
        )
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &[mailbox_toml(dir.path(), "huge", &user, Mode::Plain, "")],
    );
    let before = children_peak_rss();
    let cfg = cfg.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || rebound(&["poll", "--config", &cfg]))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(new_count(&out), 20, "every message stored");
    let peak = children_peak_rss();
    assert!(
        peak > before,
        "the poll is the largest child this test waited for"
    );
    assert!(
        peak < 150 << 20,
        "peak RSS of the poll: {} MB (limit 150 MB)",
        peak >> 20
    );
    let labels: Vec<String> = {
        let conn = rusqlite::Connection::open(dir.path().join("rebound.db")).unwrap();
        let mut st = conn
            .prepare("SELECT label FROM events WHERE role = 'recipient' ORDER BY address")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(labels, vec!["hard".to_string(); 20], "each one classified");
}
