//! Command-line interface: one small module per subcommand. Each returns an exit code; errors
//! carry their context up to `main`, which prints them.

mod classify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
        /// `.eml` files, directories (walked recursively, Maildirs included) or mbox files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Classify { json, paths } => classify::run(&paths, json),
    }
}

/// Logs go to stderr so that stdout stays machine-readable.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
