//! `rebound verp encode|decode`: the return paths a sending system puts in `MAIL FROM`, and what
//! rebound reads back from one (the format is in `analysis::verp` and the README, "VERP and
//! signed return paths").
//!
//! `encode` prints one return path per address, in the order given, and prints nothing at all
//! when one address cannot be carried (a sending system must never pair an address with
//! another's return path). Keys come from the `--config` file's `[verp]` (`key_env`,
//! `key_file`): with a key, every return path is signed with the first one.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::output::Lines;
use crate::analysis::{Settings, Verp, verp};
use crate::config::Config;

/// The local part of an address longer than this breaks RFC 5321's limit (most MTAs accept
/// it anyway; Postfix does).
const LOCAL_PART_LIMIT: usize = 64;

/// The settings to encode and decode with: the config's `[verp]`, or the default delimiters,
/// unsigned, without a return path of its own.
fn load(config: Option<&Path>) -> anyhow::Result<(Settings, Verp)> {
    let cfg = Config::load_or_default(config)?;
    let settings = cfg.settings()?;
    // Without [verp] return paths: the default format, unsigned.
    let fallback = Verp::new(&[], verp::DEFAULT_DELIMITERS, Vec::new(), false)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((settings, fallback))
}

pub fn encode(
    config: Option<&Path>,
    return_path: Option<&str>,
    addresses: &[String],
) -> anyhow::Result<ExitCode> {
    let (settings, fallback) = load(config)?;
    let verp = settings.verp().unwrap_or(&fallback);
    let return_path = match return_path {
        Some(rp) => {
            if settings.verp().is_some() && !verp.return_paths().any(|r| r.eq_ignore_ascii_case(rp)) {
                tracing::warn!(
                    "{rp} is not in [verp] return_paths: rebound will not decode bounces sent to it until it is listed there"
                );
            }
            rp.to_string()
        }
        None => verp.return_paths().next().context(
            "give --return-path ADDRESS (the return path your mail is sent from), or --config with [verp] return_paths",
        )?,
    };
    if !verp.signs() {
        tracing::info!("no [verp] key_env or key_file: the return paths are not signed");
    }
    let encoded = addresses
        .iter()
        .map(|a| verp.encode(&return_path, a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{e}; nothing was printed"))?;
    for rp in &encoded {
        let local = rp.rsplit_once('@').map_or(rp.as_str(), |(l, _)| l);
        if local.len() > LOCAL_PART_LIMIT {
            tracing::warn!(
                "{rp}: its local part is {} characters, more than the {LOCAL_PART_LIMIT} of RFC 5321; most MTAs accept it, a strict one may refuse the mail",
                local.len()
            );
        }
    }
    let mut out = Lines::new();
    for rp in encoded {
        out.line(rp)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per return path: the recipient it names and what its tag says, or why it names
/// nobody. Exit 1 when one names nobody.
pub fn decode(config: Option<&Path>, return_paths: &[String]) -> anyhow::Result<ExitCode> {
    let (settings, _) = load(config)?;
    let verp = settings.verp().context(
        "decoding needs the return paths: --config with [verp] return_paths (and its keys, to check tags)",
    )?;
    let mut out = Lines::new();
    let mut all = true;
    for rp in return_paths {
        match verp.decode(rp) {
            Some(d) => out.line(format_args!(
                "{rp}\t{}\tsignature {}",
                d.address,
                d.signature.as_str()
            ))?,
            None => {
                all = false;
                out.line(format_args!(
                    "{rp}\t-\tnot a VERP address of [verp] return_paths"
                ))?;
            }
        }
    }
    Ok(if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
