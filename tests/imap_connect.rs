//! Connecting and logging in to a real Dovecot: plain (loopback), implicit TLS and STARTTLS
//! with a self-signed certificate, LOGIN and XOAUTH2, and the errors an operator sees.

mod common;

use common::*;
use rebound::imap::{Auth, MailboxConfig, Tls};

fn config(user: &User, tls: Tls, auth: Auth) -> MailboxConfig {
    let s = server();
    let port = if tls == Tls::Implicit {
        s.tls_port
    } else {
        s.port
    };
    let host = if tls == Tls::None {
        "127.0.0.1"
    } else {
        "localhost"
    };
    let text = format!(
        "name='t'\nhost='{host}'\nport={port}\nusername='{}'\nauth={{method='password_env', var='UNUSED'}}\ntimeout_secs=10\n",
        user.name
    );
    let mut cfg: MailboxConfig = toml::from_str(&text).unwrap();
    cfg.tls = tls;
    cfg.auth = auth;
    cfg.ca_file = Some(s.ca_file.clone());
    cfg
}

fn pw_command(user: &User) -> Auth {
    Auth::PasswordCommand {
        command: format!("printf '%s\\n' {}", user.password),
    }
}

#[tokio::test]
async fn every_tls_mode_logs_in_and_selects() {
    let user = server().add_user("connect");
    for tls in [Tls::None, Tls::Implicit, Tls::Starttls] {
        let cfg = config(&user, tls, pw_command(&user));
        cfg.validate().unwrap();
        let mut s = rebound::imap::poll::open(&cfg)
            .await
            .unwrap_or_else(|e| panic!("{tls:?}: {e:#}"));
        let mb = s.select("INBOX").await.unwrap();
        assert!(mb.uid_validity.is_some(), "{tls:?}");
        s.logout().await.unwrap();
    }
}

#[tokio::test]
async fn xoauth2_token_from_a_command() {
    let user = server().add_user("oauth");
    // Dovecot checks a bearer token like a password: the fixture's token is the password.
    let cfg = config(
        &user,
        Tls::Implicit,
        Auth::Xoauth2 {
            token_command: format!("echo {}", user.password),
        },
    );
    let mut s = rebound::imap::poll::open(&cfg).await.unwrap();
    s.select("INBOX").await.unwrap();
    let bad = config(
        &user,
        Tls::Implicit,
        Auth::Xoauth2 {
            token_command: "echo expired-token".into(),
        },
    );
    let err = format!("{:#}", rebound::imap::poll::open(&bad).await.unwrap_err());
    assert!(err.contains("authentication failed"), "{err}");
}

#[tokio::test]
async fn untrusted_certificate_and_wrong_name_are_refused() {
    let user = server().add_user("tlsfail");
    let mut cfg = config(&user, Tls::Implicit, pw_command(&user));
    cfg.ca_file = None;
    let err = format!("{:#}", rebound::imap::poll::open(&cfg).await.unwrap_err());
    assert!(
        err.contains("TLS handshake") && err.to_lowercase().contains("certificate"),
        "{err}"
    );
    let mut cfg = config(&user, Tls::Starttls, pw_command(&user));
    cfg.host = "127.0.0.2".into(); // not in the certificate's names (and Dovecot only listens on .1)
    assert!(rebound::imap::poll::open(&cfg).await.is_err());
}

#[tokio::test]
async fn wrong_password_and_missing_secret_say_so() {
    let user = server().add_user("wrongpw");
    let cfg = config(
        &user,
        Tls::Implicit,
        Auth::PasswordCommand {
            command: "echo nope".into(),
        },
    );
    let refused = rebound::imap::poll::open(&cfg).await.unwrap_err();
    // The caller tells an auth failure (never retried) by its type, wrapped in any context.
    assert!(rebound::imap::auth::AuthError::is_in(
        &refused.context("mailbox wrongpw")
    ));
    let err = format!("{:#}", rebound::imap::poll::open(&cfg).await.unwrap_err());
    assert!(
        err.contains("authentication failed") && err.contains("wrongpw"),
        "{err}"
    );
    assert!(
        !err.contains("nope"),
        "the secret must not appear in errors: {err}"
    );
    let cfg = config(
        &user,
        Tls::Implicit,
        Auth::PasswordEnv {
            var: "REBOUND_TEST_NO_SUCH_VAR".into(),
        },
    );
    let missing = rebound::imap::poll::open(&cfg).await.unwrap_err();
    assert!(rebound::imap::auth::AuthError::is_in(&missing));
    let err = format!("{missing:#}");
    assert!(err.contains("REBOUND_TEST_NO_SUCH_VAR"), "{err}");
    // A failure to connect is not one: it is retried.
    let mut unreachable = config(
        &user,
        Tls::Implicit,
        Auth::PasswordCommand {
            command: "echo nope".into(),
        },
    );
    unreachable.port = Some(1);
    let down = rebound::imap::poll::open(&unreachable).await.unwrap_err();
    assert!(!rebound::imap::auth::AuthError::is_in(&down), "{down:#}");
}
