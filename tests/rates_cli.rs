//! Rates through the real path: sends imported with `rebound sends import` (a CSV, a Postfix
//! log, standard input, a gzipped rotation), bounces and a complaint ingested with
//! `rebound ingest`, then the rate views, the pauses by rate and `rebound report --alert`.
//! Every message and log line here is written for these tests; times are relative to now, so
//! that the views' windows (24 h, 7 d, 30 d) hold them.

mod prometheus_text;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use chrono::{DateTime, Duration, Local, Timelike, Utc};
use rusqlite::Connection;

fn rebound(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rebound"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rebound");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "rebound {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn rfc5322(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

/// What a test bounce says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum What {
    Hard,
    Invalid,
    Soft,
    Blocked,
    Complaint,
}

/// One returned message: who it was sent to, by whom, in which campaign, and what came back.
struct Bounce {
    rcpt: &'static str,
    from: &'static str,
    campaign: Option<&'static str>,
    what: What,
}

/// A DSN (or, for a complaint, an ARF report) for one bounce, written for these tests.
fn message(n: usize, b: &Bounce, when: DateTime<Utc>) -> String {
    let campaign = b
        .campaign
        .map(|c| format!("X-Campaign-ID: {c}\n"))
        .unwrap_or_default();
    let original = format!(
        "From: Shop <{from}>\nTo: {rcpt}\nSubject: November offers\nMessage-ID: <orig-{n}@shop.example>\n{campaign}Date: {date}\n",
        from = b.from,
        rcpt = b.rcpt,
        date = rfc5322(when - Duration::minutes(1)),
    );
    if b.what == What::Complaint {
        return format!(
            "From: Feedback Loop <fbl@feedback.example>\nTo: fbl@shop.example\nSubject: Complaint about a message from 192.0.2.10\nDate: {date}\nMessage-ID: <fbl-{n}@feedback.example>\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"fb{n}\"\n\n--fb{n}\nContent-Type: text/plain\n\nA recipient marked this message as spam.\n\n--fb{n}\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\nUser-Agent: ExampleFeedback/2.1\nVersion: 1\nOriginal-Mail-From: <bounces@shop.example>\nOriginal-Rcpt-To: <{rcpt}>\nArrival-Date: {date}\nSource-IP: 192.0.2.10\n\n--fb{n}\nContent-Type: message/rfc822\n\n{original}\nHello.\n\n--fb{n}--\n",
            date = rfc5322(when),
            rcpt = b.rcpt,
        );
    }
    let (status, diagnostic) = match b.what {
        What::Hard => (
            "5.1.1",
            format!("smtp; 550 5.1.1 <{}>: Recipient address rejected: User unknown in virtual mailbox table", b.rcpt),
        ),
        What::Invalid => (
            "5.4.4",
            "X-Postfix; Host or domain name not found. Name service error for name=nowhere.example type=A: Host not found".to_string(),
        ),
        What::Soft => (
            "4.2.2",
            "smtp; 452 4.2.2 The email account that you tried to reach is over quota".to_string(),
        ),
        What::Blocked => (
            "5.7.1",
            "smtp; 554 5.7.1 Service unavailable; Client host [203.0.113.9] blocked using bl.blocklist.example".to_string(),
        ),
        What::Complaint => unreachable!(),
    };
    format!(
        "From: Mail Delivery System <MAILER-DAEMON@mta1.shop.example>\nTo: bounces@shop.example\nSubject: Undelivered Mail Returned to Sender\nDate: {date}\nMessage-ID: <dsn-{n}@mta1.shop.example>\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b{n}\"\n\n--b{n}\nContent-Type: text/plain\n\nYour message could not be delivered to one or more recipients.\n\n--b{n}\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mta1.shop.example\n\nFinal-Recipient: rfc822; {rcpt}\nAction: failed\nStatus: {status}\nDiagnostic-Code: {diagnostic}\nLast-Attempt-Date: {date}\n\n--b{n}\nContent-Type: text/rfc822-headers\n\n{original}\n--b{n}--\n",
        date = rfc5322(when),
        rcpt = b.rcpt,
    )
}

/// Writes the bounces as `.eml` files in a directory of their own.
fn write_bounces(dir: &Path, bounces: &[Bounce], when: impl Fn(usize) -> DateTime<Utc>) -> PathBuf {
    let mail = dir.join("bounces");
    std::fs::create_dir_all(&mail).unwrap();
    for (n, b) in bounces.iter().enumerate() {
        std::fs::write(mail.join(format!("b{n:04}.eml")), message(n, b, when(n))).unwrap();
    }
    mail
}

fn config(dir: &Path, extra: &str) -> PathBuf {
    let file = dir.join("rebound.toml");
    std::fs::write(
        &file,
        format!("[database]\npath = \"ledger.db\"\n\n[report]\ncampaign_header = \"X-Campaign-ID\"\n{extra}"),
    )
    .unwrap();
    file
}

/// One view's rows for the 24 h window: key → (sends, bounces, hard, soft, blocked, invalid,
/// complaints, and the rates in % of each label, hard soft blocked invalid complaint).
type Rates = BTreeMap<String, (Vec<i64>, Vec<Option<f64>>)>;

fn view(db: &Path, view: &str, key: &str) -> Rates {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {key}, sends, bounces, hard, soft, blocked, invalid, complaints,
                    hard_pct, soft_pct, blocked_pct, invalid_pct, complaint_pct
             FROM {view} WHERE period = '24h'"
        ))
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                (
                    (1..8)
                        .map(|i| r.get::<_, i64>(i))
                        .collect::<Result<Vec<_>, _>>()?,
                    (8..13)
                        .map(|i| r.get::<_, Option<f64>>(i))
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            ))
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// The same rows computed from the test's own inputs.
fn expected(sends: &BTreeMap<String, i64>, bounces: &[(String, What)]) -> Rates {
    let mut out = Rates::new();
    let mut keys: Vec<&String> = sends.keys().collect();
    keys.extend(bounces.iter().map(|(k, _)| k));
    for k in keys {
        let s = sends.get(k).copied().unwrap_or(0);
        let n = |w: What| bounces.iter().filter(|(x, y)| x == k && *y == w).count() as i64;
        let labels = [
            What::Hard,
            What::Soft,
            What::Blocked,
            What::Invalid,
            What::Complaint,
        ];
        let counts: Vec<i64> = labels.iter().map(|w| n(*w)).collect();
        let bounced: i64 = counts[..4].iter().sum();
        let pct = |x: i64| (s > 0).then(|| (100.0 * x as f64 / s as f64 * 1000.0).round() / 1000.0);
        out.insert(
            k.clone(),
            (
                vec![
                    s, bounced, counts[0], counts[1], counts[2], counts[3], counts[4],
                ],
                counts.iter().map(|c| pct(*c)).collect(),
            ),
        );
    }
    out
}

fn assert_rates(actual: &Rates, expected: &Rates, what: &str) {
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{what}: the keys"
    );
    for (k, (counts, rates)) in expected {
        let (a_counts, a_rates) = &actual[k];
        assert_eq!(
            a_counts, counts,
            "{what} {k}: sends, bounces, hard, soft, blocked, invalid, complaints"
        );
        for (a, e) in a_rates.iter().zip(rates) {
            match (a, e) {
                (Some(a), Some(e)) => assert!((a - e).abs() < 1e-9, "{what} {k}: rate {a} != {e}"),
                (a, e) => assert_eq!(a, e, "{what} {k}: a rate"),
            }
        }
    }
}

#[test]
fn imported_sends_and_ingested_bounces_give_the_rates_and_reimport_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let cfg = cfg.to_str().unwrap();
    let db = dir.path().join("ledger.db");
    let now = Utc::now();
    let at = now - Duration::hours(3);

    // Sends from the sending system, as CSV: per-send rows and aggregates (hour × recipient
    // domain × sender domain × campaign), one bad row.
    let csv_rows: &[(&str, &str, &str, &str, i64)] = &[
        // recipient (or @domain for recipient_domain), sender, campaign, count
        ("ana@gmail.com", "news@shop.example", "nov-promo", "", 1),
        ("bia@gmail.com", "news@shop.example", "nov-promo", "", 1),
        ("@gmail.com", "news@shop.example", "nov-promo", "198", 198),
        ("@yahoo.com", "news@shop.example", "nov-promo", "100", 100),
        ("@example.org", "alerts@alerts.example", "", "50", 50),
    ];
    let mut csv = String::from("time,recipient,recipient_domain,sender,campaign,count\n");
    for (rcpt, sender, campaign, count, _) in csv_rows {
        let (r, d) = match rcpt.strip_prefix('@') {
            Some(d) => ("", d),
            None => (*rcpt, ""),
        };
        csv.push_str(&format!(
            "{},{r},{d},{sender},{campaign},{count}\n",
            at.to_rfc3339()
        ));
    }
    csv.push_str("not a time,x@gmail.com,,news@shop.example,,1\n");
    let csv_file = dir.path().join("sends.csv");
    std::fs::write(&csv_file, &csv).unwrap();

    // Sends seen in Postfix's log: written for this test from Postfix's documented formats.
    // Counted: gmail.com 2 (one deferred, then sent: once), outlook.com 1, nowhere.example 1;
    // not: the null sender's message, the content filter hop, LMTP to the local mailbox.
    let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
    let classic = |t: DateTime<Utc>| t.with_timezone(&Local).format("%b %e %H:%M:%S").to_string();
    let t = at + Duration::minutes(5);
    let mut log = String::new();
    let mut line = |time: String, rest: &str| log.push_str(&format!("{time} mx1 {rest}\n"));
    line(
        stamp(t),
        "postfix/qmgr[811]: 5C1D2E3F40: from=<news@shop.example>, size=5120, nrcpt=4 (queue active)",
    );
    line(
        stamp(t),
        "postfix/smtp[901]: 5C1D2E3F40: to=<carla@gmail.com>, relay=gmail-smtp-in.l.google.com[192.0.2.27]:25, delay=0.9, delays=0.1/0/0.3/0.5, dsn=2.0.0, status=sent (250 2.0.0 OK 1764000000 z9)",
    );
    line(
        stamp(t),
        "postfix/smtp[902]: 5C1D2E3F40: to=<dani@gmail.com>, relay=gmail-smtp-in.l.google.com[192.0.2.27]:25, delay=1.1, delays=0.1/0/0.4/0.6, dsn=4.7.28, status=deferred (host gmail-smtp-in.l.google.com[192.0.2.27] said: 421 4.7.28 Unusual rate of unsolicited mail (in reply to end of DATA command))",
    );
    line(
        stamp(t),
        "postfix/smtp[903]: 5C1D2E3F40: to=<edu@outlook.com>, relay=outlook-com.olc.protection.outlook.com[192.0.2.80]:25, delay=0.8, delays=0.1/0/0.3/0.4, dsn=2.6.0, status=sent (250 2.6.0 Queued mail for delivery)",
    );
    line(
        stamp(t),
        "postfix/smtp[904]: 5C1D2E3F40: to=<fabi@nowhere.example>, relay=none, delay=0.3, delays=0.1/0/0.2/0, dsn=5.4.4, status=bounced (Host or domain name not found. Name service error for name=nowhere.example type=A: Host not found)",
    );
    line(
        classic(t + Duration::minutes(30)),
        "postfix/qmgr[811]: 5C1D2E3F40: from=<news@shop.example>, size=5120, nrcpt=4 (queue active)",
    );
    line(
        classic(t + Duration::minutes(30)),
        "postfix/smtp[905]: 5C1D2E3F40: to=<dani@gmail.com>, relay=gmail-smtp-in.l.google.com[192.0.2.28]:25, delay=1800, delays=1799/0/0.4/0.6, dsn=2.0.0, status=sent (250 2.0.0 OK 1764001800 y7)",
    );
    line(
        classic(t + Duration::minutes(30)),
        "postfix/qmgr[811]: 5C1D2E3F40: removed",
    );
    line(
        stamp(t),
        "postfix/qmgr[811]: 6D2E3F4A51: from=<>, size=3000, nrcpt=1 (queue active)",
    );
    line(
        stamp(t),
        "postfix/smtp[906]: 6D2E3F4A51: to=<someone@example.net>, relay=mx.example.net[203.0.113.9]:25, delay=0.4, delays=0/0/0.2/0.2, dsn=2.0.0, status=sent (250 ok)",
    );
    line(
        stamp(t),
        "postfix/qmgr[811]: 7E3F4A5B62: from=<news@shop.example>, size=900, nrcpt=1 (queue active)",
    );
    line(
        stamp(t),
        "postfix/smtp[907]: 7E3F4A5B62: to=<gui@gmail.com>, relay=127.0.0.1[127.0.0.1]:10024, delay=0.2, delays=0/0/0/0.2, dsn=2.0.0, status=sent (250 2.0.0 from MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: queued as 8F4A)",
    );
    line(
        stamp(t),
        "postfix/lmtp[908]: 9A4B5C6D73: to=<bounces@shop.example>, relay=mail.shop.example[private/dovecot-lmtp], delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (250 2.0.0 <bounces@shop.example> Saved)",
    );
    let log_file = dir.path().join("mail.log");
    std::fs::write(&log_file, &log).unwrap();

    let csv_out = rebound(
        &[
            "sends",
            "import",
            "--config",
            cfg,
            csv_file.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(csv_out.status.code(), Some(1), "a row was refused");
    assert!(
        String::from_utf8_lossy(&csv_out.stderr)
            .contains("sends.csv:7: time \"not a time\" is not RFC 3339")
    );
    assert!(
        stdout(&csv_out).contains("350 sends"),
        "{}",
        stdout(&csv_out)
    );
    let log_out = rebound(
        &[
            "sends",
            "import",
            "--config",
            cfg,
            log_file.to_str().unwrap(),
        ],
        None,
    );
    assert!(log_out.status.success());
    assert!(
        stdout(&log_out).contains("(postfix, from byte 0): 4 sends"),
        "{}",
        stdout(&log_out)
    );

    // The bounces and a complaint, through the ingest.
    let bounces = [
        Bounce {
            rcpt: "ana@gmail.com",
            from: "news@shop.example",
            campaign: Some("nov-promo"),
            what: What::Hard,
        },
        Bounce {
            rcpt: "bia@gmail.com",
            from: "news@shop.example",
            campaign: Some("nov-promo"),
            what: What::Hard,
        },
        Bounce {
            rcpt: "hugo@gmail.com",
            from: "news@shop.example",
            campaign: Some("nov-promo"),
            what: What::Blocked,
        },
        Bounce {
            rcpt: "iris@yahoo.com",
            from: "news@shop.example",
            campaign: Some("nov-promo"),
            what: What::Soft,
        },
        Bounce {
            rcpt: "zoe@yahoo.com",
            from: "news@shop.example",
            campaign: Some("nov-promo"),
            what: What::Complaint,
        },
        Bounce {
            rcpt: "joao@example.org",
            from: "alerts@alerts.example",
            campaign: None,
            what: What::Hard,
        },
        Bounce {
            rcpt: "fabi@nowhere.example",
            from: "news@shop.example",
            campaign: None,
            what: What::Invalid,
        },
    ];
    let mail = write_bounces(dir.path(), &bounces, |n| {
        at + Duration::minutes(10 + n as i64)
    });
    let ingest = rebound(&["ingest", "--config", cfg, mail.to_str().unwrap()], None);
    assert!(ingest.status.success());

    // The rates, computed here from what the test wrote.
    let domain = |a: &str| a.rsplit_once('@').unwrap().1.to_string();
    let mut by_rcpt: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_sender: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_campaign: BTreeMap<String, i64> = BTreeMap::new();
    for (rcpt, sender, campaign, _, n) in csv_rows {
        *by_rcpt.entry(domain(rcpt)).or_default() += n;
        *by_sender.entry(domain(sender)).or_default() += n;
        if !campaign.is_empty() {
            *by_campaign.entry(campaign.to_string()).or_default() += n;
        }
    }
    for (d, n) in [("gmail.com", 2), ("outlook.com", 1), ("nowhere.example", 1)] {
        *by_rcpt.entry(d.into()).or_default() += n;
        *by_sender.entry("shop.example".into()).or_default() += n;
    }
    let provider = |d: &str| match d {
        "gmail.com" => Some("google"),
        "yahoo.com" => Some("yahoo"),
        "outlook.com" => Some("microsoft"),
        _ => None,
    };
    let mut by_provider: BTreeMap<String, i64> = BTreeMap::new();
    for (d, n) in &by_rcpt {
        if let Some(p) = provider(d) {
            *by_provider.entry(p.into()).or_default() += n;
        }
    }
    let rcpt_b: Vec<(String, What)> = bounces.iter().map(|b| (domain(b.rcpt), b.what)).collect();
    let sender_b: Vec<(String, What)> = bounces.iter().map(|b| (domain(b.from), b.what)).collect();
    let campaign_b: Vec<(String, What)> = bounces
        .iter()
        .filter_map(|b| b.campaign.map(|c| (c.to_string(), b.what)))
        .collect();
    let provider_b: Vec<(String, What)> = bounces
        .iter()
        .filter_map(|b| provider(&domain(b.rcpt)).map(|p| (p.to_string(), b.what)))
        .collect();
    assert_rates(
        &view(&db, "v_rates_recipient_domain", "domain"),
        &expected(&by_rcpt, &rcpt_b),
        "recipient domain",
    );
    assert_rates(
        &view(&db, "v_rates_sender_domain", "sender_domain"),
        &expected(&by_sender, &sender_b),
        "sender domain",
    );
    assert_rates(
        &view(&db, "v_rates_campaign", "campaign"),
        &expected(&by_campaign, &campaign_b),
        "campaign",
    );
    assert_rates(
        &view(&db, "v_rates_provider", "provider"),
        &expected(&by_provider, &provider_b),
        "provider",
    );
    // A spot check of one figure, in words: 2 hard of 202 sends to gmail.com.
    let gmail = &view(&db, "v_rates_recipient_domain", "domain")["gmail.com"];
    assert_eq!((gmail.0[0], gmail.0[2], gmail.1[0]), (202, 2, Some(0.99)));

    // The report shows the same, by campaign, in JSON.
    let report = rebound(
        &[
            "report", "--config", cfg, "--since", "24h", "--by", "campaign", "--json",
        ],
        None,
    );
    assert!(report.status.success());
    let json: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(json["totals"]["sends"], 354);
    assert_eq!(json["totals"]["complaints"], 1);
    let promo = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "nov-promo")
        .unwrap();
    assert_eq!(
        (promo["sends"].as_i64(), promo["hard"].as_i64()),
        (Some(300), Some(2))
    );
    assert_eq!(promo["rates"]["complaints"].as_f64(), Some(0.333));
    let text = rebound(&["report", "--config", cfg, "--since", "24h"], None);
    assert!(stdout(&text).contains("sends: 354"), "{}", stdout(&text));

    // Importing the same data again changes nothing: the same files, a gzipped rotation of
    // the log, the CSV through standard input twice.
    let snapshot = |db: &Path| -> String {
        let conn = Connection::open(db).unwrap();
        conn.query_row(
            "SELECT group_concat(hour || recipient_domain || sender_domain || campaign || count, ';')
             FROM (SELECT * FROM sends ORDER BY 1, 2, 3, 4)",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    let before = snapshot(&db);
    let again = rebound(
        &[
            "sends",
            "import",
            "--config",
            cfg,
            csv_file.to_str().unwrap(),
            log_file.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        again.status.success(),
        "nothing refused the second time: nothing read"
    );
    assert_eq!(
        stdout(&again).matches("nothing new").count(),
        2,
        "{}",
        stdout(&again)
    );
    let gz = dir.path().join("mail.log.2.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(log.as_bytes()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    assert!(
        stdout(&rebound(
            &["sends", "import", "--config", cfg, gz.to_str().unwrap()],
            None
        ))
        .contains("nothing new")
    );
    let piped = csv
        .lines()
        .filter(|l| !l.starts_with("not a time"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let first = rebound(
        &["sends", "import", "--config", cfg, "--format", "csv", "-"],
        Some(piped.as_bytes()),
    );
    assert!(
        stdout(&first).contains("350 sends"),
        "standard input is a new input"
    );
    let after_stdin = snapshot(&db);
    assert_ne!(after_stdin, before);
    let second = rebound(
        &["sends", "import", "--config", cfg, "--format", "csv", "-"],
        Some(piped.as_bytes()),
    );
    assert!(
        stdout(&second).contains("nothing new"),
        "the same standard input again"
    );
    assert_eq!(snapshot(&db), after_stdin);

    // The log grows: only its new lines count, and a message's later attempts are not new sends.
    let t2 = t + Duration::minutes(40);
    let grown = format!(
        "{log}{s} mx1 postfix/qmgr[811]: 1B2C3D4E5F: from=<news@shop.example>, size=700, nrcpt=1 (queue active)\n{s} mx1 postfix/smtp[909]: 1B2C3D4E5F: to=<kim@outlook.com>, relay=outlook-com.olc.protection.outlook.com[192.0.2.80]:25, delay=0.5, delays=0/0/0.2/0.3, dsn=4.7.650, status=deferred (host outlook-com.olc.protection.outlook.com[192.0.2.80] said: 451 4.7.650 The mail server has been temporarily rate limited (in reply to MAIL FROM command))\n",
        s = stamp(t2)
    );
    std::fs::write(&log_file, &grown).unwrap();
    let more = rebound(
        &[
            "sends",
            "import",
            "--config",
            cfg,
            log_file.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        stdout(&more).contains(&format!(
            "2 lines (postfix, from byte {}): 1 sends",
            log.len()
        )),
        "{}",
        stdout(&more)
    );
    let later = format!(
        "{grown}{s} mx1 postfix/smtp[910]: 1B2C3D4E5F: to=<kim@outlook.com>, relay=outlook-com.olc.protection.outlook.com[192.0.2.81]:25, delay=600, delays=599/0/0.2/0.3, dsn=2.6.0, status=sent (250 2.6.0 Queued)\n{s} mx1 postfix/qmgr[811]: 1B2C3D4E5F: removed\n",
        s = stamp(t2 + Duration::minutes(10))
    );
    std::fs::write(&log_file, &later).unwrap();
    let last = rebound(
        &[
            "sends",
            "import",
            "--config",
            cfg,
            log_file.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        stdout(&last).contains("2 lines (postfix"),
        "{}",
        stdout(&last)
    );
    assert!(
        stdout(&last).contains(": 0 sends"),
        "kim was counted at the first attempt"
    );
}

/// 30 blocked bounces at gmail.com within one hour: against 1,000 sends (3 %) the provider
/// and the domain are paused by rate, with the figures; against 100,000 sends (0.03 %) nothing
/// is paused, though 30 is far over the absolute threshold (5), which still pauses a ledger
/// without send data. The sends arrive before the bounces in one ledger and after them in
/// another: the same pauses. `report --alert` fails on the 3 % and passes on the 0.03 %.
#[test]
fn a_provider_is_paused_by_rate_and_the_alert_fires() {
    let now = Utc::now();
    let hour = (now - Duration::hours(3))
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .unwrap();
    let blocked: Vec<Bounce> = (0..30)
        .map(|_| Bounce {
            rcpt: "x@gmail.com",
            from: "news@shop.example",
            campaign: Some("dec-promo"),
            what: What::Blocked,
        })
        .collect();
    let run = |sends: u64, sends_first: bool| -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), "");
        let cfg_s = cfg.to_str().unwrap().to_string();
        // Each bounce its own recipient, a minute apart, all in the same hour.
        let mail = dir.path().join("bounces");
        std::fs::create_dir_all(&mail).unwrap();
        for (n, b) in blocked.iter().enumerate() {
            let rcpt: &'static str = Box::leak(format!("user{n}@gmail.com").into_boxed_str());
            let b = Bounce { rcpt, ..*b };
            let when = hour + Duration::minutes(1 + n as i64);
            std::fs::write(mail.join(format!("b{n:03}.eml")), message(n, &b, when)).unwrap();
        }
        let csv = dir.path().join("sends.csv");
        if sends > 0 {
            std::fs::write(
                &csv,
                format!(
                    "time,recipient_domain,sender_domain,campaign,count\n{},gmail.com,shop.example,dec-promo,{sends}\n",
                    (hour + Duration::minutes(30)).to_rfc3339()
                ),
            )
            .unwrap();
        }
        let import = || {
            if sends > 0 {
                assert!(
                    rebound(
                        &["sends", "import", "--config", &cfg_s, csv.to_str().unwrap()],
                        None
                    )
                    .status
                    .success()
                );
            }
        };
        if sends_first {
            import();
        }
        assert!(
            rebound(
                &["ingest", "--config", &cfg_s, mail.to_str().unwrap()],
                None
            )
            .status
            .success()
        );
        if !sends_first {
            import();
        }
        (dir, cfg)
    };
    let pauses = |dir: &Path| -> Vec<String> {
        let conn = Connection::open(dir.join("ledger.db")).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT scope || ' ' || domain || ' ' || rule || ' ' || window_events || '/' || coalesce(window_sends, '-')
                 FROM domain_pauses ORDER BY scope, domain",
            )
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };

    for sends_first in [true, false] {
        let (dir, cfg) = run(1_000, sends_first);
        assert_eq!(
            pauses(dir.path()),
            [
                "domain gmail.com blocked_rate 20/1000",
                "provider google blocked_rate 20/1000"
            ],
            "2% of 1,000 sends is reached at the 20th block (sends first: {sends_first})"
        );
        let conn = Connection::open(dir.path().join("ledger.db")).unwrap();
        let paused: String = conn
            .query_row(
                "SELECT group_concat(scope || ':' || paused, ',') FROM v_paused_recipient_domains WHERE domain = 'gmail.com'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(paused, "domain:gmail.com,provider:google");
        let alert = rebound(
            &[
                "report",
                "--config",
                cfg.to_str().unwrap(),
                "--since",
                "24h",
                "--alert",
            ],
            None,
        );
        assert_eq!(alert.status.code(), Some(1));
        let lines = stdout(&alert);
        assert!(
            lines.contains("ALERT blocked rate 3.00% >= 2% at provider google: 30 of 1000 sends"),
            "{lines}"
        );
        assert_eq!(lines.lines().count(), 1, "one line per breach: {lines}");
        let json = rebound(
            &[
                "report",
                "--config",
                cfg.to_str().unwrap(),
                "--since",
                "24h",
                "--alert",
                "--json",
            ],
            None,
        );
        assert_eq!(json.status.code(), Some(1));
        let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(v["alerts"][0]["key"], "google");
        // `rebound rebuild` (a full replay) gives the same pauses.
        assert!(
            rebound(&["rebuild", "--config", cfg.to_str().unwrap()], None)
                .status
                .success()
        );
        assert_eq!(pauses(dir.path()).len(), 2);
    }

    for sends_first in [true, false] {
        let (dir, cfg) = run(100_000, sends_first);
        assert!(
            pauses(dir.path()).is_empty(),
            "0.03% pauses nothing (sends first: {sends_first})"
        );
        let alert = rebound(
            &[
                "report",
                "--config",
                cfg.to_str().unwrap(),
                "--since",
                "24h",
                "--alert",
            ],
            None,
        );
        assert_eq!(alert.status.code(), Some(0));
        assert_eq!(stdout(&alert), "");
    }

    // The metrics file carries the same rates (24 h, per provider and per sending domain).
    let (dir, cfg) = run(1000, true);
    let prom = dir.path().join("rebound.prom");
    let mail = dir.path().join("bounces");
    assert!(
        rebound(
            &[
                "ingest",
                "--config",
                cfg.to_str().unwrap(),
                "--metrics-file",
                prom.to_str().unwrap(),
                mail.to_str().unwrap(),
            ],
            None
        )
        .status
        .success()
    );
    let text = std::fs::read_to_string(&prom).unwrap();
    let m = prometheus_text::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for (scope, subject) in [("provider", "google"), ("sender_domain", "shop.example")] {
        let at = [("scope", scope), ("subject", subject)];
        assert_eq!(
            prometheus_text::value(&m, "rebound_sends_24h", &at),
            Some(1000.0),
            "{text}"
        );
        let ratio = |label| {
            prometheus_text::value(
                &m,
                "rebound_bounce_ratio_24h",
                &[("scope", scope), ("subject", subject), ("label", label)],
            )
        };
        assert_eq!(ratio("blocked"), Some(0.03), "{text}");
        assert_eq!(ratio("hard"), Some(0.0), "{text}");
    }

    let (dir, _) = run(0, true);
    assert_eq!(
        pauses(dir.path()),
        [
            "domain gmail.com blocked_threshold 5/-",
            "provider google blocked_threshold 5/-"
        ],
        "without send data the absolute threshold decides"
    );
}

/// Alerts follow `[alerts]`: a higher limit makes the same data pass, `"0%"` turns an alert
/// off, and a group under `min_sends` never alerts.
#[test]
fn alert_limits_come_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now() - Duration::hours(2);
    let bounces: Vec<Bounce> = ["a", "b", "c"]
        .iter()
        .map(|_| Bounce {
            rcpt: "x@example.org",
            from: "news@shop.example",
            campaign: Some("c1"),
            what: What::Hard,
        })
        .collect();
    let mail = dir.path().join("bounces");
    std::fs::create_dir_all(&mail).unwrap();
    for (n, b) in bounces.iter().enumerate() {
        let rcpt: &'static str = Box::leak(format!("u{n}@example.org").into_boxed_str());
        std::fs::write(
            mail.join(format!("b{n}.eml")),
            message(n, &Bounce { rcpt, ..*b }, now + Duration::minutes(n as i64)),
        )
        .unwrap();
    }
    let csv = dir.path().join("s.csv");
    std::fs::write(
        &csv,
        format!(
            "time,recipient_domain,sender_domain,campaign,count\n{},example.org,shop.example,c1,50\n",
            now.to_rfc3339()
        ),
    )
    .unwrap();
    let check = |extra: &str| -> Output {
        let cfg = config(dir.path(), extra);
        let cfg = cfg.to_str().unwrap();
        rebound(&["ingest", "--config", cfg, mail.to_str().unwrap()], None);
        rebound(
            &["sends", "import", "--config", cfg, csv.to_str().unwrap()],
            None,
        );
        rebound(
            &["report", "--config", cfg, "--since", "24h", "--alert"],
            None,
        )
    };
    // 3 hard of 50 sends = 6%: over 5%, but 50 sends are under the default min_sends (200).
    assert_eq!(check("").status.code(), Some(0));
    let out = check("[alerts.hard_invalid]\nrate = \"5%\"\nmin_sends = 10\n");
    assert_eq!(out.status.code(), Some(1));
    let lines = stdout(&out);
    assert!(
        lines.contains(
            "ALERT hard+invalid rate 6.00% >= 5% at sender domain shop.example: 3 of 50 sends"
        ),
        "{lines}"
    );
    assert!(lines.contains("at campaign c1"), "{lines}");
    assert_eq!(
        check("[alerts.hard_invalid]\nrate = \"7%\"\nmin_sends = 10\n")
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        check("[alerts.hard_invalid]\nrate = \"0%\"\nmin_sends = 10\n")
            .status
            .code(),
        Some(0)
    );
    let bad = check("[alerts.hard_invalid]\nrate = 5\nmin_sends = 10\n");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("percentage in quotes"));
}
