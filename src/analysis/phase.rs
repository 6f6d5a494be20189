//! The SMTP phase in which a delivery failed: a first-class fact of every verdict.
//!
//! Who was refused depends on *when* the receiving server said no. Before `RCPT TO` (at the
//! greeting, after `HELO`/`EHLO` or `STARTTLS`, in reply to `MAIL FROM`) the server cannot be
//! judging the recipient: it refuses the sending host or the sender. After `RCPT TO` the reply
//! is about the address; after `DATA` or the end of the data, about the message. A failure to
//! find a route (DNS) happens before any session at all.
//!
//! Each MTA says which phase failed in its own words; [`PHRASES`] lists them with where they
//! come from (the MTAs' source code), and [`detect`] finds the first one in a diagnostic.
//! Sendmail- and Courier-style session transcripts (`>>> RCPT To:<a@b>` / `<<< 550 ...`) are
//! read by [`transcript`]: the phase is the last command sent before the failing reply.
//! [`refine`] is what the phase changes in a verdict.

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::{Deserialize, Serialize};

use super::verdict::{Label, Reason};

/// The step of delivery at which a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Finding where to deliver (DNS, MX, routing) failed: no SMTP session took place.
    Routing,
    /// The TCP connection or the server's greeting banner.
    Connect,
    /// `HELO`, `EHLO` or `LHLO` (and the `AUTH`/`XCLIENT` steps before a transaction).
    Helo,
    /// `STARTTLS` or the TLS handshake.
    Starttls,
    /// `MAIL FROM`: the envelope sender.
    MailFrom,
    /// `RCPT TO`: the recipient.
    RcptTo,
    /// The `DATA` command itself.
    Data,
    /// After the message body was sent (`.` at the end of `DATA`, or `BDAT ... LAST`).
    EndOfData,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::Routing,
        Phase::Connect,
        Phase::Helo,
        Phase::Starttls,
        Phase::MailFrom,
        Phase::RcptTo,
        Phase::Data,
        Phase::EndOfData,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Routing => "routing",
            Phase::Connect => "connect",
            Phase::Helo => "helo",
            Phase::Starttls => "starttls",
            Phase::MailFrom => "mail_from",
            Phase::RcptTo => "rcpt_to",
            Phase::Data => "data",
            Phase::EndOfData => "end_of_data",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// True for the phases before `RCPT TO`, in which a refusal cannot be about the recipient.
    pub fn before_recipient(self) -> bool {
        matches!(
            self,
            Phase::Connect | Phase::Helo | Phase::Starttls | Phase::MailFrom
        )
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What MTAs write to say in which command a delivery failed (compared in lowercase; the
/// first phrase found in the text wins, and a longer phrase wins over its own prefix). These
/// name the command, so they are believed before [`SYMPTOMS`].
pub const PHRASES: &[(&str, Phase)] = &[
    // Postfix smtp(8)/lmtp(8), src/smtp/smtp_proto.c and smtp_chat.c: the remote reply is
    // followed by "(in reply to <command> command)"; the greeting by "refused to talk to me"
    // (which Postfix also writes for a refused HELO: read as the connection).
    ("in reply to rcpt to command", Phase::RcptTo),
    ("in reply to mail from command", Phase::MailFrom),
    ("in reply to end of data command", Phase::EndOfData),
    ("in reply to data command", Phase::Data),
    ("in reply to bdat command", Phase::EndOfData),
    ("in reply to ehlo command", Phase::Helo),
    ("in reply to helo command", Phase::Helo),
    ("in reply to lhlo command", Phase::Helo),
    ("in reply to xclient command", Phase::Helo),
    ("in reply to xforward", Phase::Helo),
    ("in reply to auth command", Phase::Helo),
    ("in reply to starttls command", Phase::Starttls),
    ("refused to talk to me", Phase::Connect),
    // Postfix: "lost connection with HOST while <state>", "conversation with HOST timed out
    // while <state>" (smtp_proto.c names the session state).
    (
        "while receiving the initial server greeting",
        Phase::Connect,
    ),
    ("while performing the ehlo handshake", Phase::Helo),
    ("while performing the helo handshake", Phase::Helo),
    ("while performing the lhlo handshake", Phase::Helo),
    ("while performing the starttls handshake", Phase::Starttls),
    ("while receiving the starttls response", Phase::Starttls),
    ("while sending mail from", Phase::MailFrom),
    ("while sending rcpt to", Phase::RcptTo),
    ("while sending data command", Phase::Data),
    ("while sending message body", Phase::EndOfData),
    ("while sending end of data", Phase::EndOfData),
    // Postfix smtp_connect.c: "connect to HOST[ADDR]:PORT: Connection refused" (timed out,
    // no route to host, network is unreachable).
    ("connect to ", Phase::Connect),
    // Postfix smtp_proto.c: TLS required but refused or failed.
    ("refused to start tls", Phase::Starttls),
    ("cannot start tls", Phase::Starttls),
    ("tls is required, but was not offered", Phase::Starttls),
    // Exim transports/smtp.c: "SMTP error from remote mail server after <command>"; with
    // PIPELINING the command is "pipelined <command>"; LMTP and PRDR "error after DATA".
    ("after rcpt to", Phase::RcptTo),
    ("after pipelined rcpt to", Phase::RcptTo),
    ("after mail from", Phase::MailFrom),
    ("after pipelined mail from", Phase::MailFrom),
    ("after end of data", Phase::EndOfData),
    ("after pipelined end of data", Phase::EndOfData),
    ("after sending data block", Phase::EndOfData),
    ("after pipelined data", Phase::Data),
    ("after data", Phase::Data),
    ("after bdat", Phase::EndOfData),
    ("after initial connection", Phase::Connect),
    ("after ehlo", Phase::Helo),
    ("after helo", Phase::Helo),
    ("after lhlo", Phase::Helo),
    ("after auth", Phase::Helo),
    ("after starttls", Phase::Starttls),
    // qmail-remote.c: what it writes for each step of the session.
    ("but greeting failed", Phase::Connect),
    ("but my name was rejected", Phase::Helo),
    ("but sender was rejected", Phase::MailFrom),
    ("does not like recipient", Phase::RcptTo),
    ("failed on data command", Phase::Data),
    ("failed after i sent the message", Phase::EndOfData),
    // OpenSMTPD mta_session.c: refusals before the transaction.
    ("banner rejected", Phase::Connect),
    ("ehlo rejected", Phase::Helo),
    ("helo rejected", Phase::Helo),
    ("starttls rejected", Phase::Starttls),
    // Yahoo's outbound notices tag the remote reply with the command: "[RCPT_TO]", "[BODY]".
    ("[rcpt_to]", Phase::RcptTo),
    ("[mail_from]", Phase::MailFrom),
    ("[body]", Phase::EndOfData),
    ("[data]", Phase::Data),
    // hMailServer SMTPClientConnection.cpp: "hMailServer sent: RCPT TO:<a@b>" before the reply;
    // GroupWise's transcript "Command: RCPT TO:<a@b> Response: 550 ..."; GMX and others
    // "SMTP error from remote server for RCPT TO command".
    ("sent: rcpt to", Phase::RcptTo),
    ("sent: mail from", Phase::MailFrom),
    ("sent: data", Phase::Data),
    ("sent: ehlo", Phase::Helo),
    ("sent: helo", Phase::Helo),
    ("command: rcpt to", Phase::RcptTo),
    ("command: mail from", Phase::MailFrom),
    ("command: data", Phase::Data),
    ("command: ehlo", Phase::Helo),
    ("command: helo", Phase::Helo),
    ("for rcpt to command", Phase::RcptTo),
    ("for mail from command", Phase::MailFrom),
    ("for data command", Phase::Data),
    ("for end of data", Phase::EndOfData),
    // Plain words used by many others ("rejected at RCPT").
    ("rejected after data", Phase::EndOfData),
    ("rejected after rcpt", Phase::RcptTo),
    ("at rcpt to", Phase::RcptTo),
    ("at mail from", Phase::MailFrom),
];

/// What a failure looked like when no command names its phase: a DNS answer means the
/// routing failed, a connection error the connection. Read only when [`PHRASES`] found nothing
/// (a remote's "550 Domain does not exist" in reply to RCPT TO is a refusal at RCPT TO).
pub const SYMPTOMS: &[(&str, Phase)] = &[
    // Postfix smtp_addr.c / dns_lookup.c: the MX or address lookup failed; a null MX.
    ("host or domain name not found", Phase::Routing),
    ("name service error for", Phase::Routing),
    ("does not accept mail (nullmx)", Phase::Routing),
    ("mail for ", Phase::Routing), // completed by "loops back to myself" below
    // Exim routers/dnslookup.c and route.c: no route to the domain; null MX.
    ("unrouteable address", Phase::Routing),
    ("unroutable address", Phase::Routing),
    (
        "all relevant mx records point to non-existent hosts",
        Phase::Routing,
    ),
    ("host lookup did not complete", Phase::Routing),
    ("indicated no smtp service", Phase::Routing),
    // qmail-remote.c: DNS failures and a connection that could not be made.
    ("couldn't find any host named", Phase::Routing),
    ("couldn't find any host by that name", Phase::Routing),
    (
        "couldn't find a mail exchanger or ip address",
        Phase::Routing,
    ),
    ("cname lookup failed", Phase::Routing),
    (
        "wasn't able to establish an smtp connection",
        Phase::Connect,
    ),
    // Sendmail deliver.c, err.c, domain.c: DNS failures, null MX (556 "MX 0 .").
    ("host unknown (name server", Phase::Routing),
    ("host name lookup failure", Phase::Routing),
    ("no mx host found", Phase::Routing),
    ("host does not accept mail", Phase::Routing),
    // Courier module.esmtp/libesmtp.C and OpenSMTPD mta.c DNS results.
    ("no such domain", Phase::Routing),
    ("domain does not receive mail", Phase::Routing),
    ("dns lookup failed", Phase::Routing),
    ("domain does not exist", Phase::Routing),
    ("temporary failure in mx lookup", Phase::Routing),
    ("no mx found for", Phase::Routing),
    ("domain does not accept mail", Phase::Routing),
    // Exchange SMTPSEND.DNS.NonExistentDomain (5.4.4).
    ("nonexistentdomain", Phase::Routing),
    // hMailServer ExternalDelivery.cpp: no MX and no address for the domain.
    ("no mail servers appear to exist", Phase::Routing),
    // Connection errors (strerror texts, and what others write for them).
    ("connection refused", Phase::Connect),
    ("unable to connect", Phase::Connect),
    ("could not connect", Phase::Connect),
    ("is not responding", Phase::Connect),
    ("connection timed out", Phase::Connect),
    ("no route to host", Phase::Connect),
    ("network is unreachable", Phase::Connect),
];

fn searcher(phrases: &[(&str, Phase)]) -> AhoCorasick {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostLongest)
        .build(phrases.iter().map(|(p, _)| p))
        .expect("phase phrases compile")
}

static COMMANDS: LazyLock<AhoCorasick> = LazyLock::new(|| searcher(PHRASES));
static LOOKS: LazyLock<AhoCorasick> = LazyLock::new(|| searcher(SYMPTOMS));

/// The phase a diagnostic states, if any: a session transcript first (it names the exact
/// command), else the first phrase of [`PHRASES`] in the text, else of [`SYMPTOMS`].
pub fn detect(text: &str) -> Option<Phase> {
    stated(text).or_else(|| first(text, &LOOKS, SYMPTOMS))
}

/// Whether a notice's text may state a phase somewhere (wrapped over lines, as templates
/// print it): the cheap test before reading its recipients' lines.
pub fn may_state(text: &str) -> bool {
    static HINTS: LazyLock<AhoCorasick> = LazyLock::new(|| {
        AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .build([
                "in reply",
                "after RCPT",
                "after MAIL",
                "after end",
                "after DATA",
                "after pipelined",
                "after initial",
                "after EHLO",
                "after HELO",
                "after STARTTLS",
                "<<<",
                "<--",
                "Connected to",
                "does not like",
                "failed on DATA",
                "failed after",
                "refused to talk",
                "sent: ",
                "Command:",
            ])
            .expect("phase hints compile")
    });
    HINTS.is_match(text)
}

/// The phase a diagnostic names by its command (a transcript or a phrase of [`PHRASES`]), not
/// only by what the failure looked like: what a report's bare reply can be completed with.
pub fn stated(text: &str) -> Option<Phase> {
    transcript(text).or_else(|| first(text, &COMMANDS, PHRASES))
}

fn first(text: &str, searcher: &AhoCorasick, phrases: &[(&str, Phase)]) -> Option<Phase> {
    for m in searcher.find_iter(text) {
        let (phrase, phase) = phrases[m.pattern().as_usize()];
        // "mail for DOMAIN loops back to myself" (Postfix) is a routing failure; other
        // "mail for" is no statement at all.
        if phrase == "mail for " {
            let rest = &text[m.end()..];
            let rest = &rest[..rest.len().min(200)];
            if rest.to_ascii_lowercase().contains("loops back to myself") {
                return Some(phase);
            }
            continue;
        }
        // "connect to " must be Postfix's "connect to HOST[ADDR]:PORT: <error>", not prose.
        if phrase == "connect to " && !connect_error(&text[m.end()..]) {
            continue;
        }
        // Courier's "DNS lookup failed." is the recipient domain's; a receiver's "Reverse DNS
        // lookup failed for host ..." is about the sending host, at whatever command.
        if phrase == "dns lookup failed"
            && text[..m.start()].to_ascii_lowercase().ends_with("reverse ")
        {
            continue;
        }
        return Some(phase);
    }
    None
}

/// True if the text after "connect to " reads `HOST[...]:PORT: error` or `HOST: error`.
fn connect_error(rest: &str) -> bool {
    let head = rest.split_whitespace().next().unwrap_or("");
    head.ends_with(':') && (head.contains('[') || head.contains('.'))
}

/// The phase of a session transcript as Sendmail and Courier write it: commands sent are
/// `>>> CMD`, replies `<<< CODE text` (MDaemon: `--> CMD`, `<-- CODE text`). The failing
/// reply is the first `<<< 4xx/5xx`; the phase is the last command before it, or the
/// greeting when none was sent.
pub fn transcript(text: &str) -> Option<Phase> {
    // Sendmail tries the MX hosts in turn, one "... while talking to HOST:" session each: the
    // last session is the one that decided.
    let text = match text.rfind("while talking to") {
        Some(at) => &text[at..],
        None => text,
    };
    transcript_with(text, ">>>", "<<<").or_else(|| transcript_with(text, "-->", "<--"))
}

fn transcript_with(text: &str, sent_mark: &str, reply_mark: &str) -> Option<Phase> {
    let reply = failing_reply(text, reply_mark)?;
    let before = &text[..reply];
    let Some(sent) = before.rfind(sent_mark) else {
        // A refusal with no command before it: the greeting (Sendmail writes the reply
        // after "... while talking to HOST:").
        return Some(Phase::Connect);
    };
    let cmd = before[sent + sent_mark.len()..].trim_start();
    let word = |w: &str| cmd.len() >= w.len() && cmd[..w.len()].eq_ignore_ascii_case(w);
    Some(if word("RCPT") {
        Phase::RcptTo
    } else if word("MAIL") {
        Phase::MailFrom
    } else if word("DATA") {
        Phase::Data
    } else if word("BDAT") || cmd.starts_with('.') {
        Phase::EndOfData
    } else if word("EHLO") || word("HELO") || word("LHLO") || word("AUTH") {
        Phase::Helo
    } else if word("STARTTLS") {
        Phase::Starttls
    } else if word("(initial greeting)") {
        // Courier module.esmtp logs the greeting as a command it "sent".
        Phase::Connect
    } else {
        return None;
    })
}

/// The byte offset of the first `<<< 4xx`/`<<< 5xx` reply in a transcript.
fn failing_reply(text: &str, mark: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(off) = text[from..].find(mark) {
        let at = from + off;
        let rest = text[at + mark.len()..].trim_start();
        let b = rest.as_bytes();
        if b.len() >= 3 && matches!(b[0], b'4' | b'5') && b[1..3].iter().all(u8::is_ascii_digit) {
            return Some(at);
        }
        from = at + mark.len();
    }
    None
}

/// What the phase changes in a verdict (`reason` as the rules decided it, `class` the failure
/// class). Returns the reason to use instead, with the id of this step, or `None` to keep it.
///
/// `reply_code` is the remote server's reply, when there was one.
///
/// - Before `RCPT TO`, a refusal cannot be about the recipient: whatever the words said about
///   an address (user unknown, mailbox full, domain not found: the *sender's* domain, at
///   `MAIL FROM`) or when nothing specific was said, the sender is refused. Kept: every refusal
///   of the sender the rules already named, and temporary conditions of the server itself
///   (rate limiting, a full or failing system, network trouble, expiry), which are no verdict
///   on anyone.
/// - After the data, a permanent refusal that names no cause was a refusal of the message:
///   its content. Address-level words still count there (an LMTP server reports a full
///   mailbox at the end of the data).
pub fn refine(
    phase: Phase,
    reason: Reason,
    class: Option<char>,
    reply_code: Option<u16>,
) -> Option<(Reason, String)> {
    let id = |r: Reason| Some((r, format!("phase={phase}")));
    if phase.before_recipient() {
        // A notice that gave up after retrying a refusal the server made permanently (qmail
        // retries a HELO refused with 501, then writes "in the queue too long") reports the
        // refusal, not the wait.
        // (At the connection, "expired" follows connection failures: those stay soft.)
        let refused_for_good = reason == Reason::Expired
            && phase != Phase::Connect
            && class == Some('5')
            && reply_code.is_some_and(|c| c >= 500);
        if reason.default_label() == Some(Label::Blocked)
            || server_condition(reason) && !refused_for_good
        {
            return None;
        }
        return id(match phase {
            Phase::MailFrom => Reason::SenderRejected,
            Phase::Starttls => Reason::SecurityError,
            _ => Reason::Blocklisted,
        });
    }
    if matches!(phase, Phase::Data | Phase::EndOfData)
        && reason == Reason::Undetermined
        && class == Some('5')
    {
        return id(Reason::ContentRejected);
    }
    None
}

/// Reasons that describe the receiving server's own state, not a judgement on a party.
fn server_condition(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::RateLimited
            | Reason::SystemFull
            | Reason::SystemError
            | Reason::NetworkError
            | Reason::Expired
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mta_states_its_phase() {
        let cases = [
            (
                "host mx.example.org[192.0.2.1] said: 550 5.1.1 <a@example.org>: Recipient address rejected: User unknown (in reply to RCPT TO command)",
                Some(Phase::RcptTo),
            ),
            (
                "host mx.example.org[192.0.2.1] said: 554 5.7.1 Spam (in reply to end of DATA command)",
                Some(Phase::EndOfData),
            ),
            (
                "host mx.example.org[192.0.2.1] refused to talk to me: 554 5.7.1 Listed",
                Some(Phase::Connect),
            ),
            (
                "SMTP error from remote mail server after MAIL FROM:<s@example.com> SIZE=2048: 550 rejected",
                Some(Phase::MailFrom),
            ),
            (
                "SMTP error from remote mail server after pipelined RCPT TO:<a@example.org>: 550 no",
                Some(Phase::RcptTo),
            ),
            (
                "SMTP error from remote mail server after end of data: 554 5.7.1 rejected",
                Some(Phase::EndOfData),
            ),
            (
                "Connected to 192.0.2.1 but sender was rejected. Remote host said: 553 sorry",
                Some(Phase::MailFrom),
            ),
            (
                "192.0.2.1 does not like recipient. Remote host said: 550 no such user",
                Some(Phase::RcptTo),
            ),
            (
                "connect to mx.example.org[192.0.2.1]:25: Connection timed out",
                Some(Phase::Connect),
            ),
            (
                "Host or domain name not found. Name service error for name=example.org type=MX: Host not found, try again",
                Some(Phase::Routing),
            ),
            ("550 5.1.1 User unknown", None),
            (
                "Please connect to our web site to find out more: 550 no",
                None,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(detect(text), want, "{text}");
        }
    }

    #[test]
    fn a_transcript_names_the_last_command_before_the_failure() {
        let rcpt = "... while talking to mx.example.org.: >>> MAIL From:<s@example.com> SIZE=100 <<< 250 ok >>> RCPT To:<a@example.org> <<< 550 5.1.1 <a@example.org>... User unknown";
        assert_eq!(transcript(rcpt), Some(Phase::RcptTo));
        let eod = ">>> DATA <<< 354 go ahead >>> . <<< 554 5.7.1 Message refused";
        assert_eq!(transcript(eod), Some(Phase::EndOfData));
        let greeting = "... while talking to mx.example.org.: <<< 554 mx.example.org Access denied";
        assert_eq!(transcript(greeting), Some(Phase::Connect));
        let second_mx = "... while talking to mx1.example.org.: <<< 450 busy ... while talking to mx2.example.org.: >>> RCPT To:<a@example.org> <<< 550 5.1.1 unknown";
        assert_eq!(
            transcript(second_mx),
            Some(Phase::RcptTo),
            "the last host decided"
        );
        assert_eq!(transcript(">>> RCPT To:<a@example.org> <<< 250 ok"), None);
    }

    #[test]
    fn before_the_recipient_a_refusal_is_of_the_sender() {
        let r = refine(Phase::MailFrom, Reason::UserUnknown, Some('5'), Some(550));
        assert_eq!(
            r,
            Some((Reason::SenderRejected, "phase=mail_from".to_string()))
        );
        assert_eq!(
            refine(Phase::Connect, Reason::Undetermined, Some('5'), Some(554)).map(|r| r.0),
            Some(Reason::Blocklisted)
        );
        assert_eq!(
            refine(Phase::Connect, Reason::RateLimited, Some('4'), Some(421)),
            None
        );
        assert_eq!(
            refine(Phase::Connect, Reason::SpamDetected, Some('5'), Some(554)),
            None
        );
        assert_eq!(
            refine(Phase::Helo, Reason::Expired, Some('5'), Some(501)).map(|r| r.0),
            Some(Reason::Blocklisted),
            "a permanent refusal retried until expiry is still a refusal"
        );
        assert_eq!(
            refine(Phase::Connect, Reason::Expired, Some('4'), None),
            None
        );
        assert_eq!(
            refine(Phase::RcptTo, Reason::UserUnknown, Some('5'), Some(550)),
            None
        );
        assert_eq!(
            refine(Phase::EndOfData, Reason::Undetermined, Some('5'), Some(554)).map(|r| r.0),
            Some(Reason::ContentRejected)
        );
        assert_eq!(
            refine(Phase::EndOfData, Reason::MailboxFull, Some('5'), Some(552)),
            None
        );
        assert_eq!(
            refine(Phase::EndOfData, Reason::Undetermined, Some('4'), Some(451)),
            None
        );
    }
}
