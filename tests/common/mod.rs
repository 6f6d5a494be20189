//! Shared by the IMAP integration tests: the Dovecot fixture, a small IMAP client to seed and
//! inspect test mailboxes (independent of the code under test), sample messages, and helpers to
//! run the `rebound` binary.
#![allow(dead_code)]

pub mod dovecot;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use futures::TryStreamExt;
use tokio::net::TcpStream;

pub use dovecot::{User, server};

pub type TestSession = async_imap::Session<TcpStream>;

/// A plain LOGIN session as `user`, for seeding and checking.
pub async fn login(user: &User) -> TestSession {
    let s = server();
    let tcp = TcpStream::connect(("127.0.0.1", s.port)).await.unwrap();
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.unwrap().expect("greeting");
    client
        .login(&user.name, &user.password)
        .await
        .map_err(|(e, _)| e)
        .expect("test login")
}

/// Appends messages to a folder (created when missing).
pub async fn append(user: &User, folder: &str, messages: &[Vec<u8>]) {
    let mut s = login(user).await;
    if folder != "INBOX" {
        let _ = s.create(folder).await;
    }
    for m in messages {
        s.append(folder, None, None, m).await.unwrap();
    }
    s.logout().await.unwrap();
}

/// `(uid, flags)` of every message in a folder, by UID.
pub async fn list(user: &User, folder: &str) -> Vec<(u32, Vec<String>)> {
    let mut s = login(user).await;
    let mb = s.examine(folder).await.unwrap();
    let mut out = Vec::new();
    if mb.exists > 0 {
        let fetches: Vec<_> = s
            .uid_fetch("1:*", "(UID FLAGS)")
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        for f in fetches {
            out.push((
                f.uid.unwrap(),
                f.flags().map(|fl| format!("{fl:?}")).collect(),
            ));
        }
    }
    out.sort();
    s.logout().await.unwrap();
    out
}

/// Number of messages in a folder (0 when it does not exist).
pub async fn count(user: &User, folder: &str) -> u32 {
    let mut s = login(user).await;
    let n = match s.status(folder, "(MESSAGES)").await {
        Ok(mb) => mb.exists,
        Err(_) => 0,
    };
    s.logout().await.unwrap();
    n
}

/// A DSN (RFC 3464) for `rcpt`, modelled on Postfix's: 5.1.1 user unknown. `n` makes it unique.
pub fn bounce(n: usize, rcpt: &str) -> Vec<u8> {
    format!(
        "Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\nTo: bounces@sender.example\r\n\
Subject: Undelivered Mail Returned to Sender\r\nDate: Mon, 2 Nov 2026 10:00:{sec:02} +0000\r\nMessage-ID: <dsn-{n}@mx.example.net>\r\n\
Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B{n}\"\r\n\r\n\
--B{n}\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not be delivered.\r\n\r\n<{rcpt}>: host mx.example.org said: 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown\r\n\r\n\
--B{n}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\nArrival-Date: Mon, 2 Nov 2026 09:59:00 +0000\r\n\r\n\
Final-Recipient: rfc822; {rcpt}\r\nOriginal-Recipient: rfc822;{rcpt}\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.example.org\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown\r\n\r\n\
--B{n}\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: news@sender.example\r\nTo: {rcpt}\r\nSubject: November news\r\nMessage-ID: <orig-{n}@sender.example>\r\n\r\n--B{n}--\r\n",
        sec = n % 60
    )
    .into_bytes()
}

/// An RFC 3834 out-of-office reply.
pub fn auto_reply(n: usize) -> Vec<u8> {
    format!(
        "From: Pat <pat@example.org>\r\nTo: news@sender.example\r\nSubject: Out of office: November news\r\nDate: Mon, 2 Nov 2026 11:00:00 +0000\r\n\
Message-ID: <ooo-{n}@example.org>\r\nAuto-Submitted: auto-replied\r\nX-Autoreply: yes\r\n\r\nI am away until Monday {n}.\r\n"
    )
    .into_bytes()
}

/// A human reply: nothing rebound recognises, so it must never be deleted.
pub fn human(n: usize) -> Vec<u8> {
    format!(
        "From: Sam <sam@example.org>\r\nTo: news@sender.example\r\nSubject: Re: November news\r\nDate: Mon, 2 Nov 2026 12:00:00 +0000\r\n\
Message-ID: <human-{n}@example.org>\r\n\r\nThanks, but please call me instead ({n}).\r\n"
    )
    .into_bytes()
}

/// Path of the built `rebound` binary.
pub fn rebound_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rebound"))
}

/// Runs `rebound ARGS...` and returns its output.
pub fn rebound(args: &[&str]) -> Output {
    Command::new(rebound_bin())
        .args(args)
        .env("RUST_LOG", "rebound=info")
        .output()
        .expect("running rebound")
}

/// How a test mailbox table connects.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Plain,
    Implicit,
    Starttls,
}

/// A `[[mailbox]]` table for `user` on the test server. `extra` is appended verbatim (action,
/// folders...). The password is passed through a file so that the secret never sits in the
/// config.
pub fn mailbox_toml(dir: &Path, name: &str, user: &User, mode: Mode, extra: &str) -> String {
    let s = server();
    let pw = dir.join(format!("{name}.pw"));
    std::fs::write(&pw, format!("{}\n", user.password)).unwrap();
    // Private, as the README asks (a readable one works, with a warning on stderr).
    std::fs::set_permissions(
        &pw,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .unwrap();
    let (tls, port) = match mode {
        Mode::Plain => ("none", s.port),
        Mode::Implicit => ("implicit", s.tls_port),
        Mode::Starttls => ("starttls", s.port),
    };
    // TLS names must match the certificate (SAN localhost and 127.0.0.1).
    let host = if mode == Mode::Plain {
        "127.0.0.1"
    } else {
        "localhost"
    };
    format!(
        "[[mailbox]]\nname = \"{name}\"\nhost = \"{host}\"\nport = {port}\ntls = \"{tls}\"\nca_file = \"{ca}\"\nusername = \"{u}\"\n\
auth = {{ method = \"password_file\", path = \"{pw}\" }}\ntimeout_secs = 10\n{extra}\n",
        ca = s.ca_file.display(),
        u = user.name,
        pw = pw.display()
    )
}

/// Writes `rebound.toml` with a database in `dir` and the given mailbox tables.
pub fn write_config(dir: &Path, mailboxes: &[String]) -> PathBuf {
    let path = dir.join("rebound.toml");
    let mut text = format!(
        "[database]\npath = \"{}\"\n\n",
        dir.join("rebound.db").display()
    );
    for m in mailboxes {
        text.push_str(m);
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// UIDs stored for `mailbox`, in order; empty while the ledger or its tables do not exist yet
/// (a test may look while the first poll is still creating them).
pub fn stored_uids(db: &Path, mailbox: &str) -> Vec<u32> {
    let Ok(conn) = rusqlite::Connection::open(db) else {
        return Vec::new();
    };
    let Ok(mut st) = conn.prepare("SELECT uid FROM messages WHERE mailbox = ?1 ORDER BY uid")
    else {
        return Vec::new();
    };
    st.query_map([mailbox], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The `new=` count of a poll's summary line.
pub fn new_count(out: &Output) -> u32 {
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text
        .find("new=")
        .unwrap_or_else(|| panic!("no summary in {text}"));
    text[at + 4..].split(' ').next().unwrap().parse().unwrap()
}
