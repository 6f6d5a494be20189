//! `rebound explain ADDRESS`: the address's state, its evidence (every event, oldest first)
//! and every state change with the policy rule that fired. `--json`: the same as one JSON
//! object (`explain_json`).

use std::io::Write;
use std::process::ExitCode;

use rusqlite::{OptionalExtension, params};

use super::LedgerArgs;
use crate::analysis::Signature;
use crate::ledger::normalize_address;

pub fn run(args: &LedgerArgs, address: &str, json: bool) -> anyhow::Result<ExitCode> {
    let (_, ledger) = args.open_existing()?;
    let conn = ledger.connection();
    let address = normalize_address(address).unwrap_or_else(|| address.to_lowercase());
    if json {
        return super::explain_json::print(conn, &address);
    }
    type Row = (
        String,
        String,
        Option<String>,
        Option<String>,
        Option<i64>,
        i64,
        i64,
        Option<String>,
        String,
        String,
        bool,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let row: Option<Row> = conn
        .query_row(
            "SELECT domain, state, suppression_reason, state_since, state_event_id, attempts, soft_count,
                    next_retry_at, first_seen_at, last_seen_at, is_role, last_label, last_reason,
                    last_status, last_diagnostic
             FROM addresses WHERE address = ?1",
            [&address],
            |r| {
                Ok((
                    r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?,
                    r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?, r.get(12)?, r.get(13)?, r.get(14)?,
                ))
            },
        )
        .optional()?;
    let Some((
        domain,
        state,
        reason,
        since,
        state_event,
        attempts,
        soft,
        next_retry,
        first,
        last,
        role,
        ll,
        lr,
        ls,
        ld,
    )) = row
    else {
        tracing::error!("{address}: not in the ledger");
        return Ok(ExitCode::from(1));
    };
    let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{address}{}",
        if role { "  (role account)" } else { "" }
    )?;
    let shown = reason
        .as_ref()
        .map_or(state.clone(), |r| format!("{state} ({r})"));
    writeln!(
        out,
        "  state:      {shown} since {} (event {})",
        dash(&since),
        state_event.map_or("-".into(), |e| e.to_string())
    )?;
    if let Some(t) = &next_retry {
        writeln!(out, "  next retry: {t}")?;
    }
    writeln!(
        out,
        "  attempts:   {attempts} bounces, {soft} soft counting toward the limit"
    )?;
    writeln!(out, "  seen:       {first} … {last}")?;
    writeln!(
        out,
        "  last bounce: {} {} {} {}",
        dash(&ll),
        dash(&lr),
        dash(&ls),
        dash(&ld)
    )?;

    // The domain's own pauses and its provider's (`scope`, `domain_pauses.domain` then the
    // provider's name).
    let mut pauses = conn.prepare(
        "SELECT reason, started_at, paused_until, event_count,
                paused_until > strftime('%Y-%m-%dT%H:%M:%SZ', 'now'),
                CASE scope WHEN 'provider' THEN ' (provider ' || domain || ')' ELSE '' END,
                coalesce(', rule ' || rule, '')
         FROM domain_pauses
         WHERE (scope = 'domain' AND domain = ?1)
            OR (scope = 'provider' AND domain = (SELECT provider FROM provider_domains WHERE domain = ?1))
         ORDER BY started_at",
    )?;
    type PauseLine = (String, String, String, i64, bool, String, String);
    let pauses: Vec<PauseLine> = pauses
        .query_map([&domain], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    if !pauses.is_empty() {
        writeln!(out, "\ndomain {domain} pauses:")?;
        for (reason, from, until, n, now, provider, rule) in pauses {
            writeln!(
                out,
                "  {from} → {until}  {reason}{provider}, {n} events{rule}{}",
                if now { "  (PAUSED NOW)" } else { "" }
            )?;
        }
    }

    writeln!(out, "\nevents (oldest first):")?;
    let mut events = conn.prepare(
        "SELECT e.id, e.event_time, e.role, e.kind, e.label, e.reason, e.status, e.rule,
                coalesce(e.diagnostic, e.note), coalesce(m.source_path, m.mailbox || '/' || m.folder || ' uid ' || m.uid)
                    || coalesce(' (raw bytes purged ' || m.raw_purged_at || ')', ''),
                e.phase, e.original_recipient, e.final_recipient, e.return_path, e.signature,
                e.forged
         FROM events e LEFT JOIN messages m ON m.id = e.message_id
         WHERE e.address = ?1 ORDER BY e.event_time, e.sort_key, e.recipient_index, e.id",
    )?;
    let rows = events.query_map(params![address], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, Option<String>>(6)?,
            r.get::<_, Option<String>>(7)?,
            r.get::<_, Option<String>>(8)?,
            r.get::<_, Option<String>>(9)?,
            Recipients {
                phase: r.get(10)?,
                original: r.get(11)?,
                last: r.get(12)?,
                return_path: r.get(13)?,
                signature: r.get(14)?,
                forged: r.get(15)?,
            },
        ))
    })?;
    for row in rows {
        let (id, t, role, kind, label, reason, status, rule, diag, source, seen) = row?;
        let kind = if role == "sender" {
            format!("{kind} (from)")
        } else {
            kind
        };
        writeln!(
            out,
            "  #{id:<5} {t}  {kind:<16} {:<8} {:<18} {:<7} rule {}",
            dash(&label),
            dash(&reason),
            dash(&status),
            dash(&rule)
        )?;
        if let Some(line) = seen.verp_line() {
            writeln!(out, "          {line}")?;
        }
        if let Some(p) = &seen.phase {
            writeln!(out, "          failed at {}", phase_words(p))?;
        }
        if let Some(line) = seen.addresses_line(&address) {
            writeln!(out, "          {line}")?;
        }
        if let Some(d) = diag {
            writeln!(out, "          {d}")?;
        }
        if let Some(s) = source {
            writeln!(out, "          from {s}")?;
        }
    }

    writeln!(out, "\nstate changes:")?;
    let mut changes = conn.prepare(
        "SELECT changed_at, from_state, to_state, suppression_reason, rule, detail, event_id
         FROM state_changes WHERE address = ?1 ORDER BY id",
    )?;
    let rows = changes.query_map([&address], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, Option<i64>>(6)?,
        ))
    })?;
    let mut any = false;
    for row in rows {
        let (t, from, to, why, rule, detail, event) = row?;
        any = true;
        let to = why.map_or(to.clone(), |w| format!("{to} ({w})"));
        writeln!(
            out,
            "  {t}  {from} → {to}  rule {rule}: {detail} (event #{})",
            event.map_or("-".into(), |e| e.to_string())
        )?;
    }
    if !any {
        writeln!(out, "  none: the address has always been active")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What a report said of where and to whom delivery failed, and where it was delivered.
struct Recipients {
    phase: Option<String>,
    original: Option<String>,
    last: Option<String>,
    /// The VERP address the message came to, what its tag said, and whether the event was
    /// stored as forged (counted against nothing).
    return_path: Option<String>,
    signature: Option<Signature>,
    forged: bool,
}

impl Recipients {
    /// "FORGED ..." for evidence that counts against nothing, else the VERP return path the
    /// message came to.
    fn verp_line(&self) -> Option<String> {
        let via = self
            .return_path
            .as_deref()
            .map_or(String::new(), |rp| format!(" (sent to {rp})"));
        if self.forged {
            let why = match self.signature {
                Some(Signature::Invalid) => "the return path's tag does not verify",
                _ => {
                    "no valid tag, and no DSN in the message names the address ([verp] require_signature)"
                }
            };
            return Some(format!("FORGED, counted against nothing: {why}{via}"));
        }
        let rp = self.return_path.as_deref()?;
        let signature = self.signature.map_or("-", Signature::as_str);
        Some(format!("via VERP return path {rp} (signature {signature})"))
    }

    /// "original recipient x, final recipient y" when the report names addresses other than
    /// the one the ledger keys the event on.
    fn addresses_line(&self, address: &str) -> Option<String> {
        fn other<'a>(a: &'a Option<String>, address: &str) -> Option<&'a str> {
            a.as_deref().filter(|a| *a != address)
        }
        match (other(&self.original, address), other(&self.last, address)) {
            (None, None) => None,
            (Some(o), None) => Some(format!("original recipient {o}")),
            (None, Some(f)) => Some(format!(
                "final recipient {f} (the address the failing server tried)"
            )),
            (Some(o), Some(f)) => Some(format!("original recipient {o}, final recipient {f}")),
        }
    }
}

/// A phase as a sentence: `rcpt_to` → "RCPT TO (the recipient)".
fn phase_words(phase: &str) -> String {
    let what = match phase {
        "routing" => "routing (DNS or MX lookup, before any connection)",
        "connect" => "the connection or greeting (a refusal of the sending host)",
        "helo" => "HELO/EHLO (a refusal of the sending host)",
        "starttls" => "STARTTLS",
        "mail_from" => "MAIL FROM (a refusal of the sender)",
        "rcpt_to" => "RCPT TO (the recipient)",
        "data" => "DATA",
        "end_of_data" => "the end of the data (after the message was sent)",
        other => other,
    };
    what.to_string()
}
