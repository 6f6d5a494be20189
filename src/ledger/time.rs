//! Times in the ledger: UTC text `2026-11-22T14:03:00Z`, so that they read well at a sqlite3
//! prompt and compare correctly as strings (the views compare them with `strftime('now')`).
//!
//! Dates in bounces are written by hundreds of different MTAs; parsing is lenient and never
//! fails loudly: a date that cannot be read is simply not used, and the next source of the
//! event time is tried (see `Ledger::ingest`).

use chrono::{DateTime, NaiveDateTime, Utc};

/// The ledger's one time format.
pub const FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

pub fn format(t: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    // What `t.format(FORMAT)` gives, without interpreting the format string at every call (the
    // writer formats a few times per message).
    if (0..=9999).contains(&t.year()) {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    } else {
        t.format(FORMAT).to_string()
    }
}

pub fn now() -> DateTime<Utc> {
    // Second precision: every stored time has it, and equal times must compare equal.
    DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_else(Utc::now)
}

/// Reads a stored ledger time back.
pub fn parse_stored(s: &str) -> Option<DateTime<Utc>> {
    // The shape every stored time has, read by position; anything else through chrono.
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    if b.len() == 20 && [b[4], b[7], b[10], b[13], b[16], b[19]] == *b"--T::Z" {
        let date =
            chrono::NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)?;
        return Some(
            date.and_hms_opt(digits(11..13)?, digits(14..16)?, digits(17..19)?)?
                .and_utc(),
        );
    }
    NaiveDateTime::parse_from_str(s, FORMAT)
        .ok()
        .map(|n| n.and_utc())
}

/// Parses a date as found in mail: RFC 5322 (`Mon, 1 Jan 2024 10:00:00 +0000 (UTC)`), RFC 3339,
/// or the few common deviations (no weekday, `UT`/`GMT` zone names, missing seconds, extra
/// spaces). Dates before 1990 or more than a day in the future of `not_after` are refused: a
/// wrong clock on a remote MTA must not schedule a retry in 2099.
pub fn parse_mail_date(text: &str, not_after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let t = parse_any(text)?;
    let sane = t.timestamp() >= 631_152_000 && t <= not_after + chrono::Duration::days(1);
    sane.then_some(t)
}

fn parse_any(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    // Drop trailing comments like "(UTC)" or "(Pacific Standard Time)", collapse spaces.
    let mut cleaned = String::with_capacity(text.len());
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => cleaned.push(c),
            _ => {}
        }
    }
    let cleaned = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Ok(t) = DateTime::parse_from_rfc2822(&cleaned) {
        return Some(t.with_timezone(&Utc));
    }
    // Without the weekday (some MTAs omit it, or write it wrongly).
    let no_weekday = match cleaned.split_once(", ") {
        Some((day, rest)) if day.chars().all(|c| c.is_ascii_alphabetic()) => rest,
        _ => cleaned.as_str(),
    };
    let zoned = no_weekday
        .trim_end_matches(" UT")
        .trim_end_matches(" UTC")
        .trim_end_matches(" GMT");
    let zoned = if zoned.len() != no_weekday.len() {
        format!("{zoned} +0000")
    } else {
        no_weekday.to_string()
    };
    for fmt in [
        "%d %b %Y %H:%M:%S %z",
        "%d %b %Y %H:%M %z",
        "%d %B %Y %H:%M:%S %z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(&zoned, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for fmt in ["%d %b %Y %H:%M:%S", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(no_weekday, fmt) {
            return Some(t.and_utc());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<String> {
        parse_mail_date(s, now()).map(format)
    }

    #[test]
    fn reads_the_dates_mtas_write() {
        assert_eq!(
            p("Mon, 22 Jan 2024 14:03:00 +0100").as_deref(),
            Some("2024-01-22T13:03:00Z")
        );
        assert_eq!(
            p("Mon, 22 Jan 2024 14:03:00 +0000 (UTC)").as_deref(),
            Some("2024-01-22T14:03:00Z")
        );
        assert_eq!(
            p("22 Jan 2024 14:03:00 GMT").as_deref(),
            Some("2024-01-22T14:03:00Z")
        );
        assert_eq!(
            p("Tue, 22 Jan 2024  14:03:00 -0500").as_deref(),
            Some("2024-01-22T19:03:00Z")
        );
        assert_eq!(
            p("2024-01-22T14:03:00Z").as_deref(),
            Some("2024-01-22T14:03:00Z")
        );
        assert_eq!(p("yesterday"), None);
        assert_eq!(p("Mon, 1 Jan 1970 00:00:00 +0000"), None);
        assert_eq!(p("Mon, 1 Jan 2999 00:00:00 +0000"), None);
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    /// The fast paths give exactly what chrono gives with the one format, both ways.
    #[test]
    fn stored_times_round_trip_as_chrono_would() {
        for secs in [
            0i64,
            1,
            59,
            951_782_400,
            1_767_225_599,
            1_767_225_600,
            4_102_444_799,
            253_402_300_799,
        ] {
            let t = DateTime::from_timestamp(secs, 0).unwrap();
            let text = format(t);
            assert_eq!(text, t.format(FORMAT).to_string());
            assert_eq!(parse_stored(&text), Some(t));
        }
        for bad in [
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01 00:00:00Z",
            "2026-01-0aT00:00:00Z",
            "",
            "2026",
        ] {
            assert_eq!(
                parse_stored(bad),
                NaiveDateTime::parse_from_str(bad, FORMAT)
                    .ok()
                    .map(|n| n.and_utc()),
                "{bad}"
            );
        }
    }
}
