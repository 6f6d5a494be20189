//! Where a message came from, and where an IMAP folder's reading stands.

/// Where a message came from. Everything is optional: a file has a `source_path`, an IMAP
/// message has mailbox, folder, UIDVALIDITY, UID and INTERNALDATE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub mailbox: Option<String>,
    pub folder: Option<String>,
    pub uidvalidity: Option<u32>,
    pub uid: Option<u32>,
    pub source_path: Option<String>,
    /// IMAP INTERNALDATE, RFC 3339 UTC (`rebound ingest` gives a file's modification time).
    pub internal_date: Option<String>,
}

impl Origin {
    /// A message read from a file (or `file.mbox#N`).
    pub fn file(source: impl Into<String>) -> Origin {
        Origin {
            source_path: Some(source.into()),
            ..Origin::default()
        }
    }

    /// A message read from an IMAP folder.
    pub fn imap(
        mailbox: &str,
        folder: &str,
        uidvalidity: u32,
        uid: u32,
        internal_date: Option<String>,
    ) -> Origin {
        Origin {
            mailbox: Some(mailbox.to_string()),
            folder: Some(folder.to_string()),
            uidvalidity: Some(uidvalidity),
            uid: Some(uid),
            source_path: None,
            internal_date,
        }
    }

    /// The IMAP identity, when all four parts are known.
    pub fn imap_key(&self) -> Option<(&str, &str, u32, u32)> {
        Some((
            self.mailbox.as_deref()?,
            self.folder.as_deref()?,
            self.uidvalidity?,
            self.uid?,
        ))
    }
}

/// The IMAP position of one mailbox folder: its UIDVALIDITY and the highest UID stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderState {
    pub uidvalidity: u32,
    pub last_uid: u32,
}
