//! A private Dovecot 2.3 for the IMAP tests: generated config, self-signed certificate and
//! passwd-file in a temp dir, listening on free ports of 127.0.0.1. One instance per test binary
//! (starting costs ~0.15 s, stopping ~2.5 s), one user per test for isolation: users are added
//! while it runs (Dovecot re-reads the passwd-file when it changes).
//!
//! Dovecot must be installed (`scripts/test.sh` installs it); when it is not, the tests fail
//! with a message saying so, they never skip silently.
//!
//! Static values are never dropped, so the server is stopped by a watchdog shell that waits for
//! the test process to exit, then stops Dovecot and removes the temp dir.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct Dovecot {
    pub dir: PathBuf,
    pub conf: PathBuf,
    /// Plain IMAP, also offering STARTTLS.
    pub port: u16,
    /// Implicit TLS.
    pub tls_port: u16,
    /// The server's self-signed certificate (CA:FALSE, SAN localhost + 127.0.0.1), to trust.
    pub ca_file: PathBuf,
    instance: String,
    mail_ids: (u32, u32),
    users: Mutex<()>,
}

static SERVER: OnceLock<Dovecot> = OnceLock::new();

/// The binary's Dovecot, started on first use.
pub fn server() -> &'static Dovecot {
    SERVER.get_or_init(|| {
        Dovecot::start().unwrap_or_else(|e| panic!("could not start the test Dovecot: {e}"))
    })
}

fn dovecot_bin() -> Result<PathBuf, String> {
    for p in ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"] {
        if Path::new(p).exists() {
            return Ok(p.into());
        }
    }
    Err("Dovecot is not installed: the IMAP integration tests need it (run `bash scripts/test.sh`, which installs dovecot-imapd, or `apt-get install dovecot-imapd`)".into())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn id(args: &[&str]) -> u32 {
    let out = Command::new("id").args(args).output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("numeric id")
}

fn id_name(args: &[&str]) -> String {
    let out = Command::new("id").args(args).output().expect("id");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Dovecot {
    fn start() -> Result<Dovecot, String> {
        let bin = dovecot_bin()?;
        let version = Command::new(&bin)
            .arg("--version")
            .output()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let version = String::from_utf8_lossy(&version.stdout).to_string();
        if !version.starts_with("2.3") {
            return Err(format!(
                "the fixture writes a Dovecot 2.3 config, found version {version}"
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("rebound-dovecot-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        // As root, Dovecot's auth process runs as `dovecot` and must traverse the dir.
        set_mode(&dir, 0o755);
        for d in ["run", "state", "mail"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let root = id(&["-u"]) == 0;
        let (mail_uid, mail_gid, users_block) = if root {
            // Dovecot refuses to access mail as uid 0.
            (id(&["-u", "nobody"]), id(&["-g", "nobody"]), String::new())
        } else {
            let me = id_name(&["-un"]);
            let group = id_name(&["-gn"]);
            (
                id(&["-u"]),
                id(&["-g"]),
                format!(
                    "default_internal_user = {me}\ndefault_login_user = {me}\ndefault_internal_group = {group}\nservice anvil {{\n  chroot =\n}}\nservice imap-login {{\n  chroot =\n}}\n"
                ),
            )
        };
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        // rustls refuses a CA:TRUE certificate as a server certificate: say CA:FALSE.
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
            ])
            .args([
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-addext",
                "basicConstraints=critical,CA:FALSE",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("openssl is needed for the test certificate: {e}"))?;
        if !status.success() {
            return Err("openssl req failed".into());
        }
        let users = dir.join("users");
        std::fs::write(&users, "").unwrap();
        set_mode(&users, 0o644);
        let (port, tls_port) = (free_port(), free_port());
        let d = dir.display();
        let instance = format!("rebound-test-{port}");
        let conf = dir.join("dovecot.conf");
        std::fs::write(
            &conf,
            format!(
                r#"# generated by rebound's tests; the system config is not included
instance_name = {instance}
base_dir = {d}/run
state_dir = {d}/state
protocols = imap
listen = 127.0.0.1
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
auth_verbose = yes
auth_failure_delay = 0
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
mail_location = maildir:~/Maildir
mail_fsync = never
first_valid_uid = 1
mail_max_userip_connections = 50
verbose_proctitle = yes
{users_block}
# no brute-force penalty: the wrong-password test would slow every later login
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {d}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%n {d}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
"#
            ),
        )
        .unwrap();
        if root {
            Command::new("chown")
                .arg("-R")
                .arg(format!("{mail_uid}:{mail_gid}"))
                .arg(dir.join("mail"))
                .status()
                .unwrap();
        }
        // The watchdog: runs Dovecot in the foreground, and when the test process is gone stops
        // it and removes the directory.
        let script = format!(
            r#"{bin} -F -c "$1" >"$2/master.out" 2>&1 &
while kill -0 {parent} 2>/dev/null; do sleep 0.5; done
{bin} -c "$1" stop >/dev/null 2>&1 || kill $! 2>/dev/null
wait
rm -rf "$2""#,
            bin = bin.display(),
            parent = std::process::id()
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("watchdog")
            .arg(&conf)
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let server = Dovecot {
            dir: dir.clone(),
            conf,
            port,
            tls_port,
            ca_file: cert,
            instance,
            mail_ids: (mail_uid, mail_gid),
            users: Mutex::new(()),
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                let mut buf = [0u8; 4];
                if s.read_exact(&mut buf).is_ok() && &buf == b"* OK" {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "Dovecot did not answer on port {}; log:\n{}\n{}",
            self.port,
            self.log(),
            std::fs::read_to_string(self.dir.join("master.out")).unwrap_or_default()
        ))
    }

    /// Kills every process of this instance with SIGKILL, as a crash or an OOM kill would: no
    /// BYE, no clean shutdown. Only for a test binary of its own (the instance is shared by
    /// the tests of one binary).
    pub fn kill(&self) {
        // The master first, so that it cannot respawn a child killed before it; then every
        // process with the instance name in its title (Dovecot puts it in the master's and
        // every child's), until none is left.
        let master = std::fs::read_to_string(self.dir.join("run/master.pid")).unwrap_or_default();
        if let Ok(pid) = master.trim().parse::<i32>() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let pattern = format!("{}/", self.instance);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Command::new("pkill")
            .args(["-KILL", "-f", &pattern])
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(
                Instant::now() < deadline,
                "Dovecot processes survive SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "Dovecot survived SIGKILL");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the instance again after [`Dovecot::kill`], same config and mail. It daemonizes;
    /// the watchdog's `dovecot stop` still ends it when the tests are done.
    pub fn restart(&self) {
        let status = Command::new(dovecot_bin().unwrap())
            .arg("-c")
            .arg(&self.conf)
            .status()
            .expect("starting dovecot");
        assert!(status.success(), "dovecot did not restart:\n{}", self.log());
        self.wait_ready().unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default()
    }

    /// Adds a user whose password is `<name>-pw` (XOAUTH2 accepts it as the bearer token).
    pub fn add_user(&self, name: &str) -> User {
        let _guard = self.users.lock().unwrap();
        let password = format!("{name}-pw");
        let (uid, gid) = self.mail_ids;
        let home = self.dir.join("mail").join(name);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("users"))
            .unwrap();
        writeln!(
            f,
            "{name}:{{PLAIN}}{password}:{uid}:{gid}::{}::",
            home.display()
        )
        .unwrap();
        drop(f);
        // Dovecot checks the passwd-file for changes at most once a second: wait until the new
        // user can log in, so that the test does not race the reload.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ok = Command::new("doveadm")
                .arg("-c")
                .arg(&self.conf)
                .args(["auth", "test", name, &password])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Dovecot did not pick up user {name}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        User {
            name: name.to_string(),
            password,
        }
    }

    /// Runs `doveadm` against this instance.
    pub fn doveadm(&self, args: &[&str]) -> String {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .expect("doveadm");
        assert!(
            out.status.success(),
            "doveadm {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: String,
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
