//! `authgate run`: serve until SIGTERM/SIGINT, then drain.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use authgate::Gateway;
use authgate::auth::keys::LoadMode;

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    // Everything is validated and loaded before any port is bound.
    let mut state = super::load_state(config_path, LoadMode::Run)?;
    // Thread per core: this thread is the first worker, on a current-thread
    // runtime (no work-stealing queues, no cross-thread wake-ups); the
    // others are started by `Gateway::start`, each with its own runtime and
    // sockets (docs/performance.md). Blocking work (password hashing,
    // SQLite) runs on the blocking pool.
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")?;
    let served = runtime.block_on(async move {
        tokio::spawn(authgate::logs::flush_every());
        let stores = authgate::store::Stores::start(&state.config, state.metrics.store_errors.clone())
            .await
            .context("cannot open the store")?;
        state.stores = Some(std::sync::Arc::new(stores));
        let gateway = Gateway::start(state).await?;
        tracing::info!(config = %config_path.display(), "authgate ready");
        shutdown_signal().await;
        tracing::info!("shutting down: draining connections (a second signal exits at once)");
        tokio::select! {
            drained = gateway.shutdown() => {
                tracing::info!(drained, "stopped");
                Ok(ExitCode::SUCCESS)
            }
            () = shutdown_signal() => {
                tracing::warn!("second signal: exiting without waiting");
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    authgate::logs::flush();
    served
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
