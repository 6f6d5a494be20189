//! Opening a connection: TCP, then implicit TLS, STARTTLS or (loopback only) nothing, then the
//! greeting. TLS uses rustls with the system roots plus an optional extra CA file.
//!
//! async-imap has no timeouts of its own, so every step here, and every IMAP call elsewhere,
//! goes through [`timed`]. After a timeout the session is never reused: a late answer would be
//! read as the answer to the next command.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use async_imap::imap_proto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::config::{MailboxConfig, Tls, is_loopback};

/// Any byte stream an IMAP session can run over (plain TCP or TLS), so that one session type
/// serves every [`Tls`] mode.
pub trait ImapIo: AsyncRead + AsyncWrite + Unpin + Send + Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Debug> ImapIo for T {}

pub type Io = Box<dyn ImapIo>;
pub type Client = async_imap::Client<Io>;
pub type Session = async_imap::Session<Io>;

/// Runs one IMAP step with a deadline; a timeout becomes an error naming the step.
pub async fn timed<T, E>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, E>>,
) -> anyhow::Result<T>
where
    E: Into<anyhow::Error>,
{
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(|e| super::diagnosis::imap(e.into(), what)),
        Err(_) => bail!(
            "{what}: no answer within {} s (timeout_secs)",
            limit.as_secs()
        ),
    }
}

/// Builds the rustls configuration: system roots, plus the mailbox's extra CA file if any.
pub fn tls_config(cfg: &MailboxConfig) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = &cfg.ca_file {
        for cert in CertificateDer::pem_file_iter(path)
            .with_context(|| format!("reading CA file {}", path.display()))?
        {
            let cert = cert.with_context(|| format!("parsing CA file {}", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("adding CA from {}", path.display()))?;
        }
    } else if added == 0 {
        bail!(
            "no system CA certificates found (install ca-certificates) and no ca_file configured"
        );
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(config)
}

/// Connects, secures the connection as configured and reads the greeting. The returned client
/// is ready for LOGIN or AUTHENTICATE.
pub async fn connect(cfg: &MailboxConfig) -> anyhow::Result<Client> {
    let limit = cfg.timeout();
    let port = cfg.port();
    if cfg.tls == Tls::None && !is_loopback(&cfg.host) {
        bail!("refusing an unencrypted connection to {}", cfg.host);
    }
    let tcp = timed(
        limit,
        &format!("connecting to {}:{port}", cfg.host),
        async {
            TcpStream::connect((cfg.host.as_str(), port))
                .await
                .map_err(|e| super::diagnosis::tcp(e, cfg))
        },
    )
    .await?;
    tcp.set_nodelay(true)?;
    match cfg.tls {
        Tls::None => {
            let mut client = Client::new(Box::new(tcp) as Io);
            greeting(&mut client, limit)
                .await
                .map_err(|e| plain_greeting_hint(e, cfg))?;
            Ok(client)
        }
        Tls::Implicit => {
            let tls = handshake(cfg, tcp).await?;
            let mut client = Client::new(Box::new(tls) as Io);
            greeting(&mut client, limit).await?;
            Ok(client)
        }
        Tls::Starttls => {
            let mut client = async_imap::Client::new(tcp);
            let mut greeted = false;
            let first = timed(limit, "reading the greeting", client.read_response())
                .await
                .map_err(|e| plain_greeting_hint(e, cfg))?;
            match first {
                Some(r)
                    if matches!(
                        r.parsed(),
                        imap_proto::Response::Data {
                            status: imap_proto::Status::Ok,
                            ..
                        }
                    ) =>
                {
                    greeted = true
                }
                Some(_) => {}
                None => {}
            }
            if !greeted {
                bail!(
                    "{}:{port} did not greet as an IMAP server: check port = {port} (143 for STARTTLS)",
                    cfg.host
                );
            }
            timed(
                limit,
                "STARTTLS",
                client.run_command_and_check_ok("STARTTLS", None),
            )
            .await?;
            let tcp = client.into_inner();
            let tls = handshake(cfg, tcp).await?;
            // No second greeting after STARTTLS (RFC 3501 6.2.1).
            Ok(Client::new(Box::new(tls) as Io))
        }
    }
}

async fn handshake(
    cfg: &MailboxConfig,
    tcp: TcpStream,
) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = TlsConnector::from(Arc::new(tls_config(cfg)?));
    let host = cfg
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let name =
        ServerName::try_from(host).map_err(|e| anyhow!("invalid host name {:?}: {e}", cfg.host))?;
    timed(
        cfg.timeout(),
        &format!("TLS handshake with {}", cfg.host),
        async {
            connector
                .connect(name, tcp)
                .await
                .map_err(|e| super::diagnosis::tls(e, cfg))
        },
    )
    .await
}

/// A plain connection that gets no greeting is most often a TLS port: the server waits for
/// the client's TLS hello while the client waits for the greeting.
fn plain_greeting_hint(e: anyhow::Error, cfg: &MailboxConfig) -> anyhow::Error {
    if e.to_string().contains("no answer within") {
        e.context(format!(
            "no IMAP greeting from {}:{}: if this port speaks TLS from the first byte (usually 993), set tls = \"implicit\"",
            cfg.host,
            cfg.port()
        ))
    } else {
        e
    }
}

async fn greeting(client: &mut Client, limit: Duration) -> anyhow::Result<()> {
    match timed(limit, "reading the greeting", client.read_response()).await? {
        Some(r) => match r.parsed() {
            imap_proto::Response::Data {
                status: imap_proto::Status::Ok,
                ..
            } => Ok(()),
            imap_proto::Response::Data {
                status: imap_proto::Status::Bye,
                outcome,
                ..
            } => bail!(
                "the server said BYE instead of a greeting: {}",
                outcome
                    .information
                    .as_deref()
                    .unwrap_or("(no reason given)")
            ),
            _ => bail!(
                "the server did not greet as an IMAP server: is port right (993 for IMAP over TLS, 143 for STARTTLS)?"
            ),
        },
        None => bail!("connection closed before the greeting"),
    }
}
