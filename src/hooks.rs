//! Hooks: commands that hear of every change of an address's state, as it is committed.
//!
//! ```toml
//! [hooks]
//! on_change = ["/usr/local/bin/sync-suppressions", ["/usr/local/bin/notify", "--channel", "ops"]]
//! timeout_secs = 60
//! ```
//!
//! Each entry is a program (a string) or a program with its arguments (an array): run as is,
//! never through a shell. `poll`, `watch` and `ingest` run every hook after each commit that
//! appended to the ledger's change log (`suppression_log`), with the new rows on its standard
//! input, one JSON object per line ([`crate::ledger::LoggedChange`]), at most [`BATCH`] rows per
//! run of the hook, oldest first. Its standard output and error go to rebound's standard error;
//! `REBOUND_DB` names the ledger (for a hook that runs `rebound export` itself).
//!
//! Each hook has a cursor in the ledger (`hook_cursors`), advanced only when it exits 0: a hook
//! that fails, or does not finish within `timeout_secs` (it is then killed with every process
//! it started, its process group), is logged once and given the same rows again on the next
//! run (`watch`: after a backoff of one minute, doubling up to an hour), so that it never loses
//! a change. Delivery is at least once: a hook that succeeded just before a crash may get its
//! last rows again (each row has its `id`). A hook runs off the writer thread: it never holds
//! up ingestion. One process at a time runs a ledger's hooks (a lock file beside the ledger,
//! `<db>.@hooks.lock`). `poll` and `ingest` run them a last time before they exit; a stopping
//! `watch` waits a few seconds for one in progress, then stops it.
//!
//! A hook added to a ledger that already holds changes first gets the whole log, in batches;
//! changing its arguments makes it a new hook (its cursor is kept under its argv).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::{oneshot, watch};

use crate::ingest::Writer;
use crate::ledger::LoggedChange;

/// Most rows given to one run of a hook.
pub const BATCH: usize = 1000;

/// `[hooks]` in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HooksConfig {
    /// Commands run after each commit that changed an address's state.
    pub on_change: Vec<HookCommand>,
    /// Seconds a hook may run before it is killed (and retried on the next run).
    pub timeout_secs: u64,
}

impl Default for HooksConfig {
    fn default() -> HooksConfig {
        HooksConfig {
            on_change: Vec::new(),
            timeout_secs: 60,
        }
    }
}

/// One hook as written: a program, or a program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum HookCommand {
    Program(String),
    Argv(Vec<String>),
}

impl HookCommand {
    fn argv(&self) -> Vec<String> {
        match self {
            HookCommand::Program(p) => vec![p.clone()],
            HookCommand::Argv(a) => a.clone(),
        }
    }
}

/// A hook ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub argv: Vec<String>,
    /// Its identity in `hook_cursors`: the argv as JSON.
    pub key: String,
}

impl Hook {
    /// The hook as a person reads it: its argv joined by spaces.
    pub fn name(&self) -> String {
        self.argv.join(" ")
    }
}

impl HooksConfig {
    /// Checks every hook: a program that is not empty.
    pub fn validate(&self) -> Result<(), String> {
        for (i, c) in self.on_change.iter().enumerate() {
            let argv = c.argv();
            if argv.first().is_none_or(|p| p.trim().is_empty()) {
                return Err(format!(
                    "[hooks] on_change entry {}: name a program to run (a path, or an array of the program and its arguments)",
                    i + 1
                ));
            }
        }
        if self.timeout_secs == 0 {
            return Err("[hooks] timeout_secs: give a hook at least 1 second".into());
        }
        Ok(())
    }

    /// Programs named by a relative path (`./sync.sh`, `bin/sync`) are relative to the config
    /// file's directory, like every path in it; a bare name (`sync-suppressions`) is looked up
    /// in `PATH`.
    pub fn resolve_paths(&mut self, dir: &Path) {
        for c in &mut self.on_change {
            let mut argv = c.argv();
            if let Some(program) = argv.first_mut() {
                let p = Path::new(program.as_str());
                if p.is_relative() && program.contains('/') {
                    *program = dir.join(p).to_string_lossy().into_owned();
                }
            }
            *c = HookCommand::Argv(argv);
        }
    }

    /// The hooks to run.
    pub fn hooks(&self) -> Vec<Hook> {
        self.on_change
            .iter()
            .map(|c| {
                let argv = c.argv();
                Hook {
                    key: serde_json::to_string(&argv).unwrap_or_default(),
                    argv,
                }
            })
            .collect()
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }
}

/// How a failing hook is retried: in a one-shot run (`poll`, `ingest`) not before the next
/// run; in a `watch`, after a backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    Run,
    Watch,
}

/// The hooks of one process, running on their own task.
pub struct HookTask {
    finish: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<()>,
    pace: Pace,
}

impl HookTask {
    /// Runs the hooks one last time (what the run committed last; not for a `watch`), then
    /// stops them.
    pub async fn finish(self) {
        let _ = self.finish.send(());
        let mut handle = self.handle;
        if self.pace == Pace::Watch {
            // A stopping watch waits a few seconds for a hook in progress, then stops it (with
            // every process it started); its rows go to it again on the next start.
            if tokio::time::timeout(WATCH_STOP, &mut handle).await.is_err() {
                handle.abort();
                tracing::warn!(
                    "a hook was still running as the watch stopped: stopped; its changes will be given to it again"
                );
            }
            return;
        }
        if let Err(e) = handle.await {
            tracing::error!("the hooks' task ended abnormally: {e}");
        }
    }
}

/// Starts the hooks of `config` on a task of the current runtime (none when there are none):
/// a first pass at once (what earlier runs could not deliver), then one after every commit
/// that appended to the change log, and (`watch`) every minute, for changes other processes
/// made (`rebound suppress`, `reactivate`).
pub fn start(
    config: &HooksConfig,
    writer: &Writer,
    database: &Path,
    pace: Pace,
) -> Option<HookTask> {
    let hooks = config.hooks();
    if hooks.is_empty() {
        return None;
    }
    let runner = Runner {
        hooks: hooks.into_iter().map(HookState::new).collect(),
        writer: writer.clone(),
        timeout: config.timeout(),
        database: database.to_path_buf(),
        pace,
    };
    let (finish, finished) = oneshot::channel();
    let handle = tokio::spawn(run(runner, writer.log_head(), finished));
    Some(HookTask {
        finish,
        handle,
        pace,
    })
}

struct HookState {
    hook: Hook,
    /// Not run before this (a failure in this run, or a `watch`'s backoff).
    skip_until: Option<Instant>,
    /// Failed since it last succeeded (its failure was logged).
    failing: bool,
    backoff: Duration,
}

impl HookState {
    fn new(hook: Hook) -> HookState {
        HookState {
            hook,
            skip_until: None,
            failing: false,
            backoff: FIRST_BACKOFF,
        }
    }
}

const FIRST_BACKOFF: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How often a `watch` looks for changes other processes made.
const WATCH_TICK: Duration = Duration::from_secs(60);
/// How long a stopping `watch` waits for a hook in progress.
const WATCH_STOP: Duration = Duration::from_secs(5);

struct Runner {
    hooks: Vec<HookState>,
    writer: Writer,
    timeout: Duration,
    database: PathBuf,
    pace: Pace,
}

async fn run(
    mut runner: Runner,
    mut head: watch::Receiver<i64>,
    mut finish: oneshot::Receiver<()>,
) {
    runner.pass(false).await;
    let mut tick = tokio::time::interval(WATCH_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            changed = head.changed() => {
                if changed.is_err() {
                    // The writer is gone: nothing new can come; wait for the end.
                    let _ = (&mut finish).await;
                    break;
                }
                runner.pass(false).await;
            }
            _ = tick.tick(), if runner.pace == Pace::Watch => runner.pass(false).await,
            _ = &mut finish => break,
        }
    }
    // A one-shot run gives the hooks what it committed last before it exits. A stopping
    // `watch` does not wait for them (it promises to stop within seconds): what it committed
    // since its last pass goes to the hooks when it starts again.
    if runner.pace == Pace::Run {
        runner.pass(true).await;
    }
}

impl Runner {
    /// Gives every hook that is due what it has not taken yet. `last`: the run is ending, so
    /// wait (up to the timeout) for another process delivering the same ledger's hooks.
    async fn pass(&mut self, last: bool) {
        let now = Instant::now();
        if self
            .hooks
            .iter()
            .all(|h| h.skip_until.is_some_and(|t| t > now))
        {
            return;
        }
        let wait = if last { self.timeout } else { Duration::ZERO };
        let lock = match crate::imap::lock::acquire(&self.database, "@hooks", wait).await {
            Ok(lock) => lock,
            Err(e) => {
                tracing::debug!("hooks not run now: {e:#}");
                return;
            }
        };
        for i in 0..self.hooks.len() {
            if self.hooks[i].skip_until.is_some_and(|t| t > Instant::now()) {
                continue;
            }
            if let Err(e) = self.deliver(i).await {
                tracing::warn!(
                    "hook {}: could not read or record its progress in the ledger: {e:#}",
                    self.hooks[i].hook.name()
                );
            }
        }
        drop(lock);
    }

    /// Runs one hook until it has taken the whole log or fails.
    async fn deliver(&mut self, i: usize) -> anyhow::Result<()> {
        let (timeout, pace) = (self.timeout, self.pace);
        loop {
            let key = self.hooks[i].hook.key.clone();
            let cursor = self.writer.call(move |l| l.hook_cursor(&key)).await?;
            let rows = self
                .writer
                .call(move |l| l.changes_after(cursor, BATCH))
                .await?;
            let (Some(first), Some(last)) = (rows.first().map(|r| r.id), rows.last().map(|r| r.id))
            else {
                return Ok(());
            };
            let state = &mut self.hooks[i];
            let name = state.hook.name();
            match run_hook(&state.hook, &rows, timeout, &self.database).await {
                Ok(()) => {
                    let key = state.hook.key.clone();
                    self.writer
                        .call(move |l| l.hook_delivered(&key, last))
                        .await?;
                    let state = &mut self.hooks[i];
                    if state.failing {
                        tracing::info!("hook {name} succeeded again (changes up to #{last})");
                    }
                    state.failing = false;
                    state.backoff = FIRST_BACKOFF;
                    state.skip_until = None;
                }
                Err(e) => {
                    let error = format!("{e:#}");
                    let when = match pace {
                        Pace::Run => "on the next run".to_string(),
                        Pace::Watch => format!("in {} s", state.backoff.as_secs()),
                    };
                    if state.failing {
                        tracing::debug!("hook {name} failed again: {error}");
                    } else {
                        tracing::error!(
                            "hook {name}: {error}; its {} change(s) from #{first} will be given to it again {when}",
                            rows.len()
                        );
                    }
                    state.failing = true;
                    state.skip_until = Some(match pace {
                        // Not again in this run: "logged once, retried on the next run".
                        Pace::Run => Instant::now() + Duration::from_secs(365 * 86400),
                        Pace::Watch => Instant::now() + state.backoff,
                    });
                    state.backoff = (state.backoff * 2).min(MAX_BACKOFF);
                    let key = state.hook.key.clone();
                    self.writer
                        .call(move |l| l.hook_failed(&key, &error))
                        .await?;
                    return Ok(());
                }
            }
        }
    }
}

/// Runs a hook once with `rows` on its standard input; Ok when it exits 0 in time.
async fn run_hook(
    hook: &Hook,
    rows: &[LoggedChange],
    timeout: Duration,
    database: &Path,
) -> anyhow::Result<()> {
    let mut input = Vec::with_capacity(rows.len() * 200);
    for r in rows {
        serde_json::to_writer(&mut input, r)?;
        input.push(b'\n');
    }
    let program = &hook.argv[0];
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&hook.argv[1..])
        .env("REBOUND_DB", database)
        .stdin(Stdio::piped())
        .stdout(to_our_stderr())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = cmd.spawn().with_context(|| {
        format!("could not start {program}: check the path in [hooks] on_change and that rebound's user may run it")
    })?;
    // Whatever it started goes with it, also when this future is dropped (a watch stopping).
    let _group = child.id().map(GroupGuard);
    let mut stdin = child
        .stdin
        .take()
        .context("no standard input for the hook")?;
    let outcome = tokio::time::timeout(timeout, async {
        let writing = async move {
            let written = stdin.write_all(&input).await;
            drop(stdin);
            written
        };
        tokio::join!(writing, child.wait())
    })
    .await;
    let (written, status) = match outcome {
        Ok(done) => done,
        Err(_) => {
            let _ = child.kill().await;
            bail!(
                "did not finish within {} s (timeout_secs): it was stopped, with every process it started",
                timeout.as_secs()
            );
        }
    };
    let status = status.context("waiting for the hook")?;
    if !status.success() {
        bail!("failed ({status})");
    }
    // A hook may exit 0 without reading its input (one that exports the whole list itself).
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("writing the changes to its standard input")
        }
        _ => Ok(()),
    }
}

/// Kills a hook's process group when dropped: what it started and left behind (it runs in a
/// group of its own, like the secret commands of `crate::imap::auth`).
struct GroupGuard(u32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        crate::imap::auth::kill_group(self.0);
    }
}

/// A hook's standard output goes where rebound's log goes, not into its report on stdout.
fn to_our_stderr() -> Stdio {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        if let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() {
            return Stdio::from(fd);
        }
    }
    Stdio::null()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_are_programs_or_argv_arrays_and_relative_paths_follow_the_config() {
        let text = r#"on_change = ["/usr/local/bin/a", ["./b.sh", "--x"], ["c"]]"#;
        let mut c: HooksConfig = toml::from_str(text).unwrap();
        assert_eq!(c.timeout_secs, 60);
        c.validate().unwrap();
        c.resolve_paths(Path::new("/etc/rebound"));
        let hooks = c.hooks();
        assert_eq!(hooks[0].argv, ["/usr/local/bin/a"]);
        assert_eq!(hooks[1].argv, ["/etc/rebound/./b.sh", "--x"]);
        assert_eq!(hooks[2].argv, ["c"], "a bare name is looked up in PATH");
        assert_eq!(hooks[1].key, r#"["/etc/rebound/./b.sh","--x"]"#);
        assert_eq!(hooks[1].name(), "/etc/rebound/./b.sh --x");
        let empty: HooksConfig = toml::from_str(r#"on_change = [[]]"#).unwrap();
        assert!(empty.validate().unwrap_err().contains("entry 1"));
    }
}
