//! A strict reader of the Prometheus text exposition format (version 0.0.4), as node_exporter's
//! textfile collector reads it, and stricter where rebound promises more: every line is a
//! `# HELP`, a `# TYPE` or a sample; HELP and TYPE come once per family, before its samples;
//! a family's samples are together; no series twice; label names and escapes valid; no
//! timestamps (the textfile collector refuses them); the text ends with a newline; every name
//! starts `rebound_` and every counter ends `_total`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

fn valid_metric_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(n: &str) -> bool {
    let mut chars = n.chars();
    !n.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ if v
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')) =>
        {
            v.parse().map_err(|_| format!("bad value {v:?}"))
        }
        _ => Err(format!("bad value {v:?}")),
    }
}

/// Parses `{a="x",b="y"}` starting at the `{`; returns the labels and the rest after `}`.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = &s[1..];
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            if !labels.is_empty() {
                return Err("a comma before }".into());
            }
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !valid_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            let (i, c) = chars.next().ok_or("unterminated label value")?;
            match c {
                '"' => break i,
                '\\' => match chars.next().map(|x| x.1) {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => return Err(format!("bad escape \\{other:?}")),
                },
                '\n' => return Err("newline in a label value".into()),
                c => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
            if rest.starts_with('}') {
                return Err("a comma before }".into());
            }
        } else if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        } else {
            return Err("expected , or } after a label".into());
        }
    }
}

/// Parses the whole text; the error names the line.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err("the text must end with a newline".into());
    }
    let mut samples = Vec::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series: HashSet<String> = HashSet::new();
    for (n, line) in text[..text.len() - 1].split('\n').enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() || line.contains('\r') {
            return Err(at("empty line or carriage return".into()));
        }
        // A family ends when a line of another family begins.
        let family = if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (keyword, name, rest) = (parts.next(), parts.next(), parts.next());
            let name = name.ok_or_else(|| at("comment without a name".into()))?;
            if !valid_metric_name(name) {
                return Err(at(format!("bad metric name {name:?}")));
            }
            match keyword {
                Some("HELP") => {
                    let doc = rest.unwrap_or("");
                    let mut chars = doc.chars();
                    while let Some(c) = chars.next() {
                        if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
                            return Err(at("bad escape in HELP".into()));
                        }
                    }
                    if !helps.insert(name.to_string()) {
                        return Err(at("a second HELP".into()));
                    }
                    if samples.iter().any(|s: &Sample| s.name == name) {
                        return Err(at("HELP after the family's samples".into()));
                    }
                }
                Some("TYPE") => {
                    let t = rest.ok_or_else(|| at("TYPE without a type".into()))?;
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                        return Err(at(format!("unknown type {t}")));
                    }
                    if types.insert(name.to_string(), t.to_string()).is_some() {
                        return Err(at("a second TYPE".into()));
                    }
                    if samples.iter().any(|s: &Sample| s.name == name) {
                        return Err(at("TYPE after the family's samples".into()));
                    }
                    if t == "counter" && !name.ends_with("_total") {
                        return Err(at("a counter whose name does not end in _total".into()));
                    }
                }
                _ => return Err(at("a comment that is neither HELP nor TYPE".into())),
            }
            name.to_string()
        } else {
            let name_end = line
                .find(['{', ' '])
                .ok_or_else(|| at("a sample without a value".into()))?;
            let name = &line[..name_end];
            if !valid_metric_name(name) {
                return Err(at(format!("bad metric name {name:?}")));
            }
            let (labels, rest) = if line[name_end..].starts_with('{') {
                parse_labels(&line[name_end..]).map_err(at)?
            } else {
                (BTreeMap::new(), &line[name_end..])
            };
            let rest = rest
                .strip_prefix(' ')
                .ok_or_else(|| at("one space before the value".into()))?;
            let fields: Vec<&str> = rest.split(' ').collect();
            if fields.len() != 1 {
                return Err(at("a timestamp or stray text after the value".into()));
            }
            let value = parse_value(fields[0]).map_err(at)?;
            if !types.contains_key(name) || !helps.contains(name) {
                return Err(at("a sample before its HELP and TYPE".into()));
            }
            let key = format!("{name}{labels:?}");
            if !series.insert(key) {
                return Err(at("the same series twice".into()));
            }
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
            name.to_string()
        };
        if !family.starts_with("rebound_") {
            return Err(at("a metric without the rebound_ prefix".into()));
        }
        if current.as_deref() != Some(family.as_str()) {
            if finished.contains(&family) {
                return Err(at("a family's lines are not together".into()));
            }
            if let Some(c) = current.take() {
                finished.insert(c);
            }
            current = Some(family);
        }
    }
    Ok(samples)
}

/// The value of one series (`labels` as `k=v` pairs), if present.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

#[test]
fn the_reader_refuses_what_the_format_forbids() {
    let good = "# HELP rebound_a_total A.\n# TYPE rebound_a_total counter\nrebound_a_total{k=\"v\\\"\"} 3\n";
    assert_eq!(parse(good).unwrap()[0].labels["k"], "v\"");
    for bad in [
        "# TYPE rebound_a_total counter\nrebound_a_total 1\n",
        "# HELP rebound_a A.\n# TYPE rebound_a gauge\nrebound_a 1 1700000000\n",
        "# HELP rebound_a A.\n# TYPE rebound_a counter\nrebound_a 1\n",
        "# HELP rebound_a A.\n# TYPE rebound_a gauge\nrebound_a 1",
        "# HELP rebound_a A.\n# TYPE rebound_a gauge\nrebound_a{x=\"1\",} 1\n",
        "# HELP rebound_a A.\n# TYPE rebound_a gauge\nrebound_a{x=\"1\"} 1\nrebound_a{x=\"1\"} 2\n",
        "# HELP rebound_a A.\n# TYPE rebound_a gauge\n# HELP rebound_b B.\n# TYPE rebound_b gauge\nrebound_b 1\nrebound_a 1\n",
        "# HELP other A.\n# TYPE other gauge\nother 1\n",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}
