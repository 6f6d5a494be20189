//! Log lines on stderr, for the people and programs that read them: an operator at a terminal,
//! cron mail, journald, a log shipper.
//!
//! - **text** (default): `rebound: warning: mailbox bounces [INBOX]: message key=value`. No
//!   timestamp (journald and cron add their own), no module path. Colour only when stderr is a
//!   terminal and `NO_COLOR` is not set: escape codes in cron mail and the journal are noise.
//! - **json** (`--log-format json`): one object per line, `{"time":…,"level":…,"message":…}`
//!   plus the context of the line — `mailbox`, `folder`, `run` (the `runs.id` being recorded)
//!   — and the event's own fields, for Loki, Elasticsearch, Vector and friends.
//!
//! The context comes from spans: `poll` runs each mailbox in a `mailbox` span (with its run),
//! `watch` each folder in a `folder` span under it. Those spans are created at ERROR level, so
//! that the level filter (warnings and errors by default, `-v` info, `-vv` debug, `RUST_LOG`
//! overrides) never drops the context of a line it lets through.
//!
//! A command's fatal error (the one that ends it with exit 2) goes through [`fatal`], which
//! writes it in the same format whatever the filter says.

use std::fmt::{self, Write as _};
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Record};
use tracing::{Event, Id, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `rebound: warning: mailbox m [INBOX]: message`, for people.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

static FORMAT: OnceLock<(LogFormat, bool)> = OnceLock::new();

/// Whether colour is wanted on stderr: a terminal, and no `NO_COLOR` (<https://no-color.org>).
pub fn colour_wanted() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the logger. `verbose` is the number of `-v`; `RUST_LOG` overrides it.
pub fn init(verbose: u8, format: LogFormat) {
    let colour = format == LogFormat::Text && colour_wanted();
    let _ = FORMAT.set((format, colour));
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(Lines { format, colour })
        .try_init();
}

/// Writes the error that ends a command, in the log format, whatever the level filter.
pub fn fatal(error: &anyhow::Error) {
    let (format, colour) = FORMAT.get().copied().unwrap_or_default();
    let fields = Fields {
        message: Some(format!("{error:#}")),
        ..Default::default()
    };
    write_line(&render(format, colour, Level::ERROR, "rebound", &fields));
}

/// The fields that say where a line comes from, first in every JSON line.
const CONTEXT: [&str; 3] = ["mailbox", "folder", "run"];

/// The layer that writes each event as one line.
struct Lines {
    format: LogFormat,
    colour: bool,
}

impl<S> Layer<S> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // The context, outermost span first, then the event's own fields (inner values win).
        let mut fields = Fields::default();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<Fields>() {
                    fields.merge(f);
                }
            }
        }
        event.record(&mut fields);
        let meta = event.metadata();
        write_line(&render(
            self.format,
            self.colour,
            *meta.level(),
            meta.target(),
            &fields,
        ));
    }
}

fn write_line(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(line.as_bytes());
    let _ = err.flush();
}

/// The message and the named values of an event or span, in order.
#[derive(Debug, Default, Clone)]
struct Fields {
    message: Option<String>,
    values: Vec<(&'static str, serde_json::Value)>,
}

impl Fields {
    fn set(&mut self, name: &'static str, value: serde_json::Value) {
        // Fields the `log` crate bridge adds (log.target, log.file...) say nothing to operators.
        if name.starts_with("log.") {
            return;
        }
        if name == "message" {
            self.message = Some(match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
            return;
        }
        match self.values.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.values.push((name, value)),
        }
    }

    fn merge(&mut self, other: &Fields) {
        for (name, value) in &other.values {
            self.set(name, value.clone());
        }
    }

    fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field.name(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` fields and format_args! messages arrive here; their Debug is their Display.
        self.set(field.name(), format!("{value:?}").into());
    }
}

/// One line, newline included.
fn render(format: LogFormat, colour: bool, level: Level, target: &str, f: &Fields) -> String {
    match format {
        LogFormat::Json => json_line(level, target, f),
        LogFormat::Text => text_line(level, colour, f),
    }
}

fn json_line(level: Level, target: &str, f: &Fields) -> String {
    // Written by hand to keep a reading order: time, level, context, message, the rest.
    let mut pairs: Vec<(&str, serde_json::Value)> = vec![
        (
            "time",
            chrono::Utc::now()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string()
                .into(),
        ),
        ("level", level_word(level).into()),
    ];
    for key in CONTEXT {
        if let Some(v) = f.get(key) {
            pairs.push((key, v.clone()));
        }
    }
    pairs.push(("message", f.message.clone().unwrap_or_default().into()));
    for (name, value) in &f.values {
        if !CONTEXT.contains(name) && !["time", "level", "message", "target"].contains(name) {
            pairs.push((name, value.clone()));
        }
    }
    pairs.push(("target", target.into()));
    let mut line = String::from("{");
    for (n, (key, value)) in pairs.iter().enumerate() {
        if n > 0 {
            line.push(',');
        }
        line.push_str(&serde_json::Value::from(*key).to_string());
        line.push(':');
        line.push_str(&value.to_string());
    }
    line.push_str("}\n");
    line
}

fn text_line(level: Level, colour: bool, f: &Fields) -> String {
    let mut line = String::from("rebound: ");
    let word = match level {
        Level::ERROR => Some(("error", "\x1b[1;31m")),
        Level::WARN => Some(("warning", "\x1b[1;33m")),
        Level::INFO => None,
        Level::DEBUG => Some(("debug", "\x1b[2m")),
        Level::TRACE => Some(("trace", "\x1b[2m")),
    };
    if let Some((word, code)) = word {
        if colour {
            let _ = write!(line, "{code}{word}\x1b[0m: ");
        } else {
            let _ = write!(line, "{word}: ");
        }
    }
    let plain = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if let Some(mailbox) = f.get("mailbox") {
        let _ = write!(line, "mailbox {}", plain(mailbox));
        if let Some(folder) = f.get("folder") {
            let _ = write!(line, " [{}]", plain(folder));
        }
        line.push_str(": ");
    }
    line.push_str(f.message.as_deref().unwrap_or(""));
    for (name, value) in &f.values {
        if !CONTEXT.contains(name) {
            let _ = write!(line, " {name}={}", plain(value));
        }
    }
    line.push('\n');
    line
}

fn level_word(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        let mut f = Fields::default();
        f.set("mailbox", "bounces".into());
        f.set("run", 7.into());
        f.set("folder", "INBOX".into());
        f.set("message", "session failed".into());
        f.set("attempt", 2.into());
        f
    }

    #[test]
    fn text_lines_name_their_context_and_colour_only_when_asked() {
        assert_eq!(
            text_line(Level::WARN, false, &fields()),
            "rebound: warning: mailbox bounces [INBOX]: session failed attempt=2\n"
        );
        assert!(text_line(Level::WARN, true, &fields()).contains("\x1b["));
        assert!(!text_line(Level::ERROR, false, &fields()).contains('\x1b'));
    }

    #[test]
    fn json_lines_are_one_object_with_the_context() {
        let line = json_line(Level::ERROR, "rebound::imap", &fields());
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["mailbox"], "bounces");
        assert_eq!(v["folder"], "INBOX");
        assert_eq!(v["run"], 7);
        assert_eq!(v["message"], "session failed");
        assert_eq!(v["attempt"], 2);
    }
}
