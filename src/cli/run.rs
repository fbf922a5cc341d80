//! `authgate run`: serve until SIGTERM/SIGINT, then drain.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use authgate::Gateway;
use authgate::auth::keys::LoadMode;

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    // Everything is validated and loaded before any port is bound.
    let mut state = super::load_state(config_path, LoadMode::Run)?;
    let workers = state.config.server.workers;
    // One worker: a current-thread runtime (no work-stealing queues, no
    // cross-thread wake-ups; docs/performance.md). Blocking work (password
    // hashing, SQLite) still runs on the blocking pool either way.
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    let runtime = builder.enable_all().build().context("cannot start the runtime")?;
    runtime.block_on(async move {
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
    })
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
