//! The SQLite schema. Operators read these tables and views with `sqlite3`, so names and
//! columns are part of the product's interface: add, never rename.
//!
//! Migrations are a list of SQL scripts; script `i` moves the database from `user_version = i`
//! to `i + 1`. Each runs in its own immediate write transaction with the version bump, so a
//! crash leaves the database at a whole version and two processes never apply the same one.
//!
//! Three kinds of tables:
//! - evidence (`messages`, `events`): written once by ingest, rebuilt only by `reclassify`
//!   (from the raw bytes kept in `messages.raw`). Operator actions are events too
//!   (`kind = 'manual'`, no message), so that they survive every rebuild.
//! - projection (`addresses`, `state_changes`, `domain_pauses`): a pure function of the events
//!   under the policy, recomputed per affected address / domain on every ingest.
//! - bookkeeping (`imap_folders`, `runs`, `hook_cursors`).
//! - the way out: `suppression_log`, append-only, one row per change of an address's state as a
//!   sending system sees it (the cursor of `rebound export --since` and of hooks).

use anyhow::Context;
use rusqlite::{Connection, TransactionBehavior};

const V1: &str = r#"
CREATE TABLE messages (
    id             INTEGER PRIMARY KEY,
    sha256         TEXT NOT NULL UNIQUE,     -- of the raw bytes: the idempotency key
    mailbox        TEXT,                     -- IMAP account name from the config
    folder         TEXT,
    uidvalidity    INTEGER,
    uid            INTEGER,
    source_path    TEXT,                     -- file (or file.mbox#N) when read from disk
    message_id     TEXT,                     -- the inbound message's own Message-ID
    from_address   TEXT,                     -- its From, lowercased (a message from an address proves it alive)
    subject        TEXT,
    date           TEXT,                     -- its Date header, UTC
    internal_date  TEXT,                     -- IMAP INTERNALDATE (a file's mtime), UTC
    received_at    TEXT NOT NULL,            -- INTERNALDATE, else when rebound first read it
    processed_at   TEXT NOT NULL,            -- last analysis (ingest or reclassify)
    kind           TEXT NOT NULL,            -- bounce, delay, delivery_report, auto_reply, complaint, unsubscribe, other, unparsed
    mta            TEXT,
    feedback_type  TEXT,
    parser_version TEXT NOT NULL,
    error          TEXT,                     -- why the analysis (or the fetch) failed
    fetch_failed   INTEGER NOT NULL DEFAULT 0, -- 1: stored by ingest_failed, raw may be partial
    raw_size       INTEGER NOT NULL,
    raw            BLOB NOT NULL
);
CREATE UNIQUE INDEX messages_imap_uid ON messages(mailbox, folder, uidvalidity, uid) WHERE uid IS NOT NULL;
CREATE INDEX messages_kind ON messages(kind);
CREATE INDEX messages_received ON messages(received_at);

CREATE TABLE events (
    id                  INTEGER PRIMARY KEY,
    message_id          INTEGER REFERENCES messages(id) ON DELETE CASCADE, -- NULL for operator actions
    recipient_index     INTEGER NOT NULL,   -- position in the message (-1: the message's From)
    role                TEXT NOT NULL,      -- recipient (named by the report), sender (wrote the message), operator
    address             TEXT NOT NULL,      -- lowercased
    domain              TEXT NOT NULL,
    kind                TEXT NOT NULL,      -- per recipient: bounce, delay, delivery_report, auto_reply, complaint, unsubscribe, other, manual
    action              TEXT,               -- RFC 3464 Action, or reactivate for operator actions
    label               TEXT,               -- hard, soft, blocked, invalid
    reason              TEXT,
    status              TEXT,
    reply_code          INTEGER,
    diagnostic          TEXT,
    remote_mta          TEXT,
    rule                TEXT,               -- analysis rule that decided the label
    original_message_id TEXT,
    original_sender     TEXT,
    sender_domain       TEXT,
    event_time          TEXT NOT NULL,      -- Last-Attempt-Date, else Date, else INTERNALDATE, else ingest time
    time_source         TEXT NOT NULL,      -- last_attempt, date, internal_date, ingested, operator
    sort_key            TEXT NOT NULL,      -- message sha256 (or operator id): tie-break after event_time
    note                TEXT,               -- operator's note for manual events
    UNIQUE (message_id, recipient_index)
);
CREATE INDEX events_address ON events(address, event_time);
CREATE INDEX events_domain ON events(domain, event_time);
CREATE INDEX events_message ON events(message_id);
CREATE INDEX events_sender_domain ON events(sender_domain, event_time);

CREATE TABLE addresses (
    address            TEXT PRIMARY KEY,
    domain             TEXT NOT NULL,
    first_seen_at      TEXT NOT NULL,
    last_seen_at       TEXT NOT NULL,
    attempts           INTEGER NOT NULL,    -- counted bounce events, all labels, never decays
    soft_count         INTEGER NOT NULL,    -- soft bounces still counting toward soft_limit
    last_label         TEXT,
    last_reason        TEXT,
    last_status        TEXT,
    last_diagnostic    TEXT,
    last_event_id      INTEGER REFERENCES events(id) ON DELETE SET NULL,
    state              TEXT NOT NULL CHECK (state IN ('active', 'retry', 'suppressed', 'quarantined')),
    suppression_reason TEXT CHECK (suppression_reason IN ('hard', 'invalid', 'complaint', 'unsubscribe', 'soft_limit', 'manual')),
    state_since        TEXT,
    state_event_id     INTEGER REFERENCES events(id) ON DELETE SET NULL,
    next_retry_at      TEXT,
    is_role            INTEGER NOT NULL,
    updated_at         TEXT NOT NULL        -- when this row was last recomputed (wall clock)
) WITHOUT ROWID;
CREATE INDEX addresses_state ON addresses(state, next_retry_at);
CREATE INDEX addresses_domain ON addresses(domain);

CREATE TABLE state_changes (
    id                 INTEGER PRIMARY KEY,
    address            TEXT NOT NULL REFERENCES addresses(address) ON DELETE CASCADE,
    changed_at         TEXT NOT NULL,       -- the causing event's time
    from_state         TEXT NOT NULL,
    to_state           TEXT NOT NULL,
    suppression_reason TEXT,
    rule               TEXT NOT NULL,       -- policy rule: hard, invalid, provider_quarantine, soft_retry, soft_limit_count, ...
    detail             TEXT NOT NULL,
    event_id           INTEGER REFERENCES events(id) ON DELETE SET NULL
);
CREATE INDEX state_changes_address ON state_changes(address, changed_at);

CREATE TABLE domain_pauses (
    id             INTEGER PRIMARY KEY,
    domain         TEXT NOT NULL,           -- recipient domain
    reason         TEXT NOT NULL CHECK (reason IN ('blocked', 'rate_limited')),
    started_at     TEXT NOT NULL,
    paused_until   TEXT NOT NULL,
    escalation     INTEGER NOT NULL,        -- 0 first pause, n: doubled n times
    window_events  INTEGER NOT NULL,        -- events in the window that triggered it
    event_count    INTEGER NOT NULL,        -- all events of the episode, during the pause too
    first_event_id INTEGER REFERENCES events(id) ON DELETE SET NULL,
    first_event_at TEXT NOT NULL,
    last_event_id  INTEGER REFERENCES events(id) ON DELETE SET NULL,
    last_event_at  TEXT NOT NULL
);
CREATE INDEX domain_pauses_domain ON domain_pauses(domain, reason, started_at);
CREATE INDEX domain_pauses_until ON domain_pauses(paused_until);

CREATE TABLE imap_folders (
    mailbox     TEXT NOT NULL,
    folder      TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (mailbox, folder)
) WITHOUT ROWID;

-- Facts about the ledger itself, e.g. the fingerprint of the policy the projection was built with.
CREATE TABLE ledger_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    mailbox       TEXT NOT NULL,            -- IMAP account, or 'files' for rebound ingest
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    new           INTEGER,
    duplicates    INTEGER,
    bounces       TEXT,                     -- JSON: {"hard": 3, "soft": 1, ...}
    complaints    INTEGER,
    unsubscribes  INTEGER,
    auto_replies  INTEGER,
    unparsed      INTEGER,
    errors        TEXT,                     -- JSON array of messages
    ok            INTEGER                   -- 1: no error
);

-- Now, in the ledger's time format, for the views.
CREATE VIEW v_now AS SELECT strftime('%Y-%m-%dT%H:%M:%SZ', 'now') AS now;

CREATE VIEW v_suppressed AS
SELECT a.address,
       a.suppression_reason AS reason,
       a.state_since        AS since,
       sc.rule              AS rule,
       trim(coalesce(e.status || ' ', '') || coalesce(e.diagnostic, e.note, e.kind, '')) AS evidence,
       e.message_id         AS message,
       a.is_role
FROM addresses a
LEFT JOIN events e ON e.id = a.state_event_id
LEFT JOIN state_changes sc ON sc.id = (SELECT max(id) FROM state_changes WHERE address = a.address)
WHERE a.state = 'suppressed';

CREATE VIEW v_quarantined AS
SELECT a.address, a.state_since AS since, e.status, e.diagnostic, e.message_id AS message
FROM addresses a LEFT JOIN events e ON e.id = a.state_event_id
WHERE a.state = 'quarantined';

CREATE VIEW v_retry_due AS
SELECT a.address, a.soft_count, a.next_retry_at, a.last_reason, a.last_status, a.last_diagnostic
FROM addresses a
WHERE a.state = 'retry' AND a.next_retry_at <= strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
ORDER BY a.next_retry_at;

CREATE VIEW v_paused_domains AS
SELECT domain, reason, started_at, paused_until, escalation, window_events, event_count, last_event_at
FROM domain_pauses
WHERE paused_until > strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
ORDER BY paused_until DESC;

CREATE VIEW v_domain_stats AS
WITH b AS (
    SELECT 'recipient' AS side, domain, label, kind, event_time FROM events WHERE role = 'recipient'
    UNION ALL
    SELECT 'sender', sender_domain, label, kind, event_time FROM events
    WHERE role = 'recipient' AND sender_domain IS NOT NULL
), t AS (
    SELECT strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-7 days')  AS d7,
           strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-30 days') AS d30
)
SELECT side, domain,
       sum(kind = 'bounce' AND label = 'hard'    AND event_time >= d7)  AS hard_7d,
       sum(kind = 'bounce' AND label = 'soft'    AND event_time >= d7)  AS soft_7d,
       sum(kind = 'bounce' AND label = 'blocked' AND event_time >= d7)  AS blocked_7d,
       sum(kind = 'bounce' AND label = 'invalid' AND event_time >= d7)  AS invalid_7d,
       sum(kind = 'complaint'                    AND event_time >= d7)  AS complaints_7d,
       sum(kind = 'bounce' AND label = 'hard'    AND event_time >= d30) AS hard_30d,
       sum(kind = 'bounce' AND label = 'soft'    AND event_time >= d30) AS soft_30d,
       sum(kind = 'bounce' AND label = 'blocked' AND event_time >= d30) AS blocked_30d,
       sum(kind = 'bounce' AND label = 'invalid' AND event_time >= d30) AS invalid_30d,
       sum(kind = 'complaint'                    AND event_time >= d30) AS complaints_30d,
       sum(kind = 'bounce')                                             AS bounces_all_time
FROM b, t
GROUP BY side, domain;

CREATE VIEW v_why AS
SELECT e.address, e.event_time, e.kind, e.label, e.reason, e.status, e.reply_code,
       coalesce(e.diagnostic, e.note) AS diagnostic, e.rule, e.remote_mta,
       e.original_message_id, e.original_sender,
       coalesce(m.source_path, m.mailbox || '/' || m.folder || '#' || m.uid) AS source,
       e.message_id AS message, e.id AS event
FROM events e LEFT JOIN messages m ON m.id = e.message_id
ORDER BY e.address, e.event_time DESC, e.id DESC;
"#;

/// The pause replay of a domain reads its blocked (or rate-limited) bounces in replay order.
/// Through `events_domain` that meant visiting every event of the domain, a table row each, on
/// every batch touching it: the busiest domains made a poll quadratic. These partial indexes
/// hold exactly those events, in replay order, with every column the replay reads (the row id
/// is the event id): an index-only range scan.
const V2: &str = r#"
CREATE INDEX events_pause_blocked ON events(domain, event_time, sort_key, recipient_index)
    WHERE role = 'recipient' AND kind = 'bounce' AND label = 'blocked';
CREATE INDEX events_pause_rate_limited ON events(domain, event_time, sort_key, recipient_index)
    WHERE role = 'recipient' AND kind = 'bounce' AND reason = 'rate_limited';
"#;

/// Invalid addresses are a data-quality problem of the list that fed them (a typo-ridden signup
/// form, an old import): the product suppresses them *and* flags where they came from. rebound
/// cannot see a list, but it sees the stream that mailed each address (the returned original's
/// From): this view ranks streams by the invalid addresses they sent to, beside their hard
/// bounces and complaints for scale, with a few examples to start the clean-up from.
const V3: &str = r#"
CREATE VIEW v_list_sources AS
SELECT coalesce(e.original_sender, '(unknown)')                           AS source,
       count(DISTINCT CASE WHEN e.label = 'invalid' THEN e.address END)  AS invalid_addresses,
       count(DISTINCT CASE WHEN e.label = 'hard' THEN e.address END)     AS hard_addresses,
       count(DISTINCT CASE WHEN e.kind = 'complaint' THEN e.address END) AS complaint_addresses,
       min(CASE WHEN e.label = 'invalid' THEN e.event_time END)          AS first_invalid_at,
       max(CASE WHEN e.label = 'invalid' THEN e.event_time END)          AS last_invalid_at,
       (SELECT group_concat(address, ', ') FROM (
            SELECT DISTINCT x.address FROM events x
            WHERE x.label = 'invalid' AND x.role = 'recipient'
              AND x.original_sender IS e.original_sender
            ORDER BY x.address LIMIT 5))                                  AS invalid_examples
FROM events e
WHERE e.role = 'recipient' AND e.kind IN ('bounce', 'complaint')
GROUP BY e.original_sender
HAVING invalid_addresses > 0
ORDER BY invalid_addresses DESC, source;
"#;

/// `watch` runs one task per folder, each recording its own rounds: a run names its folder, so
/// that an operator can see when each folder was last read fine.
const V4: &str = r#"
ALTER TABLE runs ADD COLUMN folder TEXT;    -- the one folder a watch round read; NULL: all (poll) or files
"#;

/// Every verdict says in which SMTP phase the delivery failed (`connect`, `helo`, `starttls`,
/// `mail_from`, `rcpt_to`, `data`, `end_of_data`, `routing`: a refusal before RCPT TO is of the
/// sender) and keeps both addresses a DSN names: `address` is the one the sender used (the
/// Original-Recipient when it is a full address), `final_recipient` the one the failing server
/// tried after alias expansion or forwarding. Messages may also be `challenge` now
/// (challenge-response requests, never failures).
const V5: &str = r#"
ALTER TABLE events ADD COLUMN phase TEXT;               -- SMTP phase of the failure, when the report says it
ALTER TABLE events ADD COLUMN original_recipient TEXT;  -- the DSN's Original-Recipient (ORCPT), as reported
ALTER TABLE events ADD COLUMN final_recipient TEXT;     -- the DSN's Final-Recipient
DROP VIEW v_why;
CREATE VIEW v_why AS
SELECT e.address, e.event_time, e.kind, e.label, e.reason, e.phase, e.status, e.reply_code,
       coalesce(e.diagnostic, e.note) AS diagnostic, e.rule, e.remote_mta,
       e.original_recipient, e.final_recipient,
       e.original_message_id, e.original_sender,
       coalesce(m.source_path, m.mailbox || '/' || m.folder || '#' || m.uid) AS source,
       e.message_id AS message, e.id AS event
FROM events e LEFT JOIN messages m ON m.id = e.message_id
ORDER BY e.address, e.event_time DESC, e.id DESC;
"#;

/// The single-writer pipeline (`crate::ingest`):
/// - the projection is kept incrementally: each address stores where the fold of its events
///   stands (`addresses.fold`: what the row's columns do not say, the id of the last event
///   folded and the times of the soft bounces still counting, at most 256 of them, so that
///   `soft_count` is exact up to 256), each recipient domain the same for its pauses
///   (`pause_folds`), so that a batch steps them instead of re-reading histories (the first
///   open after this migration replays the projection once to fill them);
/// - raw bytes are stored compressed (`messages.raw_encoding`: NULL as received, `zstd`);
/// - each message records the rule table that decided it (`messages.rules`, a fingerprint), so
///   that `reclassify` re-derives only what an older table decided;
/// - indexes that no query of the code or of a documented view reads are dropped (each cost
///   every insert): `events_message` (the UNIQUE (message_id, recipient_index) index serves
///   the same lookups), `events_domain`, `events_sender_domain` and `addresses_domain` (ad-hoc
///   queries by domain scan; create them yourself if you run such queries often), and
///   `messages_kind`.
const V6: &str = r#"
ALTER TABLE addresses ADD COLUMN fold TEXT;          -- the rest of the fold: last event folded, soft bounce times (JSON)
CREATE TABLE pause_folds (
    domain TEXT NOT NULL,
    reason TEXT NOT NULL,                            -- blocked, rate_limited
    fold   TEXT NOT NULL,                            -- where the fold of the domain's events stands (JSON)
    PRIMARY KEY (domain, reason)
) WITHOUT ROWID;
ALTER TABLE messages ADD COLUMN raw_encoding TEXT;   -- NULL: raw as received; 'zstd': a zstd frame
ALTER TABLE messages ADD COLUMN rules TEXT;          -- fingerprint of the rule table that decided it
DROP INDEX IF EXISTS events_message;
DROP INDEX IF EXISTS events_domain;
DROP INDEX IF EXISTS events_sender_domain;
DROP INDEX IF EXISTS addresses_domain;
DROP INDEX IF EXISTS messages_kind;
"#;

/// Runs an operator can trust at a sqlite3 prompt:
/// - `kinds`: the new messages of the run per kind (`challenge` and `delivery_report` are no
///   longer hidden under other counts); `auto_replies` counts auto-replies only from now on.
/// - `pid` and `host` say which process ran it: a run left unfinished by a process that is
///   gone (killed, out of memory, a power cut) is marked `aborted_at` by the next run, instead
///   of looking as if it were still going for ever.
/// - `heartbeat_at`: the last time the run had read everything it reads (a poll or an ingest:
///   its end, when it went fine; a `watch` folder: every round, at least every
///   `poll_interval_secs`), so that "when did each mailbox last run fine" stays current while
///   a watch runs and finds nothing. Past runs that went fine get their `finished_at`.
/// - `v_mailbox_runs`: per mailbox, when it last ran fine and how many runs failed or died.
const V7: &str = r#"
ALTER TABLE runs ADD COLUMN kinds TEXT;           -- JSON: new messages per kind, {"bounce": 9, "challenge": 1}
ALTER TABLE runs ADD COLUMN pid INTEGER;          -- the process running it...
ALTER TABLE runs ADD COLUMN host TEXT;            -- ...on this host
ALTER TABLE runs ADD COLUMN heartbeat_at TEXT;    -- last time the run had read everything fine
ALTER TABLE runs ADD COLUMN aborted_at TEXT;      -- when a later run found it unfinished, its process gone
UPDATE runs SET heartbeat_at = finished_at WHERE ok = 1;
CREATE INDEX runs_unfinished ON runs(id) WHERE finished_at IS NULL AND aborted_at IS NULL;
CREATE VIEW v_mailbox_runs AS
SELECT mailbox,
       max(heartbeat_at)                                                 AS last_ok_at,
       max(started_at)                                                   AS last_started_at,
       sum(finished_at IS NULL AND aborted_at IS NULL)                   AS running,
       sum(ok = 0 AND aborted_at IS NULL)                                AS failed_runs,
       sum(aborted_at IS NOT NULL)                                       AS aborted_runs,
       (SELECT r.errors FROM runs r WHERE r.mailbox = runs.mailbox AND r.ok = 0
        ORDER BY r.id DESC LIMIT 1)                                      AS last_errors
FROM runs
GROUP BY mailbox
ORDER BY mailbox;
"#;

/// VERP and signed return paths (`[verp]`):
/// - `events.return_path`: the VERP address the message was delivered to, when `[verp]`
///   decoded one (the event's `address` is then the recipient it names, and the address the
///   notice itself named, if another, is in `final_recipient`);
/// - `events.signature`: what the return path's tag says: `valid`, `invalid`, `missing` (keys
///   configured, no tag; also a message to no VERP address when `require_signature` is on) or
///   `none` (no key configured); NULL without `[verp]`;
/// - `events.forged`: 1 for evidence that counts against nothing (a tag that does not verify,
///   or a required one missing without a DSN naming the address): the projection reads such an
///   event as neutral (no state change, no attempt, no pause), and the views below leave it out
///   of every count; `v_why` shows it with its flag;
/// - `runs.forged`: the recipients of a run's new messages stored as forged.
///
/// The pause indexes are rebuilt with the `forged = 0` their queries now carry.
const V8: &str = r#"
ALTER TABLE events ADD COLUMN return_path TEXT;                    -- the VERP address the message was delivered to
ALTER TABLE events ADD COLUMN signature TEXT;                      -- its tag: valid, invalid, missing, none; NULL: no [verp]
ALTER TABLE events ADD COLUMN forged INTEGER NOT NULL DEFAULT 0;   -- 1: stored as evidence, counted against nothing
ALTER TABLE runs ADD COLUMN forged INTEGER;                        -- recipients of the run's new messages stored as forged
DROP INDEX IF EXISTS events_pause_blocked;
DROP INDEX IF EXISTS events_pause_rate_limited;
CREATE INDEX events_pause_blocked ON events(domain, event_time, sort_key, recipient_index)
    WHERE role = 'recipient' AND kind = 'bounce' AND label = 'blocked' AND forged = 0;
CREATE INDEX events_pause_rate_limited ON events(domain, event_time, sort_key, recipient_index)
    WHERE role = 'recipient' AND kind = 'bounce' AND reason = 'rate_limited' AND forged = 0;
DROP VIEW v_why;
CREATE VIEW v_why AS
SELECT e.address, e.event_time, e.kind, e.label, e.reason, e.phase, e.status, e.reply_code,
       coalesce(e.diagnostic, e.note) AS diagnostic, e.rule, e.remote_mta,
       e.original_recipient, e.final_recipient,
       e.original_message_id, e.original_sender,
       coalesce(m.source_path, m.mailbox || '/' || m.folder || '#' || m.uid) AS source,
       e.message_id AS message, e.id AS event,
       e.return_path, e.signature, e.forged
FROM events e LEFT JOIN messages m ON m.id = e.message_id
ORDER BY e.address, e.event_time DESC, e.id DESC;
DROP VIEW v_domain_stats;
CREATE VIEW v_domain_stats AS
WITH b AS (
    SELECT 'recipient' AS side, domain, label, kind, event_time FROM events
    WHERE role = 'recipient' AND forged = 0
    UNION ALL
    SELECT 'sender', sender_domain, label, kind, event_time FROM events
    WHERE role = 'recipient' AND forged = 0 AND sender_domain IS NOT NULL
), t AS (
    SELECT strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-7 days')  AS d7,
           strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-30 days') AS d30
)
SELECT side, domain,
       sum(kind = 'bounce' AND label = 'hard'    AND event_time >= d7)  AS hard_7d,
       sum(kind = 'bounce' AND label = 'soft'    AND event_time >= d7)  AS soft_7d,
       sum(kind = 'bounce' AND label = 'blocked' AND event_time >= d7)  AS blocked_7d,
       sum(kind = 'bounce' AND label = 'invalid' AND event_time >= d7)  AS invalid_7d,
       sum(kind = 'complaint'                    AND event_time >= d7)  AS complaints_7d,
       sum(kind = 'bounce' AND label = 'hard'    AND event_time >= d30) AS hard_30d,
       sum(kind = 'bounce' AND label = 'soft'    AND event_time >= d30) AS soft_30d,
       sum(kind = 'bounce' AND label = 'blocked' AND event_time >= d30) AS blocked_30d,
       sum(kind = 'bounce' AND label = 'invalid' AND event_time >= d30) AS invalid_30d,
       sum(kind = 'complaint'                    AND event_time >= d30) AS complaints_30d,
       sum(kind = 'bounce')                                             AS bounces_all_time
FROM b, t
GROUP BY side, domain;
DROP VIEW v_list_sources;
CREATE VIEW v_list_sources AS
SELECT coalesce(e.original_sender, '(unknown)')                           AS source,
       count(DISTINCT CASE WHEN e.label = 'invalid' THEN e.address END)  AS invalid_addresses,
       count(DISTINCT CASE WHEN e.label = 'hard' THEN e.address END)     AS hard_addresses,
       count(DISTINCT CASE WHEN e.kind = 'complaint' THEN e.address END) AS complaint_addresses,
       min(CASE WHEN e.label = 'invalid' THEN e.event_time END)          AS first_invalid_at,
       max(CASE WHEN e.label = 'invalid' THEN e.event_time END)          AS last_invalid_at,
       (SELECT group_concat(address, ', ') FROM (
            SELECT DISTINCT x.address FROM events x
            WHERE x.label = 'invalid' AND x.role = 'recipient' AND x.forged = 0
              AND x.original_sender IS e.original_sender
            ORDER BY x.address LIMIT 5))                                  AS invalid_examples
FROM events e
WHERE e.role = 'recipient' AND e.kind IN ('bounce', 'complaint') AND e.forged = 0
GROUP BY e.original_sender
HAVING invalid_addresses > 0
ORDER BY invalid_addresses DESC, source;
"#;

/// Rates, not just counts (what was sent, so bounce and block rates per recipient domain,
/// provider, sending domain and campaign):
/// - `sends`: what the sending system sent (`rebound sends import`: CSV, JSON lines, the
///   Postfix or Exim log), aggregated per hour × recipient domain × sender domain × campaign,
///   so that a year of sends stays small (`''`: not known);
/// - `send_imports`: what was imported, per input: known by a hash of its first KB (of the
///   decompressed content for a `.gz`) and the byte offset reached, so that importing the same
///   input again changes nothing and a growing log imports only its new lines;
/// - `send_queue`: the messages a mail log showed in flight (queue id, envelope sender, the
///   recipients already counted), so that a recipient counts once per message across imports;
/// - `provider_domains`: the recipient domains seen (in events and sends) that belong to a
///   mailbox provider of the config's map, for the per-provider pauses and views;
/// - `events.campaign`: the returned original's campaign header (`[report] campaign_header`);
/// - pauses per provider as well as per domain (`domain_pauses.scope`; `domain` then holds the
///   provider's name), and every pause records the rule that fired and what it saw (`rule`,
///   `window_sends`, `window_rate`, `window_start`); `pause_folds` is keyed by scope (it is
///   projection: the first open replays it);
/// - views: `v_rates_recipient_domain`, `v_rates_sender_domain`, `v_rates_campaign`,
///   `v_rates_provider` (24 h, 7 d, 30 d: sends, bounces by label, complaints, rate per label
///   in %), `v_paused_domains` with the rule, and `v_paused_recipient_domains` (every known
///   recipient domain paused now, on its own or through its provider).
const V9: &str = r#"
ALTER TABLE events ADD COLUMN campaign TEXT;            -- the returned original's [report] campaign_header

CREATE TABLE sends (
    hour             TEXT NOT NULL,                     -- UTC start of the hour, 2026-11-22T14:00:00Z
    recipient_domain TEXT NOT NULL,
    sender_domain    TEXT NOT NULL,                     -- '' when the input did not say
    campaign         TEXT NOT NULL,                     -- '' when none
    count            INTEGER NOT NULL,
    PRIMARY KEY (hour, recipient_domain, sender_domain, campaign)
) WITHOUT ROWID;
CREATE INDEX sends_recipient_domain ON sends(recipient_domain, hour);

CREATE TABLE send_imports (
    id          INTEGER PRIMARY KEY,
    format      TEXT NOT NULL,                          -- csv, jsonl, postfix, exim
    path        TEXT NOT NULL,                          -- as given ('-': standard input)
    device      INTEGER,                                -- of the file, when it is one
    inode       INTEGER,
    head_len    INTEGER NOT NULL,                       -- bytes hashed: the first KB, or all of a shorter input
    head_sha256 TEXT NOT NULL,
    offset      INTEGER NOT NULL,                       -- bytes of the (decompressed) content imported
    lines       INTEGER NOT NULL,                       -- lines read, all imports of it together
    sends       INTEGER NOT NULL,                       -- sends counted
    bad_rows    INTEGER NOT NULL,                       -- rows refused (csv, jsonl)
    first_at    TEXT NOT NULL,
    last_at     TEXT NOT NULL
);
CREATE INDEX send_imports_head ON send_imports(head_sha256);

CREATE TABLE send_queue (
    log        TEXT NOT NULL,                           -- postfix, exim
    host       TEXT NOT NULL,                           -- the log's host (and Postfix instance)
    queue_id   TEXT NOT NULL,
    sender     TEXT,                                    -- envelope sender; '' the null sender; NULL not seen
    recipients TEXT NOT NULL,                           -- JSON list of the recipients already counted
    seen_at    TEXT NOT NULL,                           -- the last line about it
    PRIMARY KEY (log, host, queue_id)
) WITHOUT ROWID;

CREATE TABLE provider_domains (
    domain   TEXT PRIMARY KEY,
    provider TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX provider_domains_provider ON provider_domains(provider);

ALTER TABLE domain_pauses ADD COLUMN scope TEXT NOT NULL DEFAULT 'domain';  -- domain, provider (domain = its name)
ALTER TABLE domain_pauses ADD COLUMN rule TEXT;            -- blocked_threshold, blocked_rate, rate_limited_threshold, rate_limited_rate
ALTER TABLE domain_pauses ADD COLUMN window_sends INTEGER; -- sends recorded in the window's hours (NULL: none)
ALTER TABLE domain_pauses ADD COLUMN window_rate REAL;     -- window_events / window_sends, in %
ALTER TABLE domain_pauses ADD COLUMN window_start TEXT;    -- where the counted window began
DROP INDEX domain_pauses_domain;
CREATE INDEX domain_pauses_domain ON domain_pauses(scope, domain, reason, started_at);
DROP TABLE pause_folds;
CREATE TABLE pause_folds (
    scope   TEXT NOT NULL,                              -- domain, provider
    subject TEXT NOT NULL,                              -- the domain, or the provider's name
    reason  TEXT NOT NULL,                              -- blocked, rate_limited
    fold    TEXT NOT NULL,                              -- where the fold of its events stands (JSON)
    PRIMARY KEY (scope, subject, reason)
) WITHOUT ROWID;

DROP VIEW v_paused_domains;
CREATE VIEW v_paused_domains AS
SELECT domain, reason, started_at, paused_until, escalation, window_events, event_count, last_event_at,
       scope, rule, window_sends, window_rate
FROM domain_pauses
WHERE paused_until > strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
ORDER BY paused_until DESC;

CREATE VIEW v_paused_recipient_domains AS
SELECT d.domain, p.scope, p.domain AS paused, p.reason, p.rule, p.started_at, p.paused_until
FROM (SELECT domain FROM events WHERE role = 'recipient' UNION SELECT recipient_domain FROM sends) d
LEFT JOIN provider_domains pd ON pd.domain = d.domain
JOIN domain_pauses p
  ON p.paused_until > strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
 AND ((p.scope = 'domain' AND p.domain = d.domain) OR (p.scope = 'provider' AND p.domain = pd.provider))
ORDER BY d.domain, p.paused_until DESC;

-- Sends and bounces side by side in three windows: one row per send aggregate or per event.
-- Send hours count from the hour the window starts in.
CREATE VIEW v_rate_facts AS
WITH w(period, since) AS (
    VALUES ('24h', strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-1 day')),
           ('7d',  strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-7 days')),
           ('30d', strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-30 days'))
)
SELECT w.period, s.recipient_domain, s.sender_domain, s.campaign, s.count AS sends,
       0 AS bounces, 0 AS hard, 0 AS soft, 0 AS blocked, 0 AS invalid, 0 AS rate_limited, 0 AS complaints
FROM sends s JOIN w ON s.hour >= strftime('%Y-%m-%dT%H:00:00Z', w.since)
UNION ALL
SELECT w.period, e.domain, coalesce(e.sender_domain, ''), coalesce(e.campaign, ''), 0,
       e.kind = 'bounce', e.kind = 'bounce' AND e.label IS 'hard', e.kind = 'bounce' AND e.label IS 'soft',
       e.kind = 'bounce' AND e.label IS 'blocked', e.kind = 'bounce' AND e.label IS 'invalid',
       e.kind = 'bounce' AND e.reason IS 'rate_limited', e.kind = 'complaint'
FROM events e JOIN w ON e.event_time >= w.since
WHERE e.role = 'recipient' AND e.kind IN ('bounce', 'complaint') AND e.forged = 0;

CREATE VIEW v_rates_recipient_domain AS
SELECT recipient_domain AS domain, period, sum(sends) AS sends, sum(bounces) AS bounces,
       sum(hard) AS hard, sum(soft) AS soft, sum(blocked) AS blocked, sum(invalid) AS invalid,
       sum(rate_limited) AS rate_limited, sum(complaints) AS complaints,
       round(100.0 * sum(bounces) / nullif(sum(sends), 0), 3)      AS bounce_pct,
       round(100.0 * sum(hard) / nullif(sum(sends), 0), 3)         AS hard_pct,
       round(100.0 * sum(soft) / nullif(sum(sends), 0), 3)         AS soft_pct,
       round(100.0 * sum(blocked) / nullif(sum(sends), 0), 3)      AS blocked_pct,
       round(100.0 * sum(invalid) / nullif(sum(sends), 0), 3)      AS invalid_pct,
       round(100.0 * sum(rate_limited) / nullif(sum(sends), 0), 3) AS rate_limited_pct,
       round(100.0 * sum(complaints) / nullif(sum(sends), 0), 3)   AS complaint_pct
FROM v_rate_facts
GROUP BY recipient_domain, period;

CREATE VIEW v_rates_provider AS
SELECT pd.provider, f.period, sum(f.sends) AS sends, sum(f.bounces) AS bounces,
       sum(f.hard) AS hard, sum(f.soft) AS soft, sum(f.blocked) AS blocked, sum(f.invalid) AS invalid,
       sum(f.rate_limited) AS rate_limited, sum(f.complaints) AS complaints,
       round(100.0 * sum(f.bounces) / nullif(sum(f.sends), 0), 3)      AS bounce_pct,
       round(100.0 * sum(f.hard) / nullif(sum(f.sends), 0), 3)         AS hard_pct,
       round(100.0 * sum(f.soft) / nullif(sum(f.sends), 0), 3)         AS soft_pct,
       round(100.0 * sum(f.blocked) / nullif(sum(f.sends), 0), 3)      AS blocked_pct,
       round(100.0 * sum(f.invalid) / nullif(sum(f.sends), 0), 3)      AS invalid_pct,
       round(100.0 * sum(f.rate_limited) / nullif(sum(f.sends), 0), 3) AS rate_limited_pct,
       round(100.0 * sum(f.complaints) / nullif(sum(f.sends), 0), 3)   AS complaint_pct
FROM v_rate_facts f JOIN provider_domains pd ON pd.domain = f.recipient_domain
GROUP BY pd.provider, f.period;

CREATE VIEW v_rates_sender_domain AS
SELECT sender_domain, period, sum(sends) AS sends, sum(bounces) AS bounces,
       sum(hard) AS hard, sum(soft) AS soft, sum(blocked) AS blocked, sum(invalid) AS invalid,
       sum(rate_limited) AS rate_limited, sum(complaints) AS complaints,
       round(100.0 * sum(bounces) / nullif(sum(sends), 0), 3)      AS bounce_pct,
       round(100.0 * sum(hard) / nullif(sum(sends), 0), 3)         AS hard_pct,
       round(100.0 * sum(soft) / nullif(sum(sends), 0), 3)         AS soft_pct,
       round(100.0 * sum(blocked) / nullif(sum(sends), 0), 3)      AS blocked_pct,
       round(100.0 * sum(invalid) / nullif(sum(sends), 0), 3)      AS invalid_pct,
       round(100.0 * sum(rate_limited) / nullif(sum(sends), 0), 3) AS rate_limited_pct,
       round(100.0 * sum(complaints) / nullif(sum(sends), 0), 3)   AS complaint_pct
FROM v_rate_facts
WHERE sender_domain <> ''
GROUP BY sender_domain, period;

CREATE VIEW v_rates_campaign AS
SELECT campaign, period, sum(sends) AS sends, sum(bounces) AS bounces,
       sum(hard) AS hard, sum(soft) AS soft, sum(blocked) AS blocked, sum(invalid) AS invalid,
       sum(rate_limited) AS rate_limited, sum(complaints) AS complaints,
       round(100.0 * sum(bounces) / nullif(sum(sends), 0), 3)      AS bounce_pct,
       round(100.0 * sum(hard) / nullif(sum(sends), 0), 3)         AS hard_pct,
       round(100.0 * sum(soft) / nullif(sum(sends), 0), 3)         AS soft_pct,
       round(100.0 * sum(blocked) / nullif(sum(sends), 0), 3)      AS blocked_pct,
       round(100.0 * sum(invalid) / nullif(sum(sends), 0), 3)      AS invalid_pct,
       round(100.0 * sum(rate_limited) / nullif(sum(sends), 0), 3) AS rate_limited_pct,
       round(100.0 * sum(complaints) / nullif(sum(sends), 0), 3)   AS complaint_pct
FROM v_rate_facts
WHERE campaign <> ''
GROUP BY campaign, period;
"#;

/// The way out of the ledger, for the sending system (`export`, hooks), and retention:
/// - `suppression_log`: append-only, one row each time an address's state as senders see it
///   (its `state` and `suppression_reason`) changes, written in the same transaction as the
///   projection. `state_changes` is rewritten whenever an address is replayed; this log never
///   is, so its ids are a cursor a sync job can keep (`rebound export --since`). A replay or a
///   rebuild that ends where the address was writes nothing; one that ends elsewhere writes the
///   net difference. An address the ledger does not hold counts as `active`, so the log folded
///   per address (its last `new_state`) is the `addresses` table. Seeded here with every address
///   that is not active, so that ledgers from before this migration start complete.
/// - `hook_cursors`: how far each `[hooks] on_change` command has taken the log (advanced only
///   when it exits 0).
/// - `events.suppression_reason`: the reason an operator gave with `rebound suppress`
///   (`manual`, `complaint`, `unsubscribe`; events of `kind = 'manual'`, `action = 'suppress'`).
/// - `messages.raw_purged_at`: when retention dropped the raw bytes (`raw` is then empty; the
///   sha256, `raw_size` and every fact read from the bytes stay), with a partial index of the
///   messages whose bytes are still kept, by kind and age, so that a purge reads only what it
///   purges.
const V10: &str = r#"
CREATE TABLE suppression_log (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,  -- the export / hook cursor; never reused
    address            TEXT NOT NULL,
    old_state          TEXT NOT NULL,      -- active for an address the ledger did not hold
    old_reason         TEXT,
    new_state          TEXT NOT NULL,      -- active for an address that left the ledger
    suppression_reason TEXT,               -- the new reason, when new_state = 'suppressed'
    rule               TEXT,               -- policy rule behind the new state (NULL: none, e.g. back to active by a rebuild)
    event_id           INTEGER,            -- the event behind it (no foreign key: the log outlives reclassify)
    event_time         TEXT,               -- that event's time
    mailbox            TEXT,               -- its message's mailbox ('files' for rebound ingest; NULL: an operator)
    at                 TEXT NOT NULL       -- when the change was committed (wall clock)
);
INSERT INTO suppression_log (address, old_state, old_reason, new_state, suppression_reason, rule,
                             event_id, event_time, mailbox, at)
SELECT a.address, 'active', NULL, a.state, a.suppression_reason,
       (SELECT sc.rule FROM state_changes sc WHERE sc.address = a.address ORDER BY sc.id DESC LIMIT 1),
       a.state_event_id, a.state_since,
       (SELECT CASE WHEN m.id IS NULL THEN NULL ELSE coalesce(m.mailbox, 'files') END
        FROM events e LEFT JOIN messages m ON m.id = e.message_id WHERE e.id = a.state_event_id),
       strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
FROM addresses a
WHERE a.state <> 'active'
ORDER BY a.address;
CREATE TABLE hook_cursors (
    hook       TEXT PRIMARY KEY,           -- the command's argv, as JSON
    last_id    INTEGER NOT NULL,           -- suppression_log.id of the last change it took (exit 0)
    updated_at TEXT NOT NULL,
    failed_at  TEXT,                       -- its last failure since it last succeeded
    last_error TEXT
) WITHOUT ROWID;
ALTER TABLE events ADD COLUMN suppression_reason TEXT;  -- rebound suppress: manual, complaint, unsubscribe
ALTER TABLE messages ADD COLUMN raw_purged_at TEXT;     -- retention dropped the raw bytes then (raw is empty)
CREATE INDEX messages_raw_kept ON messages(kind, received_at) WHERE raw_purged_at IS NULL;
"#;

/// Every migration, in order. Never edit a released entry: append a new one.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7, V8, V9, V10];

/// Brings the database to the newest schema version.
///
/// Several processes may open a ledger that does not exist yet at the same moment (a timer's
/// `poll` and an operator's `ingest`): each step is an immediate write transaction that reads
/// `user_version` again once it holds the write lock, so a migration another process has just
/// applied is skipped instead of failing with "table already exists". The connection's busy
/// timeout makes the others wait for the lock instead of failing with "database is locked".
pub fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let newest = MIGRATIONS.len() as i64;
    let version = |conn: &Connection| -> rusqlite::Result<i64> {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
    };
    // The common case, a ledger already up to date, takes no write lock.
    if version(conn)? == newest {
        return Ok(());
    }
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = version(&tx)?;
        if current > newest {
            anyhow::bail!(
                "database schema version {current} is newer than this rebound knows ({newest}): upgrade rebound"
            );
        }
        if current == newest {
            return Ok(());
        }
        let next = current as usize;
        tx.execute_batch(MIGRATIONS[next])
            .with_context(|| format!("applying schema migration {}", next + 1))?;
        tx.pragma_update(None, "user_version", (next + 1) as i64)?;
        tx.commit()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_at_an_older_version_is_brought_up_to_date() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(V1).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM v_list_sources", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
        // Running it again is a no-op, not a "view already exists" error.
        migrate(&mut conn).unwrap();
    }

    /// A ledger from before the change log gets one row per address that is not active, so
    /// that the log folded per address is the `addresses` table from the start.
    #[test]
    fn v10_seeds_the_change_log_with_the_addresses_that_are_not_active() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (i, m) in MIGRATIONS[..9].iter().enumerate() {
            conn.execute_batch(m).unwrap();
            conn.pragma_update(None, "user_version", i as i64 + 1)
                .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO messages (id, sha256, mailbox, received_at, processed_at, kind, parser_version, raw_size, raw)
                 VALUES (1, 'x', 'bounces', '2026-11-02T10:00:00Z', '2026-11-02T10:00:00Z', 'bounce', '1', 0, X'');
             INSERT INTO events (id, message_id, recipient_index, role, address, domain, kind, event_time, time_source, sort_key)
                 VALUES (7, 1, 0, 'recipient', 'a@example.org', 'example.org', 'bounce', '2026-11-02T10:00:00Z', 'date', 'x');
             INSERT INTO addresses (address, domain, first_seen_at, last_seen_at, attempts, soft_count, state,
                                    suppression_reason, state_since, state_event_id, is_role, updated_at)
                 VALUES ('a@example.org', 'example.org', '2026-11-02T10:00:00Z', '2026-11-02T10:00:00Z', 1, 0,
                         'suppressed', 'hard', '2026-11-02T10:00:00Z', 7, 0, 'now'),
                        ('b@example.org', 'example.org', '2026-11-02T10:00:00Z', '2026-11-02T10:00:00Z', 0, 0,
                         'active', NULL, NULL, NULL, 0, 'now');
             INSERT INTO state_changes (address, changed_at, from_state, to_state, suppression_reason, rule, detail, event_id)
                 VALUES ('a@example.org', '2026-11-02T10:00:00Z', 'active', 'suppressed', 'hard', 'hard', 'x', 7);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let rows: Vec<String> = conn
            .prepare(
                "SELECT address || ' ' || old_state || '>' || new_state || ' ' || suppression_reason || ' '
                        || rule || ' ' || event_id || ' ' || event_time || ' ' || mailbox
                 FROM suppression_log ORDER BY id",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            rows,
            ["a@example.org active>suppressed hard hard 7 2026-11-02T10:00:00Z bounces"]
        );
    }
}
