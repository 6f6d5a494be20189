//! Sends from the MTA's own log: Postfix's (`/var/log/mail.log`, the syslog or `maillog_file`
//! format) and Exim's main log.
//!
//! **Postfix.** The queue manager names a message's envelope sender when the message enters
//! the active queue (`QUEUEID: from=<sender>, size=..., nrcpt=... (queue active)`), the
//! delivery agents log one line per recipient per attempt (`QUEUEID: to=<rcpt>, relay=...,
//! delay=..., delays=..., dsn=5.1.1, status=bounced (...)`), and the queue manager says when the
//! message is gone (`QUEUEID: removed`). They are joined by queue id (per host and Postfix
//! instance). **Exim**: `<=` (arrival, with the sender), `=>` and `->` (delivered), `**`
//! (failed), `==` (deferred), `Completed`, joined by message id.
//!
//! What counts as one send: **a recipient of a message, once, at its first delivery attempt**,
//! whatever that attempt's status (sent, deferred or bounced). A deferred-then-sent recipient
//! is one send, timed at its first attempt; a recipient still deferred when the log ends, or
//! when the message expires (Postfix logs no per-recipient line then), was still mailed once,
//! and its bounce will come. The recipients counted per message are remembered until the
//! message is removed (`send_queue`), so that the next import of the growing log does not count
//! the later attempts again.
//!
//! Not counted: messages from the null sender (bounces and other notifications the MTA sends
//! itself), deliveries to a loopback address or a local socket (a content filter's hop, LMTP to
//! the local mailbox server: mail received, not sent), local deliveries (Postfix's `local`,
//! `virtual` and `pipe`; an Exim transport that is not SMTP), and address verification probes.
//!
//! Times: an RFC 3339 stamp as written (rsyslog's high-precision format, journald's
//! `short-iso`); the traditional `Nov 22 14:03:01` (no year, no zone) in the machine's local
//! time zone, in the latest year that does not put it in the future.

use chrono::{DateTime, Datelike, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};

use crate::ledger::policy::floor_hour;
use crate::ledger::sends::{Queue, QueueEntry, SendKey, Sends};
use crate::ledger::{domain_of, normalize_address};

/// Which MTA wrote the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mta {
    Postfix,
    Exim,
}

impl Mta {
    /// The log's name in `send_queue`.
    pub fn name(self) -> &'static str {
        match self {
            Mta::Postfix => "postfix",
            Mta::Exim => "exim",
        }
    }
}

/// A mail log being read: its queue of messages in flight.
pub struct MailLog {
    mta: Mta,
    queue: Queue,
    now: DateTime<Utc>,
}

impl MailLog {
    pub fn new(mta: Mta, queue: Queue, now: DateTime<Utc>) -> MailLog {
        MailLog { mta, queue, now }
    }

    /// The queue after the lines read.
    pub fn into_queue(self) -> Queue {
        self.queue
    }

    /// Reads one line; returns the sends it added (lines about anything else add none).
    pub fn line(&mut self, line: &str, sends: &mut Sends) -> u64 {
        let line = line.trim_end_matches(['\n', '\r']);
        match self.mta {
            Mta::Postfix => self.postfix(line, sends),
            Mta::Exim => self.exim(line, sends),
        }
        .unwrap_or(0)
    }

    fn postfix(&mut self, line: &str, sends: &mut Sends) -> Option<u64> {
        let (t, rest) = syslog_time(line, self.now)?;
        let (host, rest) = rest.split_once(' ')?;
        let (program, rest) = rest.split_once(' ')?;
        let program = program.strip_suffix(':')?;
        let program = program.split_once('[').map_or(program, |(p, _)| p);
        let (instance, daemon) = program.rsplit_once('/')?;
        let (queue_id, rest) = rest.split_once(": ")?;
        if !is_queue_id(queue_id) {
            return None;
        }
        let key = (format!("{host}/{instance}"), queue_id.to_string());
        match daemon {
            "qmgr" => {
                if let Some(v) = rest.strip_prefix("from=<") {
                    let sender = v.split_once(">,").map_or(v, |(s, _)| s);
                    let e = self.queue.entry(key).or_default();
                    e.sender = Some(sender.to_ascii_lowercase());
                    e.seen_at = Some(t);
                } else if rest.trim() == "removed" {
                    self.queue.remove(&key);
                }
                None
            }
            "smtp" | "lmtp" => {
                let v = rest.strip_prefix("to=<")?;
                let (rcpt, fields) = v.split_once(">, ")?;
                let status = field(fields, "status=")?;
                let status = status.split(' ').next().unwrap_or("");
                if !matches!(status, "sent" | "deferred" | "bounced") {
                    return None;
                }
                let relay = field(fields, "relay=").unwrap_or("");
                if postfix_relay_is_local(relay) {
                    return None;
                }
                self.count(key, rcpt, t, sends)
            }
            _ => None,
        }
    }

    fn exim(&mut self, line: &str, sends: &mut Sends) -> Option<u64> {
        let mut tokens = line.split_whitespace().peekable();
        let date = tokens.next()?;
        let clock = tokens.next()?;
        let zone = tokens
            .next_if(|t| {
                t.len() == 5
                    && t.starts_with(['+', '-'])
                    && t[1..].bytes().all(|b| b.is_ascii_digit())
            })
            .map(str::to_string);
        tokens.next_if(|t| t.starts_with('[') && t.ends_with(']'));
        let t = exim_time(date, clock, zone.as_deref())?;
        let id = tokens.next()?;
        if !is_exim_id(id) {
            return None;
        }
        let key = (String::new(), id.to_string());
        let flag = tokens.next()?;
        match flag {
            "<=" => {
                let sender = tokens.next()?;
                let sender = if sender == "<>" { "" } else { sender };
                let e = self.queue.entry(key).or_default();
                e.sender = Some(sender.to_ascii_lowercase());
                e.seen_at = Some(t);
                None
            }
            "Completed" => {
                self.queue.remove(&key);
                None
            }
            "=>" | "->" | "**" | "==" => {
                let rcpt = tokens.next()?.trim_end_matches(':');
                let rest: Vec<&str> = tokens.collect();
                let transport = rest.iter().find_map(|t| t.strip_prefix("T="));
                if transport.is_some_and(|t| !t.to_ascii_lowercase().contains("smtp")) {
                    return None;
                }
                let loopback = rest.iter().any(|t| {
                    let inner = t.trim_end_matches([':', ',']);
                    inner
                        .strip_prefix('[')
                        .and_then(|x| x.split(']').next())
                        .is_some_and(is_loopback)
                });
                if loopback {
                    return None;
                }
                self.count(key, rcpt, t, sends)
            }
            _ => None,
        }
    }

    /// Counts a recipient of a message once.
    fn count(
        &mut self,
        key: (String, String),
        rcpt: &str,
        t: DateTime<Utc>,
        sends: &mut Sends,
    ) -> Option<u64> {
        let rcpt = normalize_address(rcpt)?;
        if !rcpt.contains('@') {
            return None;
        }
        let e: &mut QueueEntry = self.queue.entry(key).or_default();
        e.seen_at = Some(t);
        if e.sender.as_deref() == Some("") || !e.recipients.insert(rcpt.clone()) {
            return None;
        }
        let sender_domain = e
            .sender
            .as_deref()
            .and_then(normalize_address)
            .filter(|s| s.contains('@'))
            .map(|s| domain_of(&s))
            .unwrap_or_default();
        *sends
            .entry(SendKey {
                hour: floor_hour(t),
                recipient_domain: domain_of(&rcpt),
                sender_domain,
                campaign: String::new(),
            })
            .or_insert(0) += 1;
        Some(1)
    }
}

/// The value of `name` in a Postfix delivery line's `name=value, ...` fields.
fn field<'a>(fields: &'a str, name: &str) -> Option<&'a str> {
    let at = fields
        .match_indices(name)
        .find(|(i, _)| *i == 0 || fields[..*i].ends_with(' '))?
        .0;
    let v = &fields[at + name.len()..];
    Some(v.split_once(", ").map_or(v, |(v, _)| v))
}

/// `relay=none` (nothing reached: still a send that failed), a remote host (a send), or a
/// loopback address, a local socket (`[private/dovecot-lmtp]`) or `local` (not a send).
fn postfix_relay_is_local(relay: &str) -> bool {
    if relay == "local" {
        return true;
    }
    let Some((_, bracket)) = relay.split_once('[') else {
        return false;
    };
    let inside = bracket.split(']').next().unwrap_or("");
    inside.contains('/') || is_loopback(inside)
}

fn is_loopback(ip: &str) -> bool {
    let ip = ip.trim_start_matches("ipv6:").trim_start_matches("IPv6:");
    ip.starts_with("127.") || ip == "::1"
}

/// Postfix queue ids: short (hexadecimal) or long (base 52 with a separator letter).
fn is_queue_id(id: &str) -> bool {
    (5..=20).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Exim message ids: `1vABCD-000123-XY` (and the longer form of Exim 4.97).
fn is_exim_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.len() == 3
        && parts[0].len() == 6
        && (6..=11).contains(&parts[1].len())
        && (2..=4).contains(&parts[2].len())
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A syslog line's time and the rest of the line: an RFC 3339 stamp, or `Mmm dd hh:mm:ss`
/// (optionally with fractions of a second) in the local time zone.
fn syslog_time(line: &str, now: DateTime<Utc>) -> Option<(DateTime<Utc>, &str)> {
    let (first, rest) = line.split_once(' ')?;
    if first.len() >= 19 && first.as_bytes()[4] == b'-' {
        // RFC 3339, or journald's short-iso with a zone without a colon (`+0100`).
        let t = DateTime::parse_from_rfc3339(first)
            .or_else(|_| DateTime::parse_from_str(first, "%Y-%m-%dT%H:%M:%S%.f%z"))
            .ok()?
            .with_timezone(&Utc);
        return Some((t, rest));
    }
    // "Nov 22 14:03:01 host", "Nov  2 14:03:01 host"
    let month = month_number(first)?;
    let rest = rest.trim_start_matches(' ');
    let (day, rest) = rest.split_once(' ')?;
    let (clock, rest) = rest.split_once(' ')?;
    let day: u32 = day.parse().ok()?;
    let clock = clock.split('.').next()?;
    let hms = chrono::NaiveTime::parse_from_str(clock, "%H:%M:%S").ok()?;
    let local_now = now.with_timezone(&Local);
    for year in [local_now.year(), local_now.year() - 1] {
        let Some(date) = NaiveDate::from_ymd_opt(year, month, day) else {
            continue;
        };
        let t = local(date.and_time(hms))?;
        if t <= now + chrono::Duration::days(1) {
            return Some((t, rest));
        }
    }
    None
}

fn exim_time(date: &str, clock: &str, zone: Option<&str>) -> Option<DateTime<Utc>> {
    let clock = clock.split('.').next()?;
    let naive =
        NaiveDateTime::parse_from_str(&format!("{date} {clock}"), "%Y-%m-%d %H:%M:%S").ok()?;
    match zone {
        Some(z) => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let h: i32 = z[1..3].parse().ok()?;
            let m: i32 = z[3..5].parse().ok()?;
            let offset = chrono::FixedOffset::east_opt(sign * (h * 3600 + m * 60))?;
            offset
                .from_local_datetime(&naive)
                .single()
                .map(|t| t.with_timezone(&Utc))
        }
        None => local(naive),
    }
}

/// A local wall-clock time in UTC (the earlier one in the hour a DST change repeats).
fn local(naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

fn month_number(name: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    MONTHS.iter().position(|m| *m == name).map(|i| i as u32 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::time;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T18:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn total(sends: &Sends, domain: &str) -> u64 {
        sends
            .iter()
            .filter(|(k, _)| k.recipient_domain == domain)
            .map(|(_, n)| n)
            .sum()
    }

    /// Lines written for this test from Postfix's documented record formats.
    #[test]
    fn postfix_counts_each_recipient_once_per_message() {
        let log = "\
2026-11-22T14:03:00.512345+00:00 mx1 postfix/pickup[2001]: 7A1C23E0F1: uid=1001 from=<news@shop.example>
2026-11-22T14:03:00.601200+00:00 mx1 postfix/qmgr[1999]: 7A1C23E0F1: from=<news@shop.example>, size=4120, nrcpt=3 (queue active)
2026-11-22T14:03:01.100000+00:00 mx1 postfix/smtp[2002]: 7A1C23E0F1: to=<ana@gmail.com>, relay=gmail-smtp-in.l.google.com[192.0.2.27]:25, delay=0.6, delays=0.1/0/0.2/0.3, dsn=2.0.0, status=sent (250 2.0.0 OK 1763820181 x1-20020a05)
2026-11-22T14:03:01.200000+00:00 mx1 postfix/smtp[2003]: 7A1C23E0F1: to=<bruno@example.org>, relay=mx.example.org[198.51.100.4]:25, delay=0.7, delays=0.1/0/0.3/0.3, dsn=4.2.2, status=deferred (host mx.example.org[198.51.100.4] said: 452 4.2.2 Mailbox full (in reply to RCPT TO command))
2026-11-22T14:03:01.300000+00:00 mx1 postfix/smtp[2004]: 7A1C23E0F1: to=<carla@nowhere.example>, relay=none, delay=0.8, delays=0.1/0/0.7/0, dsn=5.4.4, status=bounced (Host or domain name not found. Name service error for name=nowhere.example type=A: Host not found)
2026-11-22T15:10:02.000000+00:00 mx1 postfix/qmgr[1999]: 7A1C23E0F1: from=<news@shop.example>, size=4120, nrcpt=3 (queue active)
2026-11-22T15:10:02.400000+00:00 mx1 postfix/smtp[2010]: 7A1C23E0F1: to=<bruno@example.org>, relay=mx.example.org[198.51.100.4]:25, delay=3901, delays=3900/0/0.2/0.2, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4QxY)
2026-11-22T15:10:02.500000+00:00 mx1 postfix/qmgr[1999]: 7A1C23E0F1: removed
2026-11-22T15:11:00.000000+00:00 mx1 postfix/qmgr[1999]: 9B2D45F1A2: from=<>, size=2200, nrcpt=1 (queue active)
2026-11-22T15:11:00.300000+00:00 mx1 postfix/smtp[2011]: 9B2D45F1A2: to=<someone@example.net>, relay=mx.example.net[203.0.113.9]:25, delay=0.3, delays=0/0/0.1/0.2, dsn=2.0.0, status=sent (250 ok)
2026-11-22T15:12:00.000000+00:00 mx1 postfix/qmgr[1999]: 4QxLmT2r8Zz9sTL: from=<news@shop.example>, size=900, nrcpt=2 (queue active)
2026-11-22T15:12:00.200000+00:00 mx1 postfix/smtp[2012]: 4QxLmT2r8Zz9sTL: to=<dora@gmail.com>, relay=127.0.0.1[127.0.0.1]:10024, delay=0.2, delays=0/0/0/0.2, dsn=2.0.0, status=sent (250 2.0.0 from MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: queued as 5AB)
2026-11-22T15:12:00.300000+00:00 mx1 postfix/lmtp[2013]: 4QxLmT2r8Zz9sTL: to=<bounces@shop.example>, relay=mail.shop.example[private/dovecot-lmtp], delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (250 2.0.0 <bounces@shop.example> Saved)
2026-11-22T15:12:00.400000+00:00 mx1 postfix/smtp[2014]: 4QxLmT2r8Zz9sTL: to=<eva@hotmail.com>, relay=hotmail-com.olc.protection.outlook.com[192.0.2.80]:25, delay=0.4, delays=0/0/0.2/0.2, dsn=5.7.1, status=bounced (host hotmail-com.olc.protection.outlook.com[192.0.2.80] said: 550 5.7.1 Service unavailable, Client host blocked (in reply to RCPT TO command))
";
        let mut parser = MailLog::new(Mta::Postfix, Queue::new(), now());
        let mut sends = Sends::new();
        let n: u64 = log.lines().map(|l| parser.line(l, &mut sends)).sum();
        assert_eq!(n, 4, "ana, bruno (deferred then sent: once), carla, eva");
        assert_eq!(
            total(&sends, "gmail.com"),
            1,
            "dora went to a content filter"
        );
        assert_eq!(total(&sends, "example.org"), 1);
        assert_eq!(total(&sends, "nowhere.example"), 1);
        assert_eq!(total(&sends, "hotmail.com"), 1);
        assert_eq!(total(&sends, "example.net"), 0, "the null sender's message");
        assert_eq!(
            total(&sends, "shop.example"),
            0,
            "LMTP to the local mailbox"
        );
        let bruno = sends
            .keys()
            .find(|k| k.recipient_domain == "example.org")
            .unwrap();
        assert_eq!(
            time::format(bruno.hour),
            "2026-11-22T14:00:00Z",
            "its first attempt"
        );
        assert!(sends.keys().all(|k| k.sender_domain == "shop.example"));
        let queue = parser.into_queue();
        assert!(
            !queue.contains_key(&("mx1/postfix".into(), "7A1C23E0F1".into())),
            "removed"
        );
        assert_eq!(
            queue[&("mx1/postfix".into(), "4QxLmT2r8Zz9sTL".into())]
                .recipients
                .len(),
            1,
            "still in flight, eva counted; not dora (a content filter's hop) nor bounces@ (local)"
        );
    }

    /// A later import of the same log goes on with the queue: a recipient deferred in the first
    /// part and delivered in the second is one send.
    #[test]
    fn the_queue_carries_a_message_across_imports() {
        let first = "Nov 22 09:00:00 mx1 postfix/qmgr[10]: 3F2A61C0B7: from=<a@news.example>, size=10, nrcpt=1 (queue active)\n\
Nov 22 09:00:01 mx1 postfix/smtp[11]: 3F2A61C0B7: to=<x@yahoo.com>, relay=mta5.am0.yahoodns.net[192.0.2.5]:25, delay=1, delays=0/0/0.5/0.5, dsn=4.7.0, status=deferred (host mta5.am0.yahoodns.net[192.0.2.5] said: 421 4.7.0 [TSS04] Messages from 203.0.113.1 temporarily deferred (in reply to MAIL FROM command))\n";
        let second = "Nov 22 10:00:01 mx1 postfix/smtp[12]: 3F2A61C0B7: to=<x@yahoo.com>, relay=mta6.am0.yahoodns.net[192.0.2.6]:25, delay=3601, delays=3600/0/0.5/0.5, dsn=2.0.0, status=sent (250 ok dirdel)\n\
Nov 22 10:00:01 mx1 postfix/qmgr[10]: 3F2A61C0B7: removed\n";
        let mut sends = Sends::new();
        let mut p = MailLog::new(Mta::Postfix, Queue::new(), now());
        for l in first.lines() {
            p.line(l, &mut sends);
        }
        let mut p = MailLog::new(Mta::Postfix, p.into_queue(), now());
        for l in second.lines() {
            p.line(l, &mut sends);
        }
        assert_eq!(total(&sends, "yahoo.com"), 1);
        assert!(p.into_queue().is_empty());
        // The traditional stamp is local time in the latest year that is not in the future.
        let (t, _) = syslog_time("Nov 22 09:00:00 mx1 x", now()).unwrap();
        assert_eq!(t.with_timezone(&Local).year(), 2026);
        let (t, _) = syslog_time("Dec 30 09:00:00 mx1 x", now()).unwrap();
        assert_eq!(t.with_timezone(&Local).year(), 2025);
        // journalctl -o short-iso, older and newer systemd.
        for stamp in ["2026-11-22T10:00:01+0100", "2026-11-22T10:00:01+01:00"] {
            let line = format!("{stamp} mx1 x");
            let (t, rest) = syslog_time(&line, now()).unwrap();
            assert_eq!(
                (time::format(t).as_str(), rest),
                ("2026-11-22T09:00:01Z", "mx1 x")
            );
        }
    }

    /// Lines written for this test from Exim's documented main log format.
    #[test]
    fn exim_arrivals_and_deliveries() {
        let log = "\
2026-11-22 14:03:00 1vXyZa-000Abc-Q1 <= news@shop.example H=app.shop.example [192.0.2.10] P=esmtps X=TLS1.3:TLS_AES_256_GCM_SHA384:256 S=4120 id=c-1@shop.example
2026-11-22 14:03:01 1vXyZa-000Abc-Q1 => ana@gmail.com R=dnslookup T=remote_smtp H=gmail-smtp-in.l.google.com [192.0.2.27] X=TLS1.3:TLS_AES_256_GCM_SHA384:256 C=\"250 2.0.0 OK\"
2026-11-22 14:03:01 1vXyZa-000Abc-Q1 -> bia@gmail.com R=dnslookup T=remote_smtp H=gmail-smtp-in.l.google.com [192.0.2.27] C=\"250 2.0.0 OK\"
2026-11-22 14:03:02 1vXyZa-000Abc-Q1 ** carl@example.org R=dnslookup T=remote_smtp H=mx.example.org [198.51.100.4]: SMTP error from remote mail server after RCPT TO:<carl@example.org>: 550 5.1.1 User unknown
2026-11-22 14:03:02 1vXyZa-000Abc-Q1 == dave@example.net R=dnslookup T=remote_smtp defer (-44) H=mx.example.net [203.0.113.5]: SMTP error from remote mail server after RCPT TO:<dave@example.net>: 451 4.7.1 Try again later
2026-11-22 16:03:02 1vXyZa-000Abc-Q1 => dave@example.net R=dnslookup T=remote_smtp H=mx.example.net [203.0.113.5] C=\"250 OK\"
2026-11-22 16:03:02 1vXyZa-000Abc-Q1 Completed
2026-11-22 16:04:00 1vXyZb-000Abd-Q2 <= <> R=1vXyZa-000Abc-Q1 U=Debian-exim P=local S=2000
2026-11-22 16:04:00 1vXyZb-000Abd-Q2 => news <news@shop.example> R=local_user T=local_delivery
2026-11-22 16:05:00 +0100 [4242] 1vXyZc-000Abe-Q3 <= alerts@shop.example U=app P=local S=500
2026-11-22 16:05:01 +0100 [4243] 1vXyZc-000Abe-Q3 => eva@outlook.com R=dnslookup T=remote_smtp H=outlook-com.olc.protection.outlook.com [192.0.2.90] C=\"250 2.6.0 Queued\"
";
        let mut p = MailLog::new(Mta::Exim, Queue::new(), now());
        let mut sends = Sends::new();
        let n: u64 = log.lines().map(|l| p.line(l, &mut sends)).sum();
        assert_eq!(n, 5, "ana, bia, carl, dave once, eva");
        assert_eq!(total(&sends, "gmail.com"), 2);
        assert_eq!(total(&sends, "example.net"), 1);
        assert_eq!(total(&sends, "shop.example"), 0);
        let eva = sends
            .keys()
            .find(|k| k.recipient_domain == "outlook.com")
            .unwrap();
        assert_eq!(
            time::format(eva.hour),
            "2026-11-22T15:00:00Z",
            "16:05 at +0100"
        );
        assert!(
            p.into_queue()
                .keys()
                .all(|(_, id)| id != "1vXyZa-000Abc-Q1")
        );
    }
}
