//! `rebound show-raw ID`: a stored message's bytes as they arrived, on stdout (the ledger keeps
//! them compressed; `sqlite3` shows only the compressed form). A message whose bytes retention
//! purged is an error that says when.

use std::io::Write;
use std::process::ExitCode;

use super::LedgerArgs;

pub fn run(args: &LedgerArgs, id: i64) -> anyhow::Result<ExitCode> {
    let (_, ledger) = args.open_existing()?;
    if let Some(when) = ledger.raw_purged_at(id)? {
        anyhow::bail!(
            "message {id}: its raw bytes were purged on {when} (retention, [retention] in the config); \
             what was read from them is kept: see SELECT * FROM v_why WHERE message = {id}, or rebound explain ADDRESS"
        );
    }
    let Some(raw) = ledger.raw_message(id)? else {
        anyhow::bail!("no message {id} in the ledger (see the `message` column of v_why)");
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(&raw).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other?,
    }
    Ok(ExitCode::SUCCESS)
}
