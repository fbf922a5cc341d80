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
        let now = now();
        let until = now.saturating_add(retention(config).as_secs());
        let revocation = match (&args.jti, &args.sub) {
            (Some(jti), _) => Revocation::Jti { jti: jti.clone(), expires_at: until },
            (None, Some(sub)) => Revocation::Subject { sub: sub.clone(), before: now, expires_at: until },
            (None, None) => anyhow::bail!("give --jti or --sub"),
        };
        store.revoke(&revocation).await.context("the store refused the revocation")?;
        tracing::info!(target: "audit", event = "revoke", by = "cli", ?revocation, "revoked");
        eprintln!("revoked ({} store)", store.backend());
        Ok(ExitCode::SUCCESS)
    })
}
