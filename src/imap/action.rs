//! The post-processing action, applied to a batch only after every message of it is committed
//! to the ledger. If it is interrupted, the messages keep lacking the keyword, are found again
//! next time, recognised by the ledger as already stored, and only the action is redone.
//!
//! Folder names are encoded for the server ([`folder_name`]) only in the commands themselves;
//! logs and errors show them as configured.
//!
//! Mail that rebound does not recognise (`other`, `unparsed`) is never deleted: `delete` keeps
//! it, flagged with the keyword, for a human to look at.

use std::collections::{BTreeMap, HashSet};

use anyhow::Context;
use futures::TryStreamExt;

use super::config::{Action, MailboxConfig};
use super::connect::{Session, timed};
use super::fetch::uid_set;
use super::folder_name;
use crate::analysis::Kind;

/// What the server offers that changes how an action is carried out.
#[derive(Debug, Clone, Copy, Default)]
pub struct Capabilities {
    pub r#move: bool,
    pub uidplus: bool,
    pub idle: bool,
}

impl Capabilities {
    pub async fn query(
        session: &mut Session,
        limit: std::time::Duration,
    ) -> anyhow::Result<Capabilities> {
        let caps = timed(limit, "CAPABILITY", session.capabilities()).await?;
        Ok(Capabilities {
            r#move: caps.has_str("MOVE"),
            uidplus: caps.has_str("UIDPLUS"),
            idle: caps.has_str("IDLE"),
        })
    }
}

/// True for the kinds rebound understood, the only ones `delete` may remove.
pub fn recognised(kind: Kind) -> bool {
    !matches!(kind, Kind::Other | Kind::Unparsed)
}

/// Per-session memory of folders known to exist, so `move` creates each at most once.
#[derive(Debug, Default)]
pub struct Folders {
    known: HashSet<String>,
}

/// Applies the mailbox's action to messages of the selected folder, given with their kinds.
pub async fn apply(
    session: &mut Session,
    cfg: &MailboxConfig,
    caps: Capabilities,
    folders: &mut Folders,
    done: &[(u32, Kind)],
    keywords: bool,
) -> anyhow::Result<()> {
    if done.is_empty() {
        return Ok(());
    }
    let all: Vec<u32> = done.iter().map(|d| d.0).collect();
    let kw = cfg.keyword.as_str();
    match cfg.action {
        Action::Keep if keywords => add_flags(session, cfg, &all, kw).await,
        Action::Keep => Ok(()),
        Action::Seen => {
            add_flags(
                session,
                cfg,
                &all,
                &if keywords {
                    format!("\\Seen {kw}")
                } else {
                    "\\Seen".to_string()
                },
            )
            .await
        }
        Action::Move => {
            let mut by_folder: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
            for &(uid, kind) in done {
                by_folder
                    .entry(cfg.move_to.folder_for(kind))
                    .or_default()
                    .push(uid);
            }
            for (dest, uids) in by_folder {
                ensure_folder(session, cfg, folders, dest).await?;
                move_uids(session, cfg, caps, &uids, dest).await?;
            }
            Ok(())
        }
        Action::Delete => {
            let kept: Vec<u32> = done
                .iter()
                .filter(|d| !recognised(d.1))
                .map(|d| d.0)
                .collect();
            let gone: Vec<u32> = done
                .iter()
                .filter(|d| recognised(d.1))
                .map(|d| d.0)
                .collect();
            if keywords && !kept.is_empty() {
                add_flags(session, cfg, &kept, kw).await?;
            }
            if !gone.is_empty() {
                delete_uids(session, cfg, caps, &gone).await?;
            }
            Ok(())
        }
    }
}

async fn add_flags(
    session: &mut Session,
    cfg: &MailboxConfig,
    uids: &[u32],
    flags: &str,
) -> anyhow::Result<()> {
    if flags.is_empty() {
        return Ok(());
    }
    let set = uid_set(uids);
    let what = format!("UID STORE {set} +FLAGS.SILENT ({flags})");
    let stream = timed(
        cfg.timeout(),
        &what,
        session.uid_store(&set, format!("+FLAGS.SILENT ({flags})")),
    )
    .await?;
    // The stream must be drained before the next command (async-imap reads responses in order).
    timed(cfg.timeout(), &what, stream.try_collect::<Vec<_>>()).await?;
    Ok(())
}

async fn ensure_folder(
    session: &mut Session,
    cfg: &MailboxConfig,
    folders: &mut Folders,
    name: &str,
) -> anyhow::Result<()> {
    if folders.known.contains(name) {
        return Ok(());
    }
    match timed(
        cfg.timeout(),
        &format!("CREATE {name}"),
        session.create(folder_name::encode(name)),
    )
    .await
    {
        Ok(()) => tracing::info!(mailbox = %cfg.name, folder = name, "created folder"),
        Err(e) => {
            // Dovecot and most servers answer NO [ALREADYEXISTS]; anything else is real.
            let text = format!("{e:#}");
            if !(text.contains("ALREADYEXISTS")
                || text.to_ascii_lowercase().contains("already exists"))
            {
                return Err(e);
            }
        }
    }
    folders.known.insert(name.to_string());
    Ok(())
}

async fn move_uids(
    session: &mut Session,
    cfg: &MailboxConfig,
    caps: Capabilities,
    uids: &[u32],
    dest: &str,
) -> anyhow::Result<()> {
    let set = uid_set(uids);
    if caps.r#move {
        return timed(
            cfg.timeout(),
            &format!("UID MOVE {set} {dest}"),
            session.uid_mv(&set, folder_name::encode(dest)),
        )
        .await;
    }
    // RFC 6851 fallback: copy, then remove only these UIDs from the source.
    timed(
        cfg.timeout(),
        &format!("UID COPY {set} {dest}"),
        session.uid_copy(&set, folder_name::encode(dest)),
    )
    .await?;
    delete_uids(session, cfg, caps, uids)
        .await
        .context("removing moved messages from the source folder")
}

async fn delete_uids(
    session: &mut Session,
    cfg: &MailboxConfig,
    caps: Capabilities,
    uids: &[u32],
) -> anyhow::Result<()> {
    add_flags(session, cfg, uids, "\\Deleted").await?;
    if !caps.uidplus {
        // A plain EXPUNGE would also remove what others marked \Deleted: leave it to them.
        tracing::warn!(mailbox = %cfg.name, "server lacks UIDPLUS: messages are marked \\Deleted but not expunged");
        return Ok(());
    }
    let set = uid_set(uids);
    let what = format!("UID EXPUNGE {set}");
    let stream = timed(cfg.timeout(), &what, session.uid_expunge(&set)).await?;
    timed(cfg.timeout(), &what, stream.try_collect::<Vec<_>>()).await?;
    Ok(())
}
