//! `rebound report [--since 7d] [--by ...] [--json] [--alert]`: what happened over a period.
//! Bounces by label and reason, complaints, suppressions, pauses, and a table grouped by
//! recipient domain, provider, sending domain, sender, mailbox, campaign or reason; with send
//! data (`rebound sends import`), the rates.
//!
//! `--alert` checks the rates against `[alerts]` (blocked per provider, hard + invalid and
//! complaints per sending domain and per campaign, each once the group had `min_sends` sends)
//! and prints one line per breach and nothing else, exit 1 when there is one: a timer's
//! `OnFailure=` or cron's mail then tells a person.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use rusqlite::{Connection, params};
use serde::Serialize;

use super::LedgerArgs;
use super::output::Lines;
use crate::config::{AlertRule, AlertsConfig};
use crate::ledger::percent::Percent;
use crate::ledger::policy::floor_hour;
use crate::ledger::span::Span;
use crate::ledger::time;

/// What a report's table is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum By {
    Reason,
    RecipientDomain,
    Provider,
    SenderDomain,
    /// The returned original's From address (no send data is per address).
    Sender,
    /// The IMAP mailbox the bounces came from (`files` for `rebound ingest`).
    Mailbox,
    Campaign,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// The period: a length back from now (`24h`, `7d`, `4w`) or a start date (`2026-11-01`,
    /// or a full RFC 3339 time).
    #[arg(long, default_value = "7d")]
    pub since: String,
    /// How the table is grouped.
    #[arg(long, value_enum, default_value_t = By::RecipientDomain)]
    pub by: By,
    /// Rows of the table shown (the busiest first; 0: all). JSON has them all.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Check the rates against `[alerts]`: print one line per breach (nothing else), exit 1
    /// when there is one.
    #[arg(long)]
    pub alert: bool,
}

/// Counts of one group (or of everything) in the period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub sends: u64,
    pub bounces: u64,
    pub hard: u64,
    pub soft: u64,
    pub blocked: u64,
    pub invalid: u64,
    pub rate_limited: u64,
    pub complaints: u64,
}

impl Counts {
    /// The rates in %, by label (`None` without sends).
    fn rates(&self) -> BTreeMap<&'static str, Option<f64>> {
        let pct = |n: u64| Percent::of(n, self.sends).map(|r| (r * 1000.0).round() / 1000.0);
        BTreeMap::from([
            ("bounces", pct(self.bounces)),
            ("hard", pct(self.hard)),
            ("soft", pct(self.soft)),
            ("blocked", pct(self.blocked)),
            ("invalid", pct(self.invalid)),
            ("rate_limited", pct(self.rate_limited)),
            ("complaints", pct(self.complaints)),
        ])
    }
}

#[derive(Debug, Serialize)]
struct Row {
    key: String,
    #[serde(flatten)]
    counts: Counts,
    rates: BTreeMap<&'static str, Option<f64>>,
}

#[derive(Debug, Serialize)]
struct ReasonRow {
    label: Option<String>,
    reason: Option<String>,
    count: u64,
    /// Of all sends in the period, in %.
    rate: Option<f64>,
}

#[derive(Debug, Serialize)]
struct PauseRow {
    scope: String,
    subject: String,
    reason: String,
    rule: Option<String>,
    started_at: String,
    paused_until: String,
    active: bool,
    window_events: i64,
    window_sends: Option<i64>,
    window_rate: Option<f64>,
}

/// A rate over its `[alerts]` limit.
#[derive(Debug, Serialize)]
pub struct Breach {
    /// `blocked`, `hard_invalid`, `complaints`.
    pub alert: &'static str,
    /// `provider`, `sender_domain`, `campaign`.
    pub scope: &'static str,
    pub key: String,
    pub events: u64,
    pub sends: u64,
    pub rate: f64,
    pub limit: String,
}

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.alert {
            "blocked" => "blocked",
            "hard_invalid" => "hard+invalid",
            _ => "complaint",
        };
        write!(
            f,
            "ALERT {what} rate {:.2}% >= {} at {} {}: {} of {} sends",
            self.rate,
            self.limit,
            self.scope.replace('_', " "),
            self.key,
            self.events,
            self.sends
        )
    }
}

#[derive(Debug, Serialize)]
struct Report {
    since: String,
    until: String,
    /// Whether any send data covers the period (without it, no rate).
    send_data: bool,
    totals: Counts,
    unsubscribes: u64,
    delays: u64,
    /// Recipients of forged bounces (a VERP tag that does not verify): stored, counted in
    /// nothing above.
    forged: u64,
    rates: BTreeMap<&'static str, Option<f64>>,
    reasons: Vec<ReasonRow>,
    /// Addresses suppressed in the period, by reason.
    suppressed: BTreeMap<String, u64>,
    suppressed_now: u64,
    quarantined_now: u64,
    /// Pauses started in the period, or still running.
    pauses: Vec<PauseRow>,
    by: By,
    rows: Vec<Row>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alerts: Option<Vec<Breach>>,
}

pub fn run(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let (config, ledger) = args.ledger.open_existing()?;
    let now = time::now();
    let since = parse_since(&args.since, now)?;
    let conn = ledger.connection();
    let mut report = build(conn, since, now, args.by)?;
    let mut out = Lines::new();
    if args.alert {
        let breaches = alerts(conn, since, now, &config.alerts)?;
        let code = if breaches.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
        if !report.send_data {
            tracing::warn!(
                "no send data since {}: no rate can be checked (rebound sends import)",
                time::format(since)
            );
        }
        if args.json {
            report.alerts = Some(breaches);
            out.line(serde_json::to_string(&report)?)?;
        } else {
            for b in &breaches {
                out.line(b)?;
            }
        }
        return Ok(code);
    }
    if args.json {
        out.line(serde_json::to_string(&report)?)?;
    } else {
        out.line(text(&report, args.top))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `7d` back from now, or a date / time.
fn parse_since(text: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(span) = Span::parse(text) {
        return Ok(now - span.as_chrono());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    anyhow::bail!(
        "--since {text:?}: give a length back from now (24h, 7d, 4w) or a date (2026-11-01)"
    )
}

/// How a dimension reads its key from the sends and from the events.
struct Dimension {
    /// The sends' key (`None`: send data is not kept per this key).
    sends: Option<(&'static str, &'static str)>,
    /// The events' key, and what to join.
    events: (&'static str, &'static str),
}

fn dimension(by: By) -> Dimension {
    match by {
        By::RecipientDomain => Dimension {
            sends: Some(("s.recipient_domain", "")),
            events: ("e.domain", ""),
        },
        By::Provider => Dimension {
            sends: Some((
                "pd.provider",
                "JOIN provider_domains pd ON pd.domain = s.recipient_domain",
            )),
            events: (
                "pd.provider",
                "JOIN provider_domains pd ON pd.domain = e.domain",
            ),
        },
        By::SenderDomain => Dimension {
            sends: Some(("nullif(s.sender_domain, '')", "")),
            events: ("e.sender_domain", ""),
        },
        By::Campaign => Dimension {
            sends: Some(("nullif(s.campaign, '')", "")),
            events: ("e.campaign", ""),
        },
        By::Sender => Dimension {
            sends: None,
            events: ("e.original_sender", ""),
        },
        By::Mailbox => Dimension {
            sends: None,
            events: (
                "coalesce(m.mailbox, 'files')",
                "LEFT JOIN messages m ON m.id = e.message_id",
            ),
        },
        By::Reason => Dimension {
            sends: None,
            events: (
                "coalesce(e.label, '-') || '/' || coalesce(e.reason, '-')",
                "",
            ),
        },
    }
}

/// Sends and bounces per key in the period.
fn grouped(
    conn: &Connection,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    by: By,
) -> anyhow::Result<Vec<Row>> {
    let d = dimension(by);
    let (ekey, ejoin) = d.events;
    let sends_part = match d.sends {
        Some((skey, sjoin)) => format!(
            "SELECT {skey} AS k, s.count AS sends, 0 AS bounces, 0 AS hard, 0 AS soft, 0 AS blocked,
                    0 AS invalid, 0 AS rate_limited, 0 AS complaints
             FROM sends s {sjoin} WHERE s.hour >= ?1 AND s.hour <= ?2
             UNION ALL"
        ),
        None => String::new(),
    };
    let sql = format!(
        "WITH x AS (
            {sends_part}
            SELECT {ekey}, 0, e.kind = 'bounce', e.kind = 'bounce' AND e.label IS 'hard',
                   e.kind = 'bounce' AND e.label IS 'soft', e.kind = 'bounce' AND e.label IS 'blocked',
                   e.kind = 'bounce' AND e.label IS 'invalid',
                   e.kind = 'bounce' AND e.reason IS 'rate_limited', e.kind = 'complaint'
            FROM events e {ejoin}
            WHERE e.role = 'recipient' AND e.kind IN ('bounce', 'complaint') AND e.forged = 0
              AND e.event_time >= ?3 AND e.event_time <= ?4
         )
         SELECT coalesce(k, '-'), sum(sends), sum(bounces), sum(hard), sum(soft), sum(blocked),
                sum(invalid), sum(rate_limited), sum(complaints)
         FROM x GROUP BY coalesce(k, '-')"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(
        params![
            time::format(floor_hour(since)),
            time::format(until),
            time::format(since),
            time::format(until)
        ],
        |r| {
            let n = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(i)?.max(0) as u64) };
            Ok((
                r.get::<_, String>(0)?,
                Counts {
                    sends: n(1)?,
                    bounces: n(2)?,
                    hard: n(3)?,
                    soft: n(4)?,
                    blocked: n(5)?,
                    invalid: n(6)?,
                    rate_limited: n(7)?,
                    complaints: n(8)?,
                },
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (key, counts) = row?;
        out.push(Row {
            key,
            rates: counts.rates(),
            counts,
        });
    }
    out.sort_by(|a, b| {
        (b.counts.bounces + b.counts.complaints)
            .cmp(&(a.counts.bounces + a.counts.complaints))
            .then(b.counts.sends.cmp(&a.counts.sends))
            .then(a.key.cmp(&b.key))
    });
    Ok(out)
}

fn build(
    conn: &Connection,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    by: By,
) -> anyhow::Result<Report> {
    let (s, u) = (time::format(since), time::format(until));
    let rows = grouped(conn, since, until, by)?;
    // Totals: the recipient-domain grouping covers every send and every event.
    let totals = grouped(conn, since, until, By::RecipientDomain)?
        .into_iter()
        .fold(Counts::default(), |mut t, r| {
            t.sends += r.counts.sends;
            t.bounces += r.counts.bounces;
            t.hard += r.counts.hard;
            t.soft += r.counts.soft;
            t.blocked += r.counts.blocked;
            t.invalid += r.counts.invalid;
            t.rate_limited += r.counts.rate_limited;
            t.complaints += r.counts.complaints;
            t
        });
    let count = |sql: &str| -> anyhow::Result<u64> {
        let n: i64 = conn.query_row(sql, params![s, u], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    };
    let unsubscribes = count(
        "SELECT count(*) FROM events
         WHERE kind = 'unsubscribe' AND forged = 0 AND event_time >= ?1 AND event_time <= ?2",
    )?;
    let delays = count(
        "SELECT count(*) FROM events
         WHERE role = 'recipient' AND kind = 'delay' AND forged = 0 AND event_time >= ?1 AND event_time <= ?2",
    )?;
    let forged = count(
        "SELECT count(*) FROM events WHERE forged = 1 AND event_time >= ?1 AND event_time <= ?2",
    )?;
    let mut reasons = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT label, reason, count(*) FROM events
             WHERE role = 'recipient' AND kind = 'bounce' AND forged = 0
               AND event_time >= ?1 AND event_time <= ?2
             GROUP BY label, reason ORDER BY count(*) DESC, label, reason",
        )?;
        let rows = stmt.query_map(params![s, u], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?))
        })?;
        for row in rows {
            let (label, reason, n): (Option<String>, Option<String>, i64) = row?;
            let n = n.max(0) as u64;
            reasons.push(ReasonRow {
                label,
                reason,
                count: n,
                rate: Percent::of(n, totals.sends).map(|r| (r * 1000.0).round() / 1000.0),
            });
        }
    }
    let mut suppressed = BTreeMap::new();
    {
        let mut stmt = conn.prepare(
            "SELECT coalesce(suppression_reason, '-'), count(DISTINCT address) FROM state_changes
             WHERE to_state = 'suppressed' AND changed_at >= ?1 AND changed_at <= ?2
             GROUP BY 1",
        )?;
        for row in stmt.query_map(params![s, u], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })? {
            let (reason, n) = row?;
            suppressed.insert(reason, n.max(0) as u64);
        }
    }
    let state_count = |state: &str| -> anyhow::Result<u64> {
        let n: i64 = conn.query_row(
            "SELECT count(*) FROM addresses WHERE state = ?1",
            [state],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    };
    let mut pauses = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT scope, domain, reason, rule, started_at, paused_until, window_events,
                    window_sends, window_rate, paused_until > ?3
             FROM domain_pauses
             WHERE (started_at >= ?1 AND started_at <= ?2) OR paused_until > ?3
             ORDER BY started_at DESC, scope, domain",
        )?;
        let rows = stmt.query_map(params![s, u, u], |r| {
            Ok(PauseRow {
                scope: r.get(0)?,
                subject: r.get(1)?,
                reason: r.get(2)?,
                rule: r.get(3)?,
                started_at: r.get(4)?,
                paused_until: r.get(5)?,
                window_events: r.get(6)?,
                window_sends: r.get(7)?,
                window_rate: r.get(8)?,
                active: r.get(9)?,
            })
        })?;
        for row in rows {
            pauses.push(row?);
        }
    }
    Ok(Report {
        since: s.clone(),
        until: u.clone(),
        send_data: totals.sends > 0,
        rates: totals.rates(),
        totals,
        unsubscribes,
        delays,
        forged,
        reasons,
        suppressed,
        suppressed_now: state_count("suppressed")?,
        quarantined_now: state_count("quarantined")?,
        pauses,
        by,
        rows,
        alerts: None,
    })
}

/// The rates over their `[alerts]` limits in the period.
pub fn alerts(
    conn: &Connection,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    config: &AlertsConfig,
) -> anyhow::Result<Vec<Breach>> {
    let mut out = Vec::new();
    let mut check = |rows: &[Row],
                     scope: &'static str,
                     alert: &'static str,
                     rule: &AlertRule,
                     events: fn(&Counts) -> u64| {
        if rule.rate.is_off() {
            return;
        }
        for r in rows {
            let c = &r.counts;
            if r.key == "-" || c.sends < rule.min_sends.max(1) {
                continue;
            }
            let n = events(c);
            if rule.rate.reached(n, c.sends) {
                out.push(Breach {
                    alert,
                    scope,
                    key: r.key.clone(),
                    events: n,
                    sends: c.sends,
                    rate: Percent::of(n, c.sends).unwrap_or(0.0),
                    limit: rule.rate.to_string(),
                });
            }
        }
    };
    let providers = grouped(conn, since, until, By::Provider)?;
    let senders = grouped(conn, since, until, By::SenderDomain)?;
    let campaigns = grouped(conn, since, until, By::Campaign)?;
    check(&providers, "provider", "blocked", &config.blocked, |c| {
        c.blocked
    });
    for (rows, scope) in [(&senders, "sender_domain"), (&campaigns, "campaign")] {
        check(rows, scope, "hard_invalid", &config.hard_invalid, |c| {
            c.hard + c.invalid
        });
        check(rows, scope, "complaints", &config.complaints, |c| {
            c.complaints
        });
    }
    Ok(out)
}

/// The report as tables for people.
fn text(r: &Report, top: usize) -> String {
    let mut s = String::new();
    let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.2}%"));
    let _ = writeln!(s, "rebound report {} .. {}", r.since, r.until);
    let t = &r.totals;
    if r.send_data {
        let _ = writeln!(s, "sends: {}", t.sends);
    } else {
        let _ = writeln!(
            s,
            "sends: none recorded in the period (rates need `rebound sends import`)"
        );
    }
    let _ = writeln!(
        s,
        "bounces: {} {}(hard {}, invalid {}, soft {}, blocked {}; rate limited {}); complaints {}; unsubscribes {}; delays {}",
        t.bounces,
        if r.send_data {
            format!("= {} ", pct(r.rates["bounces"]))
        } else {
            String::new()
        },
        t.hard,
        t.invalid,
        t.soft,
        t.blocked,
        t.rate_limited,
        t.complaints,
        r.unsubscribes,
        r.delays
    );
    if r.forged > 0 {
        let _ = writeln!(
            s,
            "forged (a VERP tag that does not verify; counted in nothing here): {}",
            r.forged
        );
    }
    if r.send_data {
        let _ = writeln!(
            s,
            "rates: hard {}, invalid {}, soft {}, blocked {}, complaints {}",
            pct(r.rates["hard"]),
            pct(r.rates["invalid"]),
            pct(r.rates["soft"]),
            pct(r.rates["blocked"]),
            pct(r.rates["complaints"])
        );
    }
    let suppressed: Vec<String> = r
        .suppressed
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(
        s,
        "suppressed in the period: {}; suppressed now: {}, quarantined now: {}",
        if suppressed.is_empty() {
            "none".to_string()
        } else {
            suppressed.join(", ")
        },
        r.suppressed_now,
        r.quarantined_now
    );
    if r.pauses.is_empty() {
        let _ = writeln!(s, "pauses: none");
    } else {
        let _ = writeln!(s, "pauses:");
        let rows: Vec<Vec<String>> = r
            .pauses
            .iter()
            .map(|p| {
                vec![
                    format!("{} {}", p.scope, p.subject),
                    p.reason.clone(),
                    p.rule.clone().unwrap_or_default(),
                    p.started_at.clone(),
                    format!("{}{}", p.paused_until, if p.active { " (now)" } else { "" }),
                    match p.window_sends {
                        Some(n) => {
                            format!("{} of {n} sends ({})", p.window_events, pct(p.window_rate))
                        }
                        None => format!("{} events", p.window_events),
                    },
                ]
            })
            .collect();
        table(
            &mut s,
            &["paused", "reason", "rule", "started", "until", "saw"],
            &rows,
            &[],
        );
    }
    if !r.reasons.is_empty() && r.by != By::Reason {
        let _ = writeln!(s, "bounces by reason:");
        let rows: Vec<Vec<String>> = r
            .reasons
            .iter()
            .map(|x| {
                let mut v = vec![
                    x.label.clone().unwrap_or_else(|| "-".into()),
                    x.reason.clone().unwrap_or_else(|| "-".into()),
                    x.count.to_string(),
                ];
                if r.send_data {
                    v.push(pct(x.rate));
                }
                v
            })
            .collect();
        let header: &[&str] = if r.send_data {
            &["label", "reason", "bounces", "of sends"]
        } else {
            &["label", "reason", "bounces"]
        };
        table(&mut s, header, &rows, &[2, 3]);
    }
    let title = match r.by {
        By::Reason => "reason",
        By::RecipientDomain => "recipient domain",
        By::Provider => "provider",
        By::SenderDomain => "sending domain",
        By::Sender => "sender",
        By::Mailbox => "mailbox",
        By::Campaign => "campaign",
    };
    let shown = if top == 0 {
        r.rows.len()
    } else {
        top.min(r.rows.len())
    };
    let _ = writeln!(s, "by {title}:");
    let mut header = vec![
        title,
        "bounces",
        "hard",
        "invalid",
        "soft",
        "blocked",
        "complaints",
    ];
    let with_rates = r.send_data && dimension(r.by).sends.is_some();
    if with_rates {
        header.extend([
            "sends",
            "hard%",
            "invalid%",
            "soft%",
            "blocked%",
            "complaint%",
        ]);
    }
    let rows: Vec<Vec<String>> = r.rows[..shown]
        .iter()
        .map(|x| {
            let c = &x.counts;
            let mut v = vec![
                x.key.clone(),
                c.bounces.to_string(),
                c.hard.to_string(),
                c.invalid.to_string(),
                c.soft.to_string(),
                c.blocked.to_string(),
                c.complaints.to_string(),
            ];
            if with_rates {
                v.push(c.sends.to_string());
                for k in ["hard", "invalid", "soft", "blocked", "complaints"] {
                    v.push(pct(x.rates[k]));
                }
            }
            v
        })
        .collect();
    let numeric: Vec<usize> = (1..header.len()).collect();
    table(&mut s, &header, &rows, &numeric);
    if shown < r.rows.len() {
        let _ = writeln!(s, "  ... {} more (--top 0 shows all)", r.rows.len() - shown);
    }
    s.trim_end().to_string()
}

/// Appends an aligned table (numbers right-aligned).
fn table(s: &mut String, header: &[&str], rows: &[Vec<String>], numeric: &[usize]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = String::from(" ");
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i] - c.chars().count();
            l.push(' ');
            if numeric.contains(&i) {
                l.push_str(&" ".repeat(pad));
                l.push_str(c);
            } else {
                l.push_str(c);
                l.push_str(&" ".repeat(pad));
            }
        }
        l.trim_end().to_string()
    };
    let _ = writeln!(s, "{}", line(header.to_vec()));
    for r in rows {
        let _ = writeln!(s, "{}", line(r.iter().map(String::as_str).collect()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_length_or_a_date() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            time::format(parse_since("7d", now).unwrap()),
            "2026-11-15T12:00:00Z"
        );
        assert_eq!(
            time::format(parse_since("24h", now).unwrap()),
            "2026-11-21T12:00:00Z"
        );
        assert_eq!(
            time::format(parse_since("2026-11-01", now).unwrap()),
            "2026-11-01T00:00:00Z"
        );
        assert!(parse_since("last week", now).is_err());
    }
}
