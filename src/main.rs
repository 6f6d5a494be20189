//! The `rebound` command. Thin on purpose: parsing arguments and reporting errors; the work is
//! in the library (`rebound::cli` and below).

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = rebound::cli::Cli::parse();
    rebound::logging::init(cli.verbose, cli.log_format);
    match rebound::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            rebound::logging::fatal(&e);
            std::process::ExitCode::from(2)
        }
    }
}
