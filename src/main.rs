//! The `rebound` command. Thin on purpose: parsing arguments and reporting errors; the work is
//! in the library (`rebound::cli` and below).

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = rebound::cli::Cli::parse();
    rebound::cli::init_tracing(cli.verbose);
    match rebound::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rebound: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
