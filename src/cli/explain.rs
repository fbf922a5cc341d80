//! `authgate explain`: a dry run of routing, authentication and policy.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use authgate::auth::keys::LoadMode;
use authgate::auth::{self, AuthError};
use authgate::error::GatewayError;
use authgate::report::chain;
use http::{HeaderMap, HeaderValue, Method, Uri, header};

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// An access token to authenticate with
    #[arg(long)]
    token: Option<String>,
    /// The request method, e.g. GET
    method: String,
    /// The request URL, e.g. http://localhost:8080/admin/x or /admin/x
    url: String,
}

pub fn explain(config_path: &Path, args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let state = super::load_state(config_path, LoadMode::CheckOnly)?;
    // A trusted issuer's token needs that issuer's keys: fetched from its
    // jwks_url, as the gateway would at start (explain needs the network for that).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(explain_with(&state, args))
}

async fn explain_with(state: &authgate::State, args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    if let Some(issuer) = args.token.as_deref().and_then(|t| state.verifier.trusted_issuer_named(t)) {
        issuer.spawn_refresh();
        if !issuer.wait_for_first_fetch().await {
            println!(
                "token:    cannot judge: the keys of issuer {:?} could not be fetched from {} (explain fetches them; is it reachable from here?)",
                issuer.config.issuer, issuer.config.jwks_url
            );
        }
    }
    let method = Method::from_bytes(args.method.as_bytes()).context("not an HTTP method")?;
    let uri: Uri = args.url.parse().context("not a URL or path")?;
    let host = uri.host().map(str::to_ascii_lowercase);
    println!("request:  {method} {uri}");
    let decided = state.router.route(&method, host.as_deref(), uri.path(), uri.query());
    let target = match decided {
        Ok(t) => t,
        Err(e) => return Ok(verdict(GatewayError::from(e))),
    };
    let r = target.route;
    println!("path:     {} (normalized)", target.path);
    println!("route:    #{} path {} -> {} (defined at {})", target.index + 1, r.path, r.upstream, r.location);
    println!("auth:     {}", r.auth);
    let mut headers = HeaderMap::new();
    if let Some(token) = &args.token {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).context("the token is not header-safe")?;
        headers.insert(header::AUTHORIZATION, value);
    }
    let identity = match auth::authenticate(&method, &headers, r.auth, &state.verifier, false).await {
        Ok(identity) => identity,
        Err(e) => {
            let exit = verdict(GatewayError::from(e));
            // Every reason at once, not the first the verifier stopped at.
            for problem in args.token.as_deref().map(|t| state.verifier.problems(t)).unwrap_or_default() {
                println!("          - {problem}");
            }
            return Ok(exit);
        }
    };
    match &identity {
        Some(id) => println!("token:    valid: sub {:?}, roles {:?}, expires at {}", id.sub, id.roles, id.expires_at),
        None => println!("token:    none (anonymous)"),
    }
    if !r.roles.is_empty() {
        println!("policy:   caller needs any of {:?}", r.roles);
    }
    match auth::authorize(r, identity) {
        Ok(_) => {
            println!("decision: allow -> {} {}", r.upstream, target.upstream_path_and_query);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(verdict(GatewayError::Auth(e))),
    }
}

fn verdict(error: GatewayError) -> ExitCode {
    let why = match &error {
        GatewayError::Auth(AuthError::Token(t)) => t.to_string(),
        other => chain(other),
    };
    println!("decision: deny {} {} ({why})", error.status().as_u16(), error.code());
    ExitCode::SUCCESS
}
