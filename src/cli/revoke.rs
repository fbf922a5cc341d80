//! `authgate revoke --jti ID | --sub NAME`: a revocation in the configured store.
//!
//! Running gateways see it through their change feed (Redis: at once;
//! embedded: within a poll, 200 ms).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use authgate::store::{Revocation, now, retention};

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct RevokeArgs {
    /// Revoke the token with this `jti`
    #[arg(long)]
    jti: Option<String>,
    /// Revoke every token of this subject issued until now
    #[arg(long)]
    sub: Option<String>,
}

pub fn revoke(config_path: &Path, args: &RevokeArgs) -> anyhow::Result<ExitCode> {
    super::with_store(config_path, async |config, store| {
        let revocation = Revocation::by_operator(args.jti.clone(), args.sub.clone(), now(), retention(config))
            .context("give one of --jti or --sub")?;
        store.revoke(&revocation).await.context("the store refused the revocation")?;
        tracing::info!(target: "audit", event = "revoke", by = "cli", ?revocation, "revoked");
        eprintln!("revoked ({} store)", store.backend());
        Ok(ExitCode::SUCCESS)
    })
}
