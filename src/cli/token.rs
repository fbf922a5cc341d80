//! `authgate token`: mint an access token with the configured signing key.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use authgate::auth::keys::LoadMode;
use authgate::auth::mint::mint_access_token;
use authgate::config::parse_duration;

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The subject (`sub`)
    #[arg(long)]
    sub: String,
    /// Comma-separated roles
    #[arg(long, value_delimiter = ',')]
    roles: Vec<String>,
    /// Lifetime, e.g. 15m, 1h (default: tokens.access_ttl)
    #[arg(long)]
    ttl: Option<String>,
}

pub fn token(config_path: &Path, args: &TokenArgs) -> anyhow::Result<ExitCode> {
    // Run mode: a key marked generate_if_missing is created, exactly as the gateway would.
    let state = super::load_state(config_path, LoadMode::Run)?;
    let key =
        state.keys.signing().context("no signing key: set tokens.signing_key to a key with a private key or secret")?;
    let ttl = match &args.ttl {
        Some(t) => parse_duration(t).map_err(anyhow::Error::msg)?,
        None => state.config.tokens.access_ttl,
    };
    let max = state.config.tokens.max_lifetime;
    anyhow::ensure!(
        ttl <= max,
        "--ttl {} is above tokens.max_lifetime ({}s): the gateway would refuse the token; raise max_lifetime first",
        args.ttl.as_deref().unwrap_or_default(),
        max.as_secs()
    );
    let roles: Vec<String> = args.roles.iter().filter(|r| !r.is_empty()).cloned().collect();
    let token = mint_access_token(&state.config.tokens, key, &args.sub, &roles, ttl, Default::default())
        .context("signing failed")?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
