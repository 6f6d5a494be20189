//! A length of time as operators write it in the config file: `"4h"`, `"90d"`, `"30m"`,
//! `"45s"` (or a bare number of seconds). Policy numbers are spans, so they read like the
//! issue that asked for them instead of like a count of seconds.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration with second precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(pub i64);

impl Span {
    pub const fn seconds(s: i64) -> Span {
        Span(s)
    }
    pub const fn minutes(m: i64) -> Span {
        Span(m * 60)
    }
    pub const fn hours(h: i64) -> Span {
        Span(h * 3600)
    }
    pub const fn days(d: i64) -> Span {
        Span(d * 86_400)
    }

    pub fn as_chrono(self) -> chrono::Duration {
        chrono::Duration::seconds(self.0)
    }

    /// Parses `"<number><unit>"` with unit `s`, `m`, `h`, `d` or `w`.
    pub fn parse(text: &str) -> Result<Span, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let n: i64 = number
            .parse()
            .map_err(|_| format!("bad duration {text:?}: expected e.g. \"4h\" or \"90d\""))?;
        let factor = match unit.trim() {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            other => {
                return Err(format!(
                    "bad duration unit {other:?} in {text:?} (use s, m, h, d or w)"
                ));
            }
        };
        n.checked_mul(factor)
            .map(Span)
            .ok_or_else(|| format!("duration {text:?} is too large"))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s != 0 && s % 86_400 == 0 {
            write!(f, "{}d", s / 86_400)
        } else if s != 0 && s % 3600 == 0 {
            write!(f, "{}h", s / 3600)
        } else if s != 0 && s % 60 == 0 {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(s) if s >= 0 => Ok(Span(s)),
            Raw::Seconds(s) => Err(serde::de::Error::custom(format!("negative duration {s}"))),
            Raw::Text(t) => Span::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_round_trips() {
        assert_eq!(Span::parse("4h"), Ok(Span::hours(4)));
        assert_eq!(Span::parse("90d"), Ok(Span::days(90)));
        assert_eq!(Span::parse("30m"), Ok(Span::minutes(30)));
        assert_eq!(Span::parse("45"), Ok(Span::seconds(45)));
        assert!(Span::parse("4 parsecs").is_err());
        assert!(Span::parse("h").is_err());
        assert_eq!(Span::days(7).to_string(), "7d");
        assert_eq!(Span::hours(72).to_string(), "3d");
    }
}
