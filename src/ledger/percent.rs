//! A rate as operators write it in the config file: `"2%"`, `"0.1%"`. Kept exactly, in
//! millionths (parts per million), so that "3 of 150 reaches 2%" is decided by integers and
//! never by a float that lands a hair below the line.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A percentage with four decimals (`"0.0001%"` is the smallest step). `0%` means off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Percent {
    ppm: u64,
}

impl Percent {
    /// `n` percent.
    pub const fn whole(n: u64) -> Percent {
        Percent { ppm: n * 10_000 }
    }

    /// Parts per million: `Percent::ppm(1_000)` is 0.1%.
    pub const fn ppm(ppm: u64) -> Percent {
        Percent { ppm }
    }

    pub fn is_off(self) -> bool {
        self.ppm == 0
    }

    /// Whether `part` of `whole` is at least this rate (never for an empty whole).
    pub fn reached(self, part: u64, whole: u64) -> bool {
        whole > 0 && u128::from(part) * 1_000_000 >= u128::from(self.ppm) * u128::from(whole)
    }

    /// `part` of `whole` in percent (for people; decisions use [`Percent::reached`]).
    pub fn of(part: u64, whole: u64) -> Option<f64> {
        (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
    }

    /// Parses `"2%"`, `"0.1 %"`, `"12.5%"`.
    pub fn parse(text: &str) -> Result<Percent, String> {
        let t = text.trim();
        let number = t.strip_suffix('%').map(str::trim).ok_or_else(|| {
            format!("bad rate {t:?}: write a percentage, e.g. \"2%\" or \"0.1%\"")
        })?;
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        if !digits(int) || !(frac.is_empty() || digits(frac)) || frac.len() > 4 {
            return Err(format!(
                "bad rate {t:?}: write a percentage with at most four decimals, e.g. \"2%\" or \"0.1%\""
            ));
        }
        let int: u64 = int
            .parse()
            .map_err(|_| format!("bad rate {t:?}: too large"))?;
        if int > 100 {
            return Err(format!("bad rate {t:?}: a rate is at most 100%"));
        }
        let frac: u64 = format!("{frac:0<4}").parse().unwrap_or(0);
        let ppm = int * 10_000 + frac;
        if ppm > 1_000_000 {
            return Err(format!("bad rate {t:?}: a rate is at most 100%"));
        }
        Ok(Percent { ppm })
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (int, frac) = (self.ppm / 10_000, self.ppm % 10_000);
        if frac == 0 {
            write!(f, "{int}%")
        } else {
            let frac = format!("{frac:04}");
            write!(f, "{int}.{}%", frac.trim_end_matches('0'))
        }
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Percent, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Text(String),
            Number(f64),
        }
        match Written::deserialize(d)? {
            Written::Text(t) => Percent::parse(&t).map_err(serde::de::Error::custom),
            Written::Number(n) => Err(serde::de::Error::custom(format!(
                "write the rate as a percentage in quotes, e.g. \"{n}%\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_shows_and_decides_exactly() {
        assert_eq!(Percent::parse("2%").unwrap(), Percent::whole(2));
        assert_eq!(Percent::parse(" 0.1 %").unwrap(), Percent::ppm(1_000));
        assert_eq!(Percent::parse("12.5%").unwrap().to_string(), "12.5%");
        assert_eq!(Percent::parse("0.03%").unwrap().to_string(), "0.03%");
        for bad in ["2", "two%", "101%", "0.00001%", "-1%", ".5%"] {
            assert!(Percent::parse(bad).is_err(), "{bad}");
        }
        let two = Percent::whole(2);
        assert!(two.reached(20, 1000));
        assert!(!two.reached(19, 1000));
        assert!(Percent::ppm(1_000).reached(1, 1000), "0.1% of 1000 is 1");
        assert!(!two.reached(5, 0));
        assert_eq!(Percent::of(3, 100), Some(3.0));
    }
}
