//! Failures as sentences an operator can act on. The libraries underneath describe failures
//! for programmers: rustls says `UnsupportedSignatureAlgorithmForPublicKeyContext { ... }` for
//! a self-signed certificate, async-imap hands back the server's answer as a Debug dump
//! (`Outcome { code: None, information: Some("...") }`), and the OS says "Connection refused".
//! Here each is turned into what happened and what to change, naming the config key.
//!
//! Used where the failures arise ([`super::connect`], [`super::connect::timed`],
//! [`super::auth`]), so that logs, `runs.errors` and `rebound check` all read the same.

use std::fmt;
use std::io;

use rustls::CertificateError;

use super::config::{MailboxConfig, Tls};

/// What the IMAP server answered when it refused a command (a tagged `NO` or `BAD`), in its
/// own words, without the client library's Debug formatting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSaid {
    /// `NO` or `BAD`.
    pub status: &'static str,
    /// The response code (`NONEXISTENT`, `AUTHENTICATIONFAILED`...), when the server gave one.
    pub code: Option<String>,
    /// The human-readable text.
    pub text: String,
}

impl fmt::Display for ServerSaid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the server answered {}", self.status)?;
        if let Some(code) = &self.code {
            write!(f, " [{code}]")?;
        }
        if self.text.is_empty() {
            Ok(())
        } else {
            write!(f, ": {}", self.text)
        }
    }
}

impl std::error::Error for ServerSaid {}

impl ServerSaid {
    /// True when the server says the mailbox (folder) does not exist.
    pub fn no_such_folder(&self) -> bool {
        let text = self.text.to_ascii_lowercase();
        self.code
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case("nonexistent"))
            || text.contains("doesn't exist")
            || text.contains("does not exist")
            || text.contains("no such mailbox")
            || text.contains("unknown mailbox")
            || text.contains("not found")
    }
}

/// An error of the IMAP call `what` (`SELECT INBOX`, `logging in as ...`) as a sentence: the
/// server's `NO`/`BAD` in its own words, with what to do when `what` selected a folder that
/// does not exist; other errors keep their text. Either way it starts with `what`.
pub fn imap(e: anyhow::Error, what: &str) -> anyhow::Error {
    let said = match e.downcast::<async_imap::error::Error>() {
        Ok(async_imap::error::Error::No(dump)) => server_said("NO", &dump),
        Ok(async_imap::error::Error::Bad(dump)) => server_said("BAD", &dump),
        Ok(async_imap::error::Error::ConnectionLost) => {
            return anyhow::anyhow!("{what}: the server closed the connection");
        }
        Ok(other) => return anyhow::Error::new(other).context(what.to_string()),
        Err(e) => return e.context(what.to_string()),
    };
    let selecting = what.starts_with("SELECT ") || what.starts_with("EXAMINE ");
    if selecting && said.no_such_folder() {
        let folder = what.split_once(' ').map_or("", |(_, f)| f);
        return anyhow::Error::new(said).context(format!(
            "no folder {folder:?} on the server: create it there, or correct or remove it in folders = [...]"
        ));
    }
    anyhow::Error::new(said).context(what.to_string())
}

/// Reads async-imap's `code: Some(X), info: Some("...")` or `outcome: Outcome { code: ...,
/// information: Some("...") }` back into the server's words.
fn server_said(status: &'static str, dump: &str) -> ServerSaid {
    let code = dump
        .find("code: Some(")
        .map(|at| &dump[at + "code: Some(".len()..])
        .map(|rest| {
            rest.split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap_or("")
                .to_ascii_uppercase()
        })
        .filter(|c| !c.is_empty());
    let text = ["information: Some(\"", "info: Some(\""]
        .iter()
        .find_map(|key| dump.find(key).map(|at| &dump[at + key.len()..]))
        .map(|rest| unescape(rest.rsplit_once("\")").map_or(rest, |(text, _)| text)))
        .unwrap_or_else(|| {
            if dump.contains("Some(") || dump.contains("None") {
                String::new()
            } else {
                dump.to_string()
            }
        });
    ServerSaid {
        status,
        code,
        text: without_timing(text.trim()).to_string(),
    }
}

/// Undoes the escapes of a Debug-formatted string.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push(' '),
            Some('r') | Some('t') => out.push(' '),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Dovecot appends how long a command took, `(0.001 + 0.000 secs).`: not for operators.
fn without_timing(text: &str) -> &str {
    if let Some(at) = text.rfind(" (")
        && text[at..].contains(" secs)")
    {
        return text[..at].trim_end();
    }
    text
}

/// A failed TCP connection as a sentence.
pub fn tcp(e: io::Error, cfg: &MailboxConfig) -> anyhow::Error {
    let (host, port) = (&cfg.host, cfg.port());
    let text = e.to_string();
    let sentence = match e.kind() {
        io::ErrorKind::ConnectionRefused => format!(
            "connection refused: nothing listens on {host}:{port} (is the server running, and is port = {port} right? 993 is IMAP over TLS, 143 plain IMAP with STARTTLS)"
        ),
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => format!(
            "{host} cannot be reached from this machine ({text}): check host = {host:?} and the network or firewall"
        ),
        _ if text.contains("lookup") || text.contains("resolve") || text.contains("not known") => {
            format!(
                "the host name {host:?} could not be resolved ({text}): check host = {host:?} and this machine's DNS"
            )
        }
        _ => format!("{text} (check host = {host:?} and port = {port})"),
    };
    anyhow::anyhow!(sentence)
}

/// A failed TLS handshake as a sentence. rustls' error travels inside the `io::Error`.
pub fn tls(e: io::Error, cfg: &MailboxConfig) -> anyhow::Error {
    let name = &cfg.name;
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let sentence = match rustls_error {
        Some(rustls::Error::InvalidCertificate(c)) => certificate(c, cfg),
        Some(rustls::Error::InvalidMessage(_)) | Some(rustls::Error::InappropriateMessage { .. }) => {
            match cfg.tls {
                Tls::Implicit => format!(
                    "the server at {}:{} does not speak TLS from the first byte: for port 143 set tls = \"starttls\", or use the server's implicit-TLS port (usually 993)",
                    cfg.host,
                    cfg.port()
                ),
                _ => format!(
                    "the TLS handshake with {} failed: the server sent something that is not TLS",
                    cfg.host
                ),
            }
        }
        Some(rustls::Error::AlertReceived(alert)) => format!(
            "the server refused the TLS handshake (alert: {alert:?}): it may require TLS settings rebound does not offer; check the server's TLS configuration"
        ),
        Some(rustls::Error::PeerIncompatible(_)) => {
            "the server offers no TLS version or cipher rebound accepts (TLS 1.2 or 1.3 with modern ciphers): update the server's TLS configuration".to_string()
        }
        Some(other) => format!("the TLS handshake failed: {other}"),
        None if e.kind() == io::ErrorKind::UnexpectedEof => format!(
            "the server closed the connection during the TLS handshake: is port = {} a TLS port for mailbox {name}?",
            cfg.port()
        ),
        None => format!("the TLS handshake failed: {e}"),
    };
    anyhow::anyhow!(sentence)
}

fn certificate(c: &CertificateError, cfg: &MailboxConfig) -> String {
    use CertificateError as C;
    let host = &cfg.host;
    match c {
        C::NotValidForName | C::NotValidForNameContext { .. } => format!(
            "the server's certificate is not valid for the name {host:?}: set host to a name the certificate lists (as clients see the server)"
        ),
        C::Expired | C::ExpiredContext { .. } => {
            "the server's certificate has expired (or this machine's clock is wrong): renew it on the server".to_string()
        }
        C::NotValidYet | C::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet (is this machine's clock right?)".to_string()
        }
        C::Revoked => "the server's certificate has been revoked by its CA".to_string(),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "the server's certificate is not meant for a server (wrong key usage)".to_string()
        }
        // Not signed by a CA we trust: a private CA, or a self-signed certificate (rustls reports
        // the latter as an unknown issuer, a bad signature or an unsupported algorithm, since it
        // tries to verify the certificate against itself).
        _ => match &cfg.ca_file {
            None => format!(
                "the server's certificate is not signed by a trusted CA: set ca_file = \"/path/to/ca.pem\" in the [[mailbox]] of {}, the CA that signed it (for a private CA) or the certificate itself (self-signed)",
                cfg.name
            ),
            Some(ca) => format!(
                "the server's certificate is not signed by the CA in ca_file = {:?} (nor by a system CA): put the CA that signed the server's certificate in that file",
                ca.display()
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_words_without_the_debug_dump() {
        let s = server_said(
            "NO",
            "outcome: Outcome { code: None, information: Some(\"Mailbox doesn't exist: Nope (0.001 + 0.001 secs).\") }",
        );
        assert_eq!(
            s.to_string(),
            "the server answered NO: Mailbox doesn't exist: Nope"
        );
        assert!(s.no_such_folder());
        let s = server_said(
            "NO",
            "code: Some(AuthenticationFailed), info: Some(\"Authentication failed.\")",
        );
        assert_eq!(
            s.to_string(),
            "the server answered NO [AUTHENTICATIONFAILED]: Authentication failed."
        );
        let s = server_said("BAD", "code: None, info: Some(\"say \\\"hi\\\"\")");
        assert_eq!(s.text, "say \"hi\"");
        let s = server_said("NO", "code: None, info: None");
        assert_eq!(s.to_string(), "the server answered NO");
    }
}
