//! Sends from any sending system, as CSV or JSON lines: one row per send or per aggregate.
//!
//! Columns (CSV: named by the header row; JSON lines: the keys of each object):
//!
//! | column | |
//! |---|---|
//! | `time` | RFC 3339 (`2026-11-22T14:03:00Z`, `2026-11-22T11:03:00-03:00`), required |
//! | `recipient` or `recipient_domain` | the address mailed, or only its domain; one is required |
//! | `sender` or `sender_domain` | the sending address (its domain is kept), or the domain; one is required |
//! | `campaign` | optional |
//! | `count` | optional, default 1: a row may stand for many sends |
//!
//! An unknown column is an error for the whole file (a typo would otherwise drop data); a row
//! that cannot be read is reported with its line number and skipped, the rest are imported.
//! CSV is RFC 4180 without line breaks inside fields: fields separated by commas, double quotes
//! around a field that holds commas or quotes (`""` for a quote).

use chrono::{DateTime, Utc};

use crate::ledger::policy::floor_hour;
use crate::ledger::sends::{SendKey, Sends};
use crate::ledger::{domain_of, normalize_address};

const COLUMNS: &[&str] = &[
    "time",
    "recipient",
    "recipient_domain",
    "sender",
    "sender_domain",
    "campaign",
    "count",
];

/// One row's values, by column.
#[derive(Debug, Default)]
struct Row<'a> {
    time: Option<&'a str>,
    recipient: Option<&'a str>,
    recipient_domain: Option<&'a str>,
    sender: Option<&'a str>,
    sender_domain: Option<&'a str>,
    campaign: Option<&'a str>,
    count: Option<&'a str>,
}

impl<'a> Row<'a> {
    fn set(&mut self, column: &str, value: &'a str) {
        let v = Some(value.trim()).filter(|v| !v.is_empty());
        match column {
            "time" => self.time = v,
            "recipient" => self.recipient = v,
            "recipient_domain" => self.recipient_domain = v,
            "sender" => self.sender = v,
            "sender_domain" => self.sender_domain = v,
            "campaign" => self.campaign = v,
            "count" => self.count = v,
            _ => {}
        }
    }

    /// The row as sends, or why it cannot be read.
    fn add_to(&self, now: DateTime<Utc>, sends: &mut Sends) -> Result<u64, String> {
        let when = self.time.ok_or("no time")?;
        let t = DateTime::parse_from_rfc3339(when)
            .map_err(|_| format!("time {when:?} is not RFC 3339 (2026-11-22T14:03:00Z)"))?
            .with_timezone(&Utc);
        if t.timestamp() < 631_152_000 || t > now + chrono::Duration::days(1) {
            return Err(format!("time {when:?} is before 1990 or in the future"));
        }
        let recipient_domain = match (self.recipient, self.recipient_domain) {
            (Some(a), _) => {
                address_domain(a).ok_or(format!("recipient {a:?} is not an address"))?
            }
            (None, Some(d)) => {
                domain(d).ok_or(format!("recipient_domain {d:?} is not a domain"))?
            }
            (None, None) => return Err("no recipient or recipient_domain".into()),
        };
        let sender_domain = match (self.sender, self.sender_domain) {
            (Some(a), _) => address_domain(a).ok_or(format!("sender {a:?} is not an address"))?,
            (None, Some(d)) => domain(d).ok_or(format!("sender_domain {d:?} is not a domain"))?,
            (None, None) => return Err("no sender or sender_domain".into()),
        };
        let count = match self.count {
            None => 1,
            Some(c) => c
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=1_000_000_000).contains(n))
                .ok_or(format!("count {c:?} is not a whole number from 1 up"))?,
        };
        let campaign = self.campaign.unwrap_or("");
        if campaign.chars().count() > 200 {
            return Err("campaign is longer than 200 characters".into());
        }
        *sends
            .entry(SendKey {
                hour: floor_hour(t),
                recipient_domain,
                sender_domain,
                campaign: campaign.to_string(),
            })
            .or_insert(0) += count;
        Ok(count)
    }
}

fn address_domain(a: &str) -> Option<String> {
    let a = normalize_address(a)?;
    a.contains('@')
        .then(|| domain_of(&a))
        .and_then(|d| domain(&d))
}

fn domain(d: &str) -> Option<String> {
    let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = d.contains('.')
        && !d.starts_with('.')
        && d.chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.' || c == '_');
    ok.then_some(d)
}

/// A CSV input: the header row names the columns.
#[derive(Debug)]
pub struct Csv {
    columns: Vec<String>,
}

impl Csv {
    /// Reads the header row; an unknown or repeated column, or a header without the required
    /// columns, is an error for the file.
    pub fn new(header: &str) -> Result<Csv, String> {
        let fields = split_csv(header.trim_start_matches('\u{feff}'))
            .map_err(|e| format!("the header row: {e}"))?;
        let mut columns = Vec::new();
        for f in fields {
            let name = f.trim().to_ascii_lowercase();
            if !COLUMNS.contains(&name.as_str()) {
                return Err(format!(
                    "unknown column {name:?} in the header row (known: {})",
                    COLUMNS.join(", ")
                ));
            }
            if columns.contains(&name) {
                return Err(format!("column {name:?} appears twice in the header row"));
            }
            columns.push(name);
        }
        let has = |c: &str| columns.iter().any(|x| x == c);
        if !has("time") {
            return Err("the header row has no `time` column".into());
        }
        if !has("recipient") && !has("recipient_domain") {
            return Err("the header row has neither `recipient` nor `recipient_domain`".into());
        }
        if !has("sender") && !has("sender_domain") {
            return Err("the header row has neither `sender` nor `sender_domain`".into());
        }
        Ok(Csv { columns })
    }

    /// One data row: the sends it adds, or why it is refused. A blank line adds nothing.
    pub fn row(&self, line: &str, now: DateTime<Utc>, sends: &mut Sends) -> Result<u64, String> {
        if line.trim().is_empty() {
            return Ok(0);
        }
        let fields = split_csv(line)?;
        if fields.len() != self.columns.len() {
            return Err(format!(
                "{} fields where the header names {}",
                fields.len(),
                self.columns.len()
            ));
        }
        let mut row = Row::default();
        for (c, v) in self.columns.iter().zip(&fields) {
            row.set(c, v);
        }
        row.add_to(now, sends)
    }
}

/// One JSON object per line, with the CSV's columns as keys (`count` a number or a string).
pub fn json_row(line: &str, now: DateTime<Utc>, sends: &mut Sends) -> Result<u64, String> {
    if line.trim().is_empty() {
        return Ok(0);
    }
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let object = value.as_object().ok_or("not a JSON object")?;
    let mut texts: Vec<(String, String)> = Vec::new();
    for (k, v) in object {
        if !COLUMNS.contains(&k.as_str()) {
            return Err(format!("unknown key {k:?} (known: {})", COLUMNS.join(", ")));
        }
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) if k == "count" => n.to_string(),
            serde_json::Value::Null => continue,
            _ => return Err(format!("{k} must be a string")),
        };
        texts.push((k.clone(), text));
    }
    let mut row = Row::default();
    for (k, v) in &texts {
        row.set(k, v);
    }
    row.add_to(now, sends)
}

/// Splits one CSV line into fields (RFC 4180, no line breaks inside fields).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let line = line.trim_end_matches(['\n', '\r']);
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed on its line".into()),
                }
            }
            while chars.peek() == Some(&' ') {
                chars.next();
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err("text after a quoted field".into()),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("a quote inside an unquoted field".into()),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::time;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn csv_rows_aggregate_per_hour_and_bad_rows_say_why() {
        let csv = Csv::new("time,recipient,sender_domain,campaign,count\r\n").unwrap();
        let mut sends = Sends::new();
        assert_eq!(
            csv.row(
                "2026-11-22T10:05:00Z,Ana@Gmail.com,news.example,\"nov, week 1\",\n",
                now(),
                &mut sends
            ),
            Ok(1)
        );
        assert_eq!(
            csv.row(
                "2026-11-22T07:59:00-03:00,bob@gmail.com,news.example,\"nov, week 1\",40\n",
                now(),
                &mut sends
            ),
            Ok(40)
        );
        assert_eq!(
            sends.len(),
            1,
            "the same hour (10:00 UTC), domains and campaign"
        );
        assert_eq!(*sends.values().next().unwrap(), 41);
        let k = sends.keys().next().unwrap();
        assert_eq!(
            (
                k.recipient_domain.as_str(),
                k.campaign.as_str(),
                time::format(k.hour)
            ),
            (
                "gmail.com",
                "nov, week 1",
                "2026-11-22T10:00:00Z".to_string()
            )
        );
        for (bad, why) in [
            ("yesterday,a@b.example,s.example,,1", "not RFC 3339"),
            ("2026-11-22T10:05:00Z,nobody,s.example,,1", "not an address"),
            (
                "2026-11-22T10:05:00Z,a@b.example,s.example,,-2",
                "whole number",
            ),
            ("2026-11-22T10:05:00Z,a@b.example,s.example", "3 fields"),
            ("2027-11-22T10:05:00Z,a@b.example,s.example,,1", "future"),
            (
                "2026-11-22T10:05:00Z,\"a@b.example,s.example,,1",
                "not closed",
            ),
        ] {
            let err = csv.row(bad, now(), &mut sends).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert_eq!(csv.row("  \n", now(), &mut sends), Ok(0));
    }

    #[test]
    fn csv_headers_are_checked() {
        assert!(Csv::new("time,recipient_domain,sender").is_ok());
        let err = Csv::new("time,recipient,sender,campaing").unwrap_err();
        assert!(err.contains("unknown column \"campaing\""), "{err}");
        assert!(Csv::new("time,recipient").unwrap_err().contains("sender"));
        assert!(Csv::new("recipient,sender").unwrap_err().contains("time"));
        assert!(
            Csv::new("time,time,recipient,sender")
                .unwrap_err()
                .contains("twice")
        );
    }

    #[test]
    fn json_lines() {
        let mut sends = Sends::new();
        let line = r#"{"time":"2026-11-22T10:05:00Z","recipient_domain":"Outlook.com","sender":"n@news.example","count":12}"#;
        assert_eq!(json_row(line, now(), &mut sends), Ok(12));
        let err = json_row(
            r#"{"time":"2026-11-22T10:05:00Z","rcpt":"a@b.example"}"#,
            now(),
            &mut sends,
        )
        .unwrap_err();
        assert!(err.contains("unknown key \"rcpt\""), "{err}");
        assert!(json_row("[1]", now(), &mut sends).is_err());
        assert_eq!(sends.keys().next().unwrap().recipient_domain, "outlook.com");
    }
}
