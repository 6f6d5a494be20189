//! Shared tools for reading bounces written as prose: who sent it, where the returned
//! original begins, and which lines name a failed recipient with its diagnostic.

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock};

use aho_corasick::{AhoCorasick, MatchKind};
use regex::{Regex, RegexBuilder};

use super::super::mail::Mail;
use super::super::verdict::{Action, Recipient};
use super::super::{phase, recipient_address, status};

/// Literals a module looks for in (nearly) every message's text before it knows whether the
/// message is its own: built once, and searched with a SIMD substring finder (aho-corasick's
/// memchr prefilter) instead of `str::find`/`contains`, whose two-way search builds its tables
/// on each call and scans without SIMD. Same answers as those.
pub struct Literals {
    patterns: &'static [&'static str],
    searcher: OnceLock<AhoCorasick>,
}

impl Literals {
    pub const fn new(patterns: &'static [&'static str]) -> Literals {
        Literals {
            patterns,
            searcher: OnceLock::new(),
        }
    }

    fn searcher(&self) -> &AhoCorasick {
        self.searcher.get_or_init(|| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostFirst)
                .build(self.patterns)
                .unwrap()
        })
    }

    /// Whether any of the literals occurs in `text` (`text.contains(a) || text.contains(b)`).
    pub fn any_in(&self, text: &str) -> bool {
        self.searcher().is_match(text)
    }

    /// Where the first occurrence of any of the literals starts (for one literal, `text.find`).
    pub fn find(&self, text: &str) -> Option<usize> {
        self.searcher().find(text).map(|m| m.start())
    }
}

static ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9][A-Za-z0-9._%+\-=/!#$&'*^`{|}~]*@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)+")
        .unwrap()
});

/// Senders that write bounces: the local parts and display names MTAs use.
static BOUNCE_SENDER: LazyLock<Regex> = LazyLock::new(|| {
    RegexBuilder::new(r"^(mailer-daemon|postmaster|post_master|mail-daemon|maildaemon|mailerdaemon|bounces?|bounce-\S*|mdaemon|nobody|root|mail|smtp|msgdelivery|mail-?delivery|double-bounce|noreply-dmarc|daemon|returns?)(@|$)|mail delivery (system|subsystem|service)|mailer.daemon|postmaster|delivery (status|subsystem|notification)|microsoft outlook|mail administrator|mailer$")
        .case_insensitive(true).dfa_size_limit(32 << 20)
        .build()
        .unwrap()
});

/// Subjects of bounces and delay warnings across MTAs and languages.
static BOUNCE_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    RegexBuilder::new(r"undeliver|undelivered|delivery (status notification|failure|failed|has failed|problem|notification)|returned mail|return(ed)? to sender|failure notice|n[aã]o foi poss[ií]vel entregar|mail delivery status|delivery status|mail delivery fail|delivery (report|error)|could not (be )?deliver|not (be )?delivered|nondeliverable|non[- ]?delivery|message (not|could not be) delivered|delivery unsuccessful|mail system error|rejected|bounce|warning: could not send|delayed mail|delivery delayed|delivery notification|unzustellbar|nicht zugestellt|non (remis|distribu)|non recapitabile|n[aã]o (foi )?entregue|falha na entrega|mensagem n[aã]o|no (se pudo )?entrega|error de entrega|onbestelbaar|niet bezorgd|returned message|mail failure|permanent (failure|error)|undeliverable|failed delivery|notification d.[eé]tat|不達|エラー|配信不能|未送達|送信できません|メール送信|Mail could not|Notice of Failed|Warning: message")
        .case_insensitive(true).dfa_size_limit(32 << 20)
        .build()
        .unwrap()
});

/// Lines after which the text is the returned original, not the bounce.
static ORIGINAL_MARKER: LazyLock<Regex> = LazyLock::new(|| {
    // Unanchored so that the regex engine can scan with a literal prefilter; `split_original`
    // checks that a match starts its line (after decoration such as `---` or `> `).
    RegexBuilder::new(r"(?:this is a copy of the (original )?message|below this line is a copy of the message|original message (follows|headers)|-+ ?original message ?-+|-+ ?returned message ?-+|unsent message below|the (original|returned) message (headers )?(follows|is attached|was (attached|included|returned))|here (is|are) (the )?(original|returned|partial) (message|headers)|message headers follow|-+ ?(start|begin) of (returned|original) (message|headers|message content)|-+ ?undelivered message ?-+|-+ ?received headers ?-+|headers of (the )?(original|returned) message|copy of (the )?original message|your message reads|-+ ?message text ?-+|a copy of your message|included is a copy of the message header|the header of the original message is following|content-type: message/rfc822|content-type: text/rfc822-headers)")
        .case_insensitive(true)
        .dfa_size_limit(32 << 20)
        .build()
        .unwrap()
});

/// True if the message comes from a bounce-writing sender (or has the null return path).
pub fn from_bounce_sender(mail: &Mail<'_>) -> bool {
    let null_path = mail.header("Return-Path").is_some_and(|r| r.trim() == "<>");
    null_path || from_daemon(mail)
}

/// True if the From address or name is a mailer-daemon, postmaster or the like. (Unlike the
/// null return path, which every automatic reply also uses.)
pub fn from_daemon(mail: &Mail<'_>) -> bool {
    let from = mail.from_address_str().unwrap_or_default();
    let name = mail.from_name().unwrap_or_default();
    BOUNCE_SENDER.is_match(from) || BOUNCE_SENDER.is_match(&name)
}

/// True if the subject reads like a bounce or a delay warning.
pub fn bounce_subject(mail: &Mail<'_>) -> bool {
    BOUNCE_SUBJECT.is_match(mail.subject())
}

/// Splits a bounce text into the notice and the returned original (if a marker is found).
pub fn split_original(text: &str) -> (&str, Option<&str>) {
    for m in ORIGINAL_MARKER.find_iter(text) {
        let line_start = text[..m.start()].rfind('\n').map_or(0, |i| i + 1);
        let before = &text[line_start..m.start()];
        if !before
            .chars()
            .all(|c| c.is_whitespace() || "->=*_".contains(c))
        {
            continue;
        }
        let rest = &text[m.end()..];
        let rest = rest.split_once('\n').map(|(_, r)| r).unwrap_or("");
        return (&text[..line_start], Some(rest));
    }
    (text, None)
}

/// Every address in a line.
pub fn addresses(line: &str) -> impl Iterator<Item = &str> {
    // Most lines hold no '@': a memchr is far cheaper than starting a regex search.
    let haystack = if line.contains('@') { line } else { "" };
    ADDRESS
        .find_iter(haystack)
        .map(|m| m.as_str().trim_end_matches(['.', '-']))
}

/// Addresses that are never a bounced recipient: the bounce's own From and To (the sender of
/// the original), the original's From, and bounce-handling mailboxes.
pub struct Exclusions {
    addrs: Vec<String>,
}

impl Exclusions {
    pub fn for_mail(mail: &Mail<'_>, extra: &[Option<&str>]) -> Exclusions {
        let mut addrs: Vec<String> = Vec::new();
        addrs.extend(mail.from_address());
        addrs.extend(
            mail.msg
                .to()
                .into_iter()
                .flat_map(|a| a.iter())
                .filter_map(|a| a.address())
                .map(|a| a.to_ascii_lowercase()),
        );
        if let Some(rp) = mail.header("Return-Path") {
            addrs.extend(addresses(&rp).map(|a| a.to_ascii_lowercase()));
        }
        addrs.extend(extra.iter().flatten().map(|s| s.to_ascii_lowercase()));
        Exclusions { addrs }
    }

    pub fn excludes(&self, address: &str) -> bool {
        let a = address.to_ascii_lowercase();
        let local = a.split('@').next().unwrap_or("");
        self.addrs.contains(&a)
            || matches!(
                local,
                "mailer-daemon" | "postmaster" | "mail-daemon" | "double-bounce"
            )
            || local.starts_with("bounce")
            || local.starts_with("prvs=") && a.contains("bounce")
    }

    /// True if the address is one of the message's own parties (the bounce's From, To or
    /// Return-Path, the original's sender); role mailboxes are not checked.
    pub fn names_a_party(&self, address: &str) -> bool {
        self.addrs.contains(&address.to_ascii_lowercase())
    }

    pub fn add(&mut self, address: &str) {
        self.addrs.push(address.to_ascii_lowercase());
    }
}

/// A recipient built from an address and the diagnostic text found for it.
pub fn recipient(address: &str, diagnostic: &str, action: &str) -> Option<Recipient> {
    let address = recipient_address(address)?;
    let diagnostic = squash(diagnostic);
    Some(Recipient {
        address,
        action: Some(Action::parse(action)),
        status: status::find_enhanced(&diagnostic),
        reply_code: status::find_reply_code(&diagnostic),
        phase: phase::detect(&diagnostic),
        diagnostic: (!diagnostic.is_empty()).then_some(diagnostic),
        ..Recipient::default()
    })
}

/// Collapses runs of whitespace (text diagnostics are wrapped and indented): the words of
/// `split_whitespace` (Unicode `White_Space`) joined by single spaces.
pub fn squash(s: &str) -> String {
    // One pass that copies each word as it ends, with no Vec of words in between: this runs on
    // every diagnostic, most of them ASCII.
    let b = s.as_bytes();
    // Whether the character at byte `i` is whitespace, and its length.
    let at = |i: usize| -> (bool, usize) {
        let c = b[i];
        if c.is_ascii() {
            (matches!(c, b'\t'..=b'\r' | b' '), 1)
        } else {
            let c = s[i..].chars().next().unwrap();
            (c.is_whitespace(), c.len_utf8())
        }
    };
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    loop {
        while i < b.len() {
            match at(i) {
                (true, len) => i += len,
                (false, _) => break,
            }
        }
        if i == b.len() {
            return out;
        }
        let start = i;
        while i < b.len() {
            match at(i) {
                (false, len) => i += len,
                (true, _) => break,
            }
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&s[start..i]);
    }
}

/// Lines that are headers of a quoted message, not notices about a recipient.
pub fn is_header_line(line: &str) -> bool {
    let l = line.trim_start();
    // The folded tail of a quoted `Received:` header (`    for <rcpt@example.org>; date`).
    if l.len() < line.len() && l.starts_with("for <") && l.contains(">;") {
        return true;
    }
    let Some((name, _)) = l.split_once(':') else {
        return false;
    };
    // Compared without a lowercased copy: this runs on every line of every notice.
    const NAMES: &[&str] = &[
        "from",
        "to",
        "cc",
        "return-path",
        "reply-to",
        "sender",
        "message-id",
        "in-reply-to",
        "references",
        "envelope-to",
        "delivered-to",
        "received",
        "date",
        "subject",
        "x-original-to",
        "list-unsubscribe",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// The generic extraction: each line naming an address (not excluded, not a quoted header)
/// opens a recipient; its diagnostic is the rest of that line and the following lines up to a
/// blank line or a line naming another recipient. An address standing alone on its line takes
/// the next paragraph as its diagnostic ("user@example.org" then a blank line then "Reason:
/// ..."). An address named twice keeps the block that carries an SMTP code.
pub fn scan(notice: &str, excl: &Exclusions, action: &str) -> Vec<Recipient> {
    let lines: Vec<&str> = notice.lines().collect();
    let mut out: Vec<Recipient> = Vec::new();
    // Where each address is in `out`: a notice may list a hundred thousand.
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut i = 0;
    while i < lines.len() {
        crate::analysis::budget::check();
        let line = lines[i];
        let found: Vec<String> = if is_header_line(line) {
            Vec::new()
        } else {
            addresses(line)
                .filter(|a| !excl.excludes(a))
                .map(str::to_ascii_lowercase)
                .collect()
        };
        if found.is_empty() {
            i += 1;
            continue;
        }
        let other_recipient = |l: &str| {
            !is_header_line(l)
                && !l.starts_with([' ', '\t'])
                && addresses(l)
                    .any(|a| !excl.excludes(a) && !found.contains(&a.to_ascii_lowercase()))
        };
        // A sentence that wraps onto the address's line ("...が一杯になって、1通のメールでも受信
        // / できないため、"a@b"へのメール..."): its beginning on the line above is part of it.
        let mut diag = match i.checked_sub(1).map(|p| lines[p]) {
            Some(prev) if wraps_onto(prev, line, &found) => format!("{} {line}", prev.trim()),
            _ => String::from(line),
        };
        let mut j = i + 1;
        let squashed = squash(line);
        let alone = found.iter().all(|a| {
            squashed
                .trim_matches(['<', '>', ':', '*', '-', ' ', '"'])
                .eq_ignore_ascii_case(a)
        });
        // A list of addresses under a heading ("The following recipients did not receive this
        // message:") after the paragraphs that say why (Netscape, Exchange 5.5 and others):
        // the reason is that preamble, not what follows the list (a footer, a disclaimer).
        // (Only for an address with no lines of its own under it.)
        let own_lines =
            j < lines.len() && !lines[j].trim().is_empty() && !other_recipient(lines[j]);
        let preamble = if alone && !own_lines {
            list_preamble(&lines, i)
        } else {
            None
        };
        if alone && !own_lines {
            // Skip one run of blank lines to reach the paragraph that explains.
            let mut k = j;
            while k < lines.len() && lines[k].trim().is_empty() {
                k += 1;
            }
            // The paragraph's first line that is not a rule of '=' or '-'.
            let explains = lines[k.min(lines.len())..]
                .iter()
                .take_while(|l| !l.trim().is_empty())
                .find(|l| !l.trim().chars().all(|c| "=-*_#".contains(c)))
                .is_some_and(|l| explains(l));
            let says_why = preamble
                .as_deref()
                .is_some_and(|p| p.split(' ').count() > 3);
            if k > j && k < lines.len() && !other_recipient(lines[k]) && (!says_why || explains) {
                j = k;
            } else if let Some(p) = preamble.filter(|p| !explains && p.split(' ').count() > 3) {
                diag.push(' ');
                diag.push_str(&p);
            }
        }
        loop {
            while j < lines.len() && !lines[j].trim().is_empty() && j - i < 12 {
                if other_recipient(lines[j]) {
                    break;
                }
                diag.push(' ');
                diag.push_str(lines[j].trim());
                j += 1;
            }
            // "...because:" announces the explanation in the next paragraph (Domino and
            // others): follow it once.
            if !diag.trim_end().ends_with(':') || diag.len() > 400 {
                break;
            }
            let mut k = j;
            while k < lines.len() && lines[k].trim().is_empty() {
                k += 1;
            }
            if k == j || k >= lines.len() || other_recipient(lines[k]) {
                break;
            }
            j = k;
        }
        for a in &found {
            let Some(r) = recipient(a, &diag, action) else {
                continue;
            };
            match index.get(&r.address).map(|&k| &mut out[k]) {
                None => {
                    index.insert(r.address.clone(), out.len());
                    out.push(r);
                }
                Some(o)
                    if o.reply_code.is_none()
                        && o.status.is_none()
                        && (r.reply_code.is_some() || r.status.is_some()) =>
                {
                    let first = o.diagnostic.take().unwrap_or_default();
                    *o = Recipient {
                        diagnostic: Some(
                            format!("{first} {}", r.diagnostic.unwrap_or_default())
                                .trim()
                                .to_string(),
                        ),
                        ..r
                    };
                }
                Some(_) => {}
            }
        }
        i = j.max(i + 1);
    }
    out
}

/// True if `prev` is the start of a sentence that `line` (which names `found` somewhere after
/// its start) continues: `prev` ends without a full stop or colon and names no address.
fn wraps_onto(prev: &str, line: &str, found: &[String]) -> bool {
    let p = prev.trim_end();
    let l = line
        .trim_start()
        .trim_start_matches(['<', '"', '\''])
        .to_ascii_lowercase();
    !p.trim().is_empty()
        && !found.iter().any(|a| l.starts_with(a.as_str()))
        && !p.ends_with(['.', '。', '!', '?', ':', '：', ';', ')', '>'])
        && !p.contains('@')
        && !is_header_line(prev)
}

/// The paragraphs before the heading of the list that line `at` belongs to (the lines above it
/// being other lone addresses or blank, the heading being the first line ending with ':'),
/// squashed; `None` when no such heading precedes or nothing precedes it.
fn list_preamble(lines: &[&str], at: usize) -> Option<String> {
    let mut k = at;
    // A list is read up to this many lines back: each of its addresses looks for the heading,
    // and a message of lone addresses must not cost their number squared.
    let floor = at.saturating_sub(PREAMBLE_LOOKBACK);
    while k > floor {
        k -= 1;
        let l = lines[k].trim();
        // (A lone address: a word or two with an '@', no regex needed.)
        if l.is_empty() || l.contains('@') && l.split_whitespace().count() <= 2 {
            continue;
        }
        if !l.ends_with(':') || k == 0 {
            return None;
        }
        // The heading itself often says why ("... was aborted after 5 hours:").
        let before = squash(&lines[..=k].join("\n"));
        // The reason, not a whole letter: its last sentences before the list.
        let start = before
            .char_indices()
            .rev()
            .nth(PREAMBLE_CHARS)
            .map_or(0, |(i, _)| i);
        return (!before.is_empty()).then(|| before[start..].to_string());
    }
    None
}

/// Characters of a list's preamble kept as its recipients' diagnostic.
const PREAMBLE_CHARS: usize = 600;

/// Lines above an address searched for its list's heading.
const PREAMBLE_LOOKBACK: usize = 64;

/// True if a line opens an explanation of the address above it ("because:", "Reason: ...",
/// an SMTP reply).
pub fn explains(line: &str) -> bool {
    let l = line
        .trim_start_matches(|c: char| c.is_whitespace() || "=-*_#".contains(c))
        .to_lowercase();
    const OPENERS: &[&str] = &[
        "because",
        "reason",
        "due to",
        "error",
        "diagnostic",
        "remote",
        "the error",
        "smtp",
        "technical details",
        "status",
        "cause",
        "motivo",
        "razão",
        "razon",
        "razón",
        "causa",
        "grund",
        "ursache",
        "fehler",
        "raison",
        "motif",
        "erreur",
        "reden",
        "oorzaak",
        "fout",
        "原因",
        "理由",
        "причина",
        "ошибка",
    ];
    OPENERS.iter().any(|w| l.starts_with(w))
        || status::find_reply_code(&l).is_some()
        || status::find_enhanced(&l).is_some()
}

/// What a session transcript in a notice says of each recipient: the failing reply to its
/// `RCPT TO`, or to a command that failed for every recipient (`None`: the greeting, `HELO`,
/// `MAIL FROM`, `DATA`). Sendmail and Courier write `>>> CMD` and `<<< reply`, MDaemon
/// `--> CMD` and `<-- reply`. The text is `>>> CMD <<< reply`, so that the phase reads off it
/// as from the MTA's own transcript.
pub fn transcript_failures(notice: &str) -> Vec<(Option<String>, String)> {
    const MARKS: &[(&str, &str)] = &[(">>>", "<<<"), ("-->", "<--")];
    let mut out: Vec<(Option<String>, String)> = Vec::new();
    let mut index: HashMap<Option<String>, usize> = HashMap::new();
    for &(sent, reply) in MARKS {
        if !notice.contains(reply) {
            continue;
        }
        let mut rcpts: Vec<String> = Vec::new();
        let mut last: Option<String> = None; // the last command sent
        for line in notice.lines() {
            crate::analysis::budget::check();
            // A new session with the next MX host: what it says replaces what the last said.
            if line.contains("while talking to") {
                rcpts.clear();
                last = None;
                continue;
            }
            if let Some(at) = line.find(sent) {
                let cmd = line[at + sent.len()..].trim();
                if is_rcpt(cmd) {
                    rcpts.extend(addresses(&cmd[8..]).map(str::to_ascii_lowercase));
                }
                last = Some(cmd.to_string());
            } else if let Some(at) = line.find(reply) {
                let r = line[at + reply.len()..].trim();
                let b = r.as_bytes();
                let failing = b.len() >= 3
                    && matches!(b[0], b'4' | b'5')
                    && b[1..3].iter().all(u8::is_ascii_digit);
                if !failing {
                    continue;
                }
                let text = match &last {
                    Some(cmd) => format!("{sent} {cmd} {reply} {r}"),
                    None => format!("{reply} {r}"),
                };
                // A refused RCPT is its recipient's; anything else fails the whole message.
                let who = match last.as_deref() {
                    Some(cmd) if is_rcpt(cmd) => rcpts.last().cloned(),
                    _ => None,
                };
                match index.get(&who) {
                    Some(&k) => out[k].1 = text,
                    None => {
                        index.insert(who.clone(), out.len());
                        out.push((who, text));
                    }
                }
            }
        }
    }
    out
}

fn is_rcpt(cmd: &str) -> bool {
    cmd.len() > 8 && cmd[..8].eq_ignore_ascii_case("RCPT TO:")
}

/// Gives each recipient what a session transcript in the notice shows for it: its phase
/// always (when its own lines state none), and the failing reply itself when its own lines
/// carry no failing SMTP code (the notice lists it, the transcript explains it).
pub fn add_transcript_evidence(recipients: &mut [Recipient], notice: &str, action: &str) {
    let failures = transcript_failures(notice);
    if failures.is_empty() {
        return;
    }
    let by_address: HashMap<Option<&str>, &String> =
        failures.iter().map(|(a, t)| (a.as_deref(), t)).collect();
    for r in recipients.iter_mut() {
        let own = by_address
            .get(&Some(r.address.as_str()))
            .or_else(|| by_address.get(&None));
        let Some(&text) = own else {
            continue;
        };
        let failing = r.reply_code.is_some_and(|c| c >= 400)
            || r.status.as_deref().is_some_and(|s| !s.starts_with('2'));
        if !failing && let Some(t) = recipient(&r.address, text, action) {
            *r = Recipient {
                original_recipient: r.original_recipient.take(),
                final_recipient: r.final_recipient.take(),
                ..t
            };
        } else if r.phase.is_none() {
            r.phase = super::super::phase::transcript(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transcript_explains_the_recipient_it_names() {
        let notice = "Recipient: <ana@example.org>\n\n--- Session Transcript ---\n 11:22:02: --> MAIL From:<s@example.com>\n 11:22:02: <-- 250 Ok\n 11:22:02: --> RCPT To:<ana@example.org>\n 11:22:03: <-- 550 5.1.1 <ana@example.org>: User unknown\n";
        let f = transcript_failures(notice);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0.as_deref(), Some("ana@example.org"));
        let greeting = "... while talking to mx.example.org.:\n<<< 554 5.7.1 Listed at sorbs\n";
        assert_eq!(
            transcript_failures(greeting),
            vec![(None, "<<< 554 5.7.1 Listed at sorbs".to_string())]
        );
        let mut rs =
            vec![recipient("ana@example.org", "Recipient: <ana@example.org>", "failed").unwrap()];
        add_transcript_evidence(&mut rs, notice, "failed");
        assert_eq!(rs[0].status.as_deref(), Some("5.1.1"));
        assert_eq!(rs[0].phase, Some(super::super::super::Phase::RcptTo));
    }

    #[test]
    fn squash_joins_the_words_of_split_whitespace() {
        // Every ASCII control that is or is not whitespace (\x0B is, for split_whitespace),
        // and non-ASCII spaces (NEL, NBSP, ideographic) and non-spaces.
        const ALPHABET: &[&str] = &[
            "a", "b", "é", "\u{663}", " ", " ", "\t", "\n", "\r", "\u{b}", "\u{c}", "\u{1c}",
            "\u{85}", "\u{a0}", "\u{3000}", "\u{200b}", "-",
        ];
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..50_000 {
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            let len = (next() % 16) as usize;
            let text: String = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            let want = text.split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(squash(&text), want, "{text:?}");
        }
    }

    #[test]
    fn literals_answer_as_str_find_and_contains() {
        static ONE: Literals = Literals::new(&["abab"]);
        static TWO: Literals = Literals::new(&["at host", "program at"]);
        for text in [
            "",
            "aba",
            "abab",
            "xxabababab",
            "ab\u{e9}abab",
            "the program at host x",
            "at hos",
            "program a",
            "é program at",
        ] {
            assert_eq!(ONE.find(text), text.find("abab"), "{text:?}");
            assert_eq!(ONE.any_in(text), text.contains("abab"), "{text:?}");
            assert_eq!(
                TWO.any_in(text),
                text.contains("at host") || text.contains("program at"),
                "{text:?}"
            );
            let first = [text.find("at host"), text.find("program at")];
            assert_eq!(
                TWO.find(text),
                first.into_iter().flatten().min(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn quoted_received_tails_and_header_copies_are_not_notices() {
        assert!(is_header_line(
            "    for <carol@example.org>; Mon, 2 Nov 2026 10:00:00 +0000"
        ));
        assert!(!is_header_line("for <carol@example.org>; it failed"));
        let text = "The following address failed:\n\n<bob@rcpt.example>\n\nIncluded is a copy of the message header:\n---------\nReceived: from a by b\n    for <carol@example.org>; Mon, 2 Nov 2026\n";
        let (notice, returned) = split_original(text);
        assert!(notice.contains("bob@rcpt.example"));
        assert!(returned.is_some_and(|r| r.contains("carol@example.org")));
    }
}
