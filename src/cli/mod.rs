//! Command-line interface: one small module per subcommand. Each returns an exit code; errors
//! carry their context up to `main`, which prints them.

mod check;
mod classify;
mod explain;
mod explain_json;
mod export;
mod ingest;
mod output;
mod poll;
mod purge;
mod reactivate;
mod rebuild;
mod reclassify;
mod report;
mod sends;
mod show_raw;
mod summary;
mod suppress;
mod upkeep;
mod verp;
mod watch;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::ledger::Ledger;
use crate::logging::LogFormat;

#[derive(Parser, Debug)]
#[command(
    name = "rebound",
    version,
    about = "Understand bounce mailboxes and keep a suppression ledger"
)]
pub struct Cli {
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// How stderr's log lines are written: `text` for people, `json` (one object per line,
    /// with mailbox, folder and run) for log shippers.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Classify messages in files, directories, Maildirs or mbox files and print the verdicts.
    Classify {
        /// Print one JSON object per message per line instead of a table.
        #[arg(long)]
        json: bool,
        /// A config file whose `[rules] file` adds local rules before the built-in ones, and
        /// whose `[verp]` decodes VERP return paths (and checks their tags).
        #[arg(long)]
        config: Option<PathBuf>,
        /// `.eml` files, directories (walked recursively, Maildirs included) or mbox files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Analyse messages in files, directories, Maildirs or mbox files into the ledger.
    Ingest {
        #[command(flatten)]
        ledger: LedgerArgs,
        /// Write a Prometheus textfile (node_exporter's textfile collector) after the run.
        #[arg(long, value_name = "PATH")]
        metrics_file: Option<PathBuf>,
        /// `.eml` files, directories (walked recursively, Maildirs included) or mbox files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Re-run the analysis on stored messages that an older rule table (or parser) decided,
    /// and rebuild events and the projection.
    Reclassify {
        #[command(flatten)]
        ledger: LedgerArgs,
        /// Only messages received on or after this date (2026-11-01, or a full time).
        #[arg(long)]
        since: Option<String>,
        /// Every stored message, not only those an older rule table decided.
        #[arg(long)]
        all: bool,
    },
    /// Replay the whole projection (addresses, state changes, pauses) from the events.
    Rebuild {
        #[command(flatten)]
        ledger: LedgerArgs,
    },
    /// Print a stored message as it arrived (the ledger keeps it compressed).
    ShowRaw {
        #[command(flatten)]
        ledger: LedgerArgs,
        /// The message's id (`messages.id`, the `message` column of the views).
        id: i64,
    },
    /// Show an address's state, its evidence and every state change with its rule.
    Explain {
        #[command(flatten)]
        ledger: LedgerArgs,
        /// One JSON object (stable field names) instead of text.
        #[arg(long)]
        json: bool,
        address: String,
    },
    /// Print the suppression list for the sending system (whole, or what changed since a
    /// cursor): jsonl, json, csv, or a Postfix access map.
    Export {
        #[command(flatten)]
        args: export::ExportArgs,
    },
    /// Suppress addresses by hand (audited, like reactivate; lifted only by reactivate --force).
    Suppress {
        #[command(flatten)]
        ledger: LedgerArgs,
        /// The addresses (ones the ledger has never seen too).
        #[arg(required = true)]
        addresses: Vec<String>,
        #[arg(long, value_enum, default_value_t = suppress::OperatorReason::Manual)]
        reason: suppress::OperatorReason,
        /// Why, for the audit trail.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Drop the raw bytes of messages older than the config's retention allows (facts and
    /// events stay).
    Purge {
        #[command(flatten)]
        ledger: LedgerArgs,
        /// Only count what would be dropped.
        #[arg(long)]
        dry_run: bool,
    },
    /// Return a soft-limited or quarantined address to active (audited).
    Reactivate {
        #[command(flatten)]
        ledger: LedgerArgs,
        address: String,
        /// Also lift a permanent suppression (hard, invalid, complaint, unsubscribe, manual).
        #[arg(long)]
        force: bool,
        /// Why, for the audit trail.
        #[arg(long, default_value = "reactivated by an operator")]
        note: String,
    },
    /// Read every configured IMAP mailbox once: ingest what is new, apply the action, exit.
    Poll {
        #[command(flatten)]
        args: poll::PollArgs,
        /// Read and classify only: write nothing, touch no message.
        #[arg(long)]
        dry_run: bool,
    },
    /// Poll, then stay connected (IMAP IDLE) and ingest mail as it arrives, until SIGTERM.
    Watch {
        #[command(flatten)]
        args: poll::PollArgs,
    },
    /// Check a config: the ledger's place, every secret (never shown), connection, login and
    /// folders of every mailbox. One line per check; exit 1 when one fails.
    Check {
        #[command(flatten)]
        args: check::CheckArgs,
    },
    /// What the sending system sent (CSV, JSON lines, Postfix or Exim logs): the denominator
    /// of the rates that `report` shows and the pauses weigh.
    Sends {
        #[command(subcommand)]
        command: sends::SendsCommand,
    },
    /// Bounces, complaints, suppressions and pauses over a period, grouped by recipient domain,
    /// provider, sending domain, sender, mailbox, campaign or reason; rates when sends were
    /// imported. `--alert` exits 1 with one line per rate over `[alerts]`.
    Report {
        #[command(flatten)]
        args: report::ReportArgs,
    },
    /// VERP return paths: what to send mail from (`encode`), what a bounce address names
    /// (`decode`).
    Verp {
        #[command(subcommand)]
        command: VerpCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum VerpCommand {
    /// Print the return path (envelope sender) to use for mail to each ADDRESS, one line each,
    /// in order; signed when `[verp]` has a key.
    Encode {
        /// The config file whose `[verp]` gives the delimiters, the keys and the default
        /// return path.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The return path VERP extends (default: the first of `[verp] return_paths`).
        #[arg(long, value_name = "ADDRESS")]
        return_path: Option<String>,
        /// Recipient addresses.
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Print the recipient each VERP return path names and what its tag says (valid,
    /// invalid, missing, none).
    Decode {
        /// The config file whose `[verp]` lists the return paths and the keys.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Return paths, as a bounce was addressed.
        #[arg(required = true)]
        return_paths: Vec<String>,
    },
}

/// Where the ledger is: `--db`, else the config's `[database] path`, else `rebound.db` beside
/// the config file.
#[derive(Args, Debug, Clone)]
pub struct LedgerArgs {
    /// The ledger database file.
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// The config file (TOML): database path and `[policy]`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl LedgerArgs {
    /// Loads the config and opens (creating if needed) the ledger it names.
    pub fn open(&self) -> anyhow::Result<(Config, Ledger)> {
        let config = Config::load_or_default(self.config.as_deref())?;
        let path = config.database_path(self.db.as_deref());
        let ledger = Ledger::open(&path, config.policy.clone(), config.rules().fingerprint())?;
        Ok((config, ledger))
    }

    /// Like [`LedgerArgs::open`], for a command that analyses and writes messages: the
    /// config's analysis settings (rule table, `[verp]` with its keys), and the ledger opened
    /// to record their fingerprint with every message.
    pub fn open_for_analysis(&self) -> anyhow::Result<(Config, crate::analysis::Settings, Ledger)> {
        let config = Config::load_or_default(self.config.as_deref())?;
        let settings = config.settings()?;
        let path = config.database_path(self.db.as_deref());
        let ledger = Ledger::open(&path, config.policy.clone(), settings.fingerprint())?;
        Ok((config, settings, ledger))
    }

    /// Like [`LedgerArgs::open`], but refuses to create a ledger that does not exist (reports
    /// on a typo'd path should fail, not print an empty history).
    pub fn open_existing(&self) -> anyhow::Result<(Config, Ledger)> {
        let config = Config::load_or_default(self.config.as_deref())?;
        let path = config.database_path(self.db.as_deref());
        anyhow::ensure!(
            exists(&path),
            "no ledger at {} (run rebound ingest first, or pass --db)",
            path.display()
        );
        let ledger = Ledger::open(&path, config.policy.clone(), config.rules().fingerprint())?;
        Ok((config, ledger))
    }
}

fn exists(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.len() > 0)
}

/// Runs a command. A reader that closed standard output early (`| head`) ends it quietly with
/// exit 0, like any other tool in a pipeline.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    return_large_buffers_to_the_system();
    match command(cli) {
        Err(e) if output::closed_pipe(&e) => Ok(ExitCode::SUCCESS),
        other => other,
    }
}

fn command(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Classify {
            json,
            config,
            paths,
        } => {
            let config = crate::config::Config::load_or_default(config.as_deref())?;
            classify::run(&paths, json, &config.settings()?)
        }
        Command::Ingest {
            ledger,
            metrics_file,
            paths,
        } => ingest::run(&ledger, &paths, metrics_file.as_deref()),
        Command::Reclassify { ledger, since, all } => {
            reclassify::run(&ledger, since.as_deref(), all)
        }
        Command::Rebuild { ledger } => rebuild::run(&ledger),
        Command::ShowRaw { ledger, id } => show_raw::run(&ledger, id),
        Command::Explain {
            ledger,
            json,
            address,
        } => explain::run(&ledger, &address, json),
        Command::Export { args } => export::run(&args),
        Command::Suppress {
            ledger,
            addresses,
            reason,
            note,
        } => suppress::run(&ledger, &addresses, reason, &note),
        Command::Purge { ledger, dry_run } => purge::run(&ledger, dry_run),
        Command::Reactivate {
            ledger,
            address,
            force,
            note,
        } => reactivate::run(&ledger, &address, force, &note),
        Command::Poll { args, dry_run } => poll::run(&args, dry_run),
        Command::Watch { args } => watch::run(&args),
        Command::Check { args } => check::run(&args),
        Command::Sends { command } => sends::run(&command),
        Command::Report { args } => report::run(&args),
        Command::Verp { command } => match command {
            VerpCommand::Encode {
                config,
                return_path,
                addresses,
            } => verp::encode(config.as_deref(), return_path.as_deref(), &addresses),
            VerpCommand::Decode {
                config,
                return_paths,
            } => verp::decode(config.as_deref(), &return_paths),
        },
    }
}

/// Makes every allocation of 1 MiB or more its own mapping, given back to the system when it
/// is freed. glibc otherwise raises that threshold as large blocks are freed (up to 32 MiB), and
/// the blocks of a mailbox's huge messages then stay in each thread's heap: a poll over twenty
/// 20 MB messages peaked at 181 MB of RSS, 84 MB with this (`bench/imap-poll.sh`). Ordinary
/// mail never allocates that much at once, so its speed is unchanged.
fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a tuning parameter of the allocator; called before the
    // program starts any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
