//! Metrics for monitoring: a Prometheus textfile (`--metrics-file PATH` on `poll`, `watch` and
//! `ingest`), for node_exporter's textfile collector (`--collector.textfile.directory`).
//!
//! The file is the text exposition format: `# HELP` and `# TYPE` before each family, names
//! prefixed `rebound_`, base units (seconds), `_total` for counters, no timestamps (the
//! collector refuses them; it exports the file's mtime itself as
//! `node_textfile_mtime_seconds`). It is written whole and renamed into place
//! ([`crate::atomic_file`]), so the collector never reads half of it.
//!
//! Every figure is read from the ledger (on a read-only connection of its own, so that the
//! writer never waits for it), so the file says the same whichever process wrote it last:
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `rebound_messages_total` | counter | `kind` | new messages stored, by kind (every run's `runs.kinds`) |
//! | `rebound_bounced_recipients_total` | counter | `label` | bounced recipients of new messages, by label |
//! | `rebound_errors_total` | counter | `mailbox` | failures recorded by runs (`files` for ingest) |
//! | `rebound_addresses` | gauge | `state`, `reason` | addresses by state and suppression reason (`reason=""` unless suppressed) |
//! | `rebound_paused_domains` | gauge | `reason` | recipient domains paused now (`blocked`, `rate_limited`) |
//! | `rebound_sends_24h` | gauge | `scope`, `subject` | messages sent in the last 24 hours (imported send data), per `provider` and per `sender_domain` |
//! | `rebound_bounce_ratio_24h` | gauge | `scope`, `subject`, `label` | bounced recipients of each label (and `complaint`) over those sends, 0 to 1 |
//! | `rebound_last_success_timestamp_seconds` | gauge | `mailbox` | last time each mailbox was read completely (Unix time) |
//! | `rebound_address_changes_total` | counter | | rows of the change log (what `export --since` and hooks read) |
//! | `rebound_hook_pending_changes` | gauge | `hook` | changes a configured hook has not taken yet |
//! | `rebound_run_duration_seconds` | gauge | `command` | wall time of the run that wrote the file (`poll`, `ingest`) |
//! | `rebound_run_errors` | gauge | `command` | errors of that run |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, OpenFlags};

use crate::analysis::{Kind, Label};
use crate::atomic_file::AtomicFile;
use crate::hooks::Hook;
use crate::ledger::{State, SuppressionReason, time};

/// What the process writing the file knows of its own run.
#[derive(Debug, Clone)]
pub struct RunFacts {
    /// `poll` or `ingest`.
    pub command: &'static str,
    pub duration: Duration,
    pub errors: u64,
}

/// Writes the metrics of the ledger at `database` to `file` (atomically, mode 0644: no
/// personal data in it).
pub fn write(
    database: &Path,
    file: &Path,
    run: Option<&RunFacts>,
    hooks: &[Hook],
) -> anyhow::Result<()> {
    let conn = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening the ledger {} to read metrics", database.display()))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let text = render(&conn, run, hooks, time::now())?;
    AtomicFile::write(file, 0o644, text.as_bytes())
        .with_context(|| format!("writing the metrics file {}", file.display()))
}

/// One metric family being written.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// The exposition text, family by family.
struct Exposition {
    out: String,
}

impl Exposition {
    /// A family with its samples; a family without samples is left out.
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[(Vec<(&str, &str)>, f64)]) {
        if samples.is_empty() {
            return;
        }
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        let mut f = Family { out: &mut self.out };
        for (labels, value) in samples {
            f.sample(name, labels, *value);
        }
    }
}

/// Bounced recipients per label (and complaints) of one rate row.
type LabelCounts = [(&'static str, f64); 6];

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Sums of a JSON object column of `runs` (`kinds`, `bounces`), by key.
fn sums(conn: &Connection, column: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT j.key, sum(j.value)
         FROM runs, json_each(CASE WHEN json_valid(runs.{column}) THEN
                                  CASE WHEN json_type(runs.{column}) = 'object' THEN runs.{column} END
                              END) AS j
         WHERE j.type IN ('integer', 'real')
         GROUP BY j.key"
    ))?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The metrics text of a ledger at `now`.
pub fn render(
    conn: &Connection,
    run: Option<&RunFacts>,
    hooks: &[Hook],
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<String> {
    let mut x = Exposition { out: String::new() };

    let kinds = sums(conn, "kinds")?;
    let mut samples: Vec<(Vec<(&str, &str)>, f64)> = Kind::ALL
        .iter()
        .map(|k| {
            (
                vec![("kind", k.as_str())],
                kinds.get(k.as_str()).copied().unwrap_or(0.0),
            )
        })
        .collect();
    for (k, v) in &kinds {
        if Kind::parse(k).is_none() {
            samples.push((vec![("kind", k.as_str())], *v));
        }
    }
    x.family(
        "rebound_messages_total",
        "counter",
        "New messages stored in the ledger, by kind.",
        &samples,
    );

    let labels = sums(conn, "bounces")?;
    let samples: Vec<_> = [Label::Hard, Label::Soft, Label::Blocked, Label::Invalid]
        .iter()
        .map(|l| {
            (
                vec![("label", l.as_str())],
                labels.get(l.as_str()).copied().unwrap_or(0.0),
            )
        })
        .collect();
    x.family(
        "rebound_bounced_recipients_total",
        "counter",
        "Bounced recipients of new messages, by label.",
        &samples,
    );

    let errors: Vec<(String, f64)> = conn
        .prepare(
            "SELECT mailbox, sum(CASE WHEN json_valid(errors) THEN json_array_length(errors) ELSE 1 END)
             FROM runs WHERE errors IS NOT NULL GROUP BY mailbox ORDER BY mailbox",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let samples: Vec<_> = errors
        .iter()
        .map(|(m, n)| (vec![("mailbox", m.as_str())], *n))
        .collect();
    x.family(
        "rebound_errors_total",
        "counter",
        "Failures recorded by runs (messages not stored, mailboxes not read), by mailbox (files for rebound ingest).",
        &samples,
    );

    let mut by_state: BTreeMap<(String, String), f64> = BTreeMap::new();
    for s in [State::Active, State::Retry, State::Quarantined] {
        by_state.insert((s.as_str().into(), String::new()), 0.0);
    }
    for r in [
        SuppressionReason::Hard,
        SuppressionReason::Invalid,
        SuppressionReason::Complaint,
        SuppressionReason::Unsubscribe,
        SuppressionReason::SoftLimit,
        SuppressionReason::Manual,
    ] {
        by_state.insert(("suppressed".into(), r.as_str().into()), 0.0);
    }
    let mut stmt = conn.prepare(
        "SELECT state, coalesce(suppression_reason, ''), count(*) FROM addresses GROUP BY 1, 2",
    )?;
    for row in stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, f64>(2)?)))? {
        let (state, reason, n): (String, String, f64) = row?;
        by_state.insert((state, reason), n);
    }
    let samples: Vec<_> = by_state
        .iter()
        .map(|((s, r), n)| (vec![("state", s.as_str()), ("reason", r.as_str())], *n))
        .collect();
    x.family(
        "rebound_addresses",
        "gauge",
        "Addresses in the ledger by state and suppression reason (reason is empty unless suppressed).",
        &samples,
    );

    let now_text = time::format(now);
    let mut paused: BTreeMap<String, f64> = [
        ("blocked".to_string(), 0.0),
        ("rate_limited".to_string(), 0.0),
    ]
    .into_iter()
    .collect();
    let mut stmt = conn.prepare(
        "SELECT reason, count(DISTINCT domain) FROM domain_pauses WHERE paused_until > ?1 GROUP BY reason",
    )?;
    for row in stmt.query_map([&now_text], |r| Ok((r.get(0)?, r.get::<_, f64>(1)?)))? {
        let (reason, n): (String, f64) = row?;
        paused.insert(reason, n);
    }
    let samples: Vec<_> = paused
        .iter()
        .map(|(r, n)| (vec![("reason", r.as_str())], *n))
        .collect();
    x.family(
        "rebound_paused_domains",
        "gauge",
        "Recipient domains paused now, by the reason of the pause.",
        &samples,
    );

    // The last 24 hours' rates per provider and per sending domain, from imported send data
    // (what `[alerts]` watches): the sends, and each label's bounced recipients (and the
    // complaints) over them. Campaigns are left out: their number has no bound.
    let mut rates: Vec<(&str, String, f64, LabelCounts)> = Vec::new();
    for (scope, view, column) in [
        ("provider", "v_rates_provider", "provider"),
        ("sender_domain", "v_rates_sender_domain", "sender_domain"),
    ] {
        let mut stmt = conn.prepare(&format!(
            "SELECT {column}, sends, hard, soft, blocked, invalid, rate_limited, complaints
             FROM {view} WHERE period = '24h' AND sends > 0 ORDER BY {column}"
        ))?;
        let rows = stmt.query_map([], |r| {
            let n = |i: usize| r.get::<_, Option<f64>>(i).map(|v| v.unwrap_or(0.0));
            Ok((
                r.get::<_, String>(0)?,
                n(1)?,
                [
                    ("hard", n(2)?),
                    ("soft", n(3)?),
                    ("blocked", n(4)?),
                    ("invalid", n(5)?),
                    ("rate_limited", n(6)?),
                    ("complaint", n(7)?),
                ],
            ))
        })?;
        for row in rows {
            let (subject, sends, counts) = row?;
            rates.push((scope, subject, sends, counts));
        }
    }
    let samples: Vec<_> = rates
        .iter()
        .map(|(scope, subject, sends, _)| {
            (
                vec![("scope", *scope), ("subject", subject.as_str())],
                *sends,
            )
        })
        .collect();
    x.family(
        "rebound_sends_24h",
        "gauge",
        "Messages sent in the last 24 hours (imported send data), per provider and per sending domain.",
        &samples,
    );
    let samples: Vec<_> = rates
        .iter()
        .flat_map(|(scope, subject, sends, counts)| {
            counts.iter().map(move |(label, n)| {
                (
                    vec![
                        ("scope", *scope),
                        ("subject", subject.as_str()),
                        ("label", *label),
                    ],
                    n / sends,
                )
            })
        })
        .collect();
    x.family(
        "rebound_bounce_ratio_24h",
        "gauge",
        "Bounced recipients by label (and complaints) over the messages sent in the last 24 hours, per provider and per sending domain (0 to 1).",
        &samples,
    );

    let last_ok: Vec<(String, String)> = conn
        .prepare(
            "SELECT mailbox, max(heartbeat_at) FROM runs WHERE heartbeat_at IS NOT NULL
             GROUP BY mailbox ORDER BY mailbox",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let samples: Vec<_> = last_ok
        .iter()
        .filter_map(|(m, t)| {
            let t = time::parse_stored(t)?;
            Some((vec![("mailbox", m.as_str())], t.timestamp() as f64))
        })
        .collect();
    x.family(
        "rebound_last_success_timestamp_seconds",
        "gauge",
        "Last time each mailbox was read completely (Unix time; files for rebound ingest).",
        &samples,
    );

    let head: i64 = conn.query_row(
        "SELECT coalesce(max(id), 0) FROM suppression_log",
        [],
        |r| r.get(0),
    )?;
    x.family(
        "rebound_address_changes_total",
        "counter",
        "Changes of an address's state as senders see it (rows of the change log that export --since and hooks read).",
        &[(vec![], head as f64)],
    );

    let mut samples = Vec::new();
    let names: Vec<String> = hooks.iter().map(Hook::name).collect();
    for (hook, name) in hooks.iter().zip(&names) {
        let cursor: i64 = conn
            .query_row(
                "SELECT coalesce((SELECT last_id FROM hook_cursors WHERE hook = ?1), 0)",
                [&hook.key],
                |r| r.get(0),
            )
            .unwrap_or(0);
        samples.push((vec![("hook", name.as_str())], (head - cursor).max(0) as f64));
    }
    x.family(
        "rebound_hook_pending_changes",
        "gauge",
        "Changes a configured hook has not taken yet (it failed, or has not run since).",
        &samples,
    );

    if let Some(run) = run {
        x.family(
            "rebound_run_duration_seconds",
            "gauge",
            "Wall time of the run that wrote this file.",
            &[(
                vec![("command", run.command)],
                (run.duration.as_secs_f64() * 1000.0).round() / 1000.0,
            )],
        );
        x.family(
            "rebound_run_errors",
            "gauge",
            "Errors of the run that wrote this file.",
            &[(vec![("command", run.command)], run.errors as f64)],
        );
    }
    Ok(x.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `runs` row whose JSON is not an object of counts (hand-edited, or from a future
    /// version) is left out of the sums, not an error that stops the file.
    #[test]
    fn malformed_run_counts_are_skipped() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE runs (kinds TEXT);
             INSERT INTO runs VALUES ('{\"bounce\": 2}'), ('not json'), ('[1, 2]'), (NULL),
                                     ('{\"bounce\": 3, \"other\": \"x\"}');",
        )
        .unwrap();
        let s = sums(&conn, "kinds").unwrap();
        assert_eq!(s.get("bounce"), Some(&5.0));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn labels_and_help_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape_help("x\\y\nz \"q\""), "x\\\\y\\nz \"q\"");
        let mut x = Exposition { out: String::new() };
        x.family("rebound_x", "gauge", "Help.", &[]);
        assert!(x.out.is_empty(), "no samples, no family");
        x.family(
            "rebound_x",
            "gauge",
            "Help.",
            &[(vec![("hook", "/bin/a \"b\"")], 2.0)],
        );
        assert_eq!(
            x.out,
            "# HELP rebound_x Help.\n# TYPE rebound_x gauge\nrebound_x{hook=\"/bin/a \\\"b\\\"\"} 2\n"
        );
    }
}
