//! Config reload: on SIGHUP, and when the config file or a file it names
//! (keys, certificate, users file) changes.
//!
//! Owns the watch and the swap. Files are polled (twice a second) by
//! fingerprint rather than watched with inotify: that also sees Kubernetes'
//! ConfigMap updates, which swap a symlink. A change is applied only once it
//! has been stable for a poll, so a half-written file is not read. The new
//! config is validated in full, keys and certificates loaded, before it
//! replaces the old one in a single atomic swap; an invalid one is logged
//! and counted and the old one keeps serving. The store, its denylist copy
//! and the metrics are handed on; listener addresses and the store itself
//! only change with a restart (a reload says so).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::auth::keys::LoadMode;
use crate::config::{ConfigErrors, KeySource, SecretSource};
use crate::state::State;

const POLL: Duration = Duration::from_millis(500);

/// Every file whose change should reload the config.
fn watched_files(state: &State) -> Vec<PathBuf> {
    let c = &state.config;
    let mut files = vec![c.source.clone()];
    if let Some(tls) = &c.server.tls {
        files.push(tls.cert_file.clone());
        files.push(tls.key_file.clone());
    }
    for key in &c.tokens.keys {
        match &key.source {
            KeySource::Secret(SecretSource::File(p)) | KeySource::Private { source: SecretSource::File(p), .. } => {
                files.push(p.clone());
            }
            KeySource::Public { path } => files.push(path.clone()),
            _ => {}
        }
    }
    files.extend(c.login.users_file.clone());
    files
}

type Fingerprint = Vec<Option<(SystemTime, u64, u64)>>;

fn fingerprint(files: &[PathBuf]) -> Fingerprint {
    files.iter().map(|p| fingerprint_one(p)).collect()
}

fn fingerprint_one(path: &Path) -> Option<(SystemTime, u64, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((meta.modified().ok()?, meta.len(), inode))
}

/// Reloads, then returns the files to watch and their fingerprints *as
/// read before the reload* (`seen`, for `files`): a change written while
/// the reload ran differs from them and is picked up by the next poll.
async fn reload_and_rewatch(
    current: &Arc<ArcSwap<State>>,
    files: &[PathBuf],
    seen: &Fingerprint,
) -> (Vec<PathBuf>, Fingerprint) {
    run_reload(current).await;
    let new_files = watched_files(&current.load());
    let applied = new_files
        .iter()
        .map(|f| match files.iter().position(|old| old == f) {
            Some(i) => seen.get(i).copied().flatten(),
            None => fingerprint_one(f),
        })
        .collect();
    (new_files, applied)
}

/// Builds the new state from the file and swaps it in; the old one stays on any problem.
pub fn reload(current: &ArcSwap<State>) -> Result<(), ConfigErrors> {
    let old = current.load_full();
    let path: &Path = &old.config.source;
    let result = crate::state::load(path, LoadMode::Run);
    let mut new = match result {
        Ok(new) => new,
        Err(errors) => {
            old.metrics.reload("failed");
            tracing::error!(config = %path.display(), errors = %errors, "config reload refused; the running config stays");
            return Err(errors);
        }
    };
    let (o, n) = (&old.config.server, &new.config.server);
    if (o.http, o.https, o.admin) != (n.http, n.https, n.admin) || o.workers != n.workers {
        tracing::warn!(
            "listener addresses or workers changed: restart to apply them; the rest of the config is applied"
        );
    }
    if format!("{:?}", old.config.store) != format!("{:?}", new.config.store) {
        tracing::warn!("[store] changed: restart to apply it; the running store stays");
    }
    new.stores.clone_from(&old.stores);
    new.metrics = old.metrics.clone();
    if new.hasher.is_some() && old.hasher.is_some() {
        new.hasher.clone_from(&old.hasher);
    }
    new.start_background();
    current.store(Arc::new(new));
    old.metrics.reload("ok");
    tracing::info!(config = %path.display(), "config reloaded");
    Ok(())
}

/// Reloads on the blocking pool: it reads files and hashes a dummy password.
async fn run_reload(current: &Arc<ArcSwap<State>>) {
    let current = current.clone();
    let _ = tokio::task::spawn_blocking(move || reload(&current)).await;
}

/// Watches for SIGHUP and file changes until `stop` flips. The running
/// files are fingerprinted and SIGHUP is caught now, not when the returned
/// future first runs: a change (or a SIGHUP, which would otherwise end the
/// process) arriving before the task is first polled must count.
pub fn watch(
    current: Arc<ArcSwap<State>>,
    stop: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send {
    #[cfg(unix)]
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    #[cfg(not(unix))]
    let hangup = None::<()>;
    let files = watched_files(&current.load());
    let applied = fingerprint(&files);
    watch_from(current, stop, hangup, files, applied)
}

async fn watch_from(
    current: Arc<ArcSwap<State>>,
    mut stop: watch::Receiver<bool>,
    #[cfg(unix)] mut hangup: Option<tokio::signal::unix::Signal>,
    #[cfg(not(unix))] _hangup: Option<()>,
    mut files: Vec<PathBuf>,
    mut applied: Fingerprint,
) {
    let mut candidate: Option<Fingerprint> = None;
    loop {
        #[cfg(unix)]
        let hup = async {
            match hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hup = std::future::pending::<Option<()>>();
        tokio::select! {
            () = async { let _ = stop.wait_for(|s| *s).await; } => return,
            _ = hup => {
                tracing::info!("SIGHUP: reloading the config");
                let seen = fingerprint(&files);
                (files, applied) = reload_and_rewatch(&current, &files, &seen).await;
                candidate = None;
            }
            () = tokio::time::sleep(POLL) => {
                let now = fingerprint(&files);
                if now == applied {
                    candidate = None;
                } else if candidate.as_ref() == Some(&now) {
                    // Unchanged for a whole poll: the writer is done. A
                    // refused file is not retried until it changes again.
                    (files, applied) = reload_and_rewatch(&current, &files, &now).await;
                    candidate = None;
                } else {
                    candidate = Some(now);
                }
            }
        }
    }
}
