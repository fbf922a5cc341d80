//! `authgate explain`: a dry run of routing, authentication and policy.
//!
//! It prints the `Decision` that `authgate::decide` returns for the request
//! it is given, the same function the proxy path asks, so what it says is
//! what the gateway does (tests/cli.rs holds them to one answer).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use authgate::auth::AuthError;
use authgate::auth::keys::LoadMode;
use authgate::decide::{Decision, decide};
use authgate::error::GatewayError;
use authgate::report::chain;
use http::{HeaderValue, Method, Uri, Version, header};

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
            let from = match &issuer.config.keys {
                authgate::config::TrustedKeys::JwksUrl(url) => url.to_string(),
                _ => "its static keys".to_owned(),
            };
            println!(
                "token:    cannot judge: the keys of issuer {:?} could not be fetched from {from} (explain fetches them; is it reachable from here?)",
                issuer.config.name()
            );
        }
    }
    let parts = request_parts(args)?;
    println!("request:  {} {}", parts.method, parts.uri);
    let decision = decide(&parts, state).await;
    if let Some(path) = decision.path() {
        println!("path:     {path} (normalized)");
    }
    match decision {
        Decision::Refused { error, .. } => Ok(verdict(&error)),
        Decision::Endpoint { path, .. } => {
            println!("decision: the gateway's own endpoint {path} (it authenticates its caller itself)");
            Ok(ExitCode::SUCCESS)
        }
        Decision::Preflight { target, .. } => {
            println!("route:    #{} path {}", target.index + 1, target.route.path);
            println!("decision: a CORS preflight, answered by the gateway without credentials");
            Ok(ExitCode::SUCCESS)
        }
        Decision::Route { target, caller, verdict: outcome } => {
            let r = target.route;
            println!("route:    #{} path {} -> {} (defined at {})", target.index + 1, r.path, r.upstream, r.location);
            println!("auth:     {}", r.auth);
            match &caller {
                Some(id) => {
                    println!("token:    valid: sub {:?}, roles {:?}, expires at {}", id.sub, id.roles, id.expires_at)
                }
                None if outcome.is_ok() => println!("token:    none (anonymous)"),
                None => {}
            }
            if state.stores.is_none() && caller.is_some() {
                println!("denylist: not checked (explain opens no store)");
            }
            if !r.roles.is_empty() {
                println!("policy:   caller needs any of {:?}", r.roles);
            }
            if !r.scopes.is_empty() {
                println!("policy:   caller needs every scope of {:?}", r.scopes);
            }
            match outcome {
                Ok(_) => {
                    println!("decision: allow -> {} {}", r.upstream, target.upstream_path_and_query);
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    let exit = verdict(&error);
                    // Every reason at once, not the first the verifier stopped at.
                    if caller.is_none() {
                        for problem in args.token.as_deref().map(|t| state.verifier.problems(t)).unwrap_or_default() {
                            println!("          - {problem}");
                        }
                    }
                    Ok(exit)
                }
            }
        }
    }
}

/// The request `explain` asks about, as the gateway would receive it: the
/// method, the target (absolute, or a path without a host), the token as
/// a Bearer header.
fn request_parts(args: &ExplainArgs) -> anyhow::Result<http::request::Parts> {
    let method = Method::from_bytes(args.method.as_bytes()).context("not an HTTP method")?;
    let uri: Uri = args.url.parse().context("not a URL or path")?;
    // Without a host, ask as HTTP/2 would without `:authority`: routes with a `host` do not match.
    let version = if uri.authority().is_some() { Version::HTTP_11 } else { Version::HTTP_2 };
    let mut request = http::Request::builder().method(method).uri(uri).version(version);
    if let Some(token) = &args.token {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).context("the token is not header-safe")?;
        request = request.header(header::AUTHORIZATION, value);
    }
    Ok(request.body(()).context("not a request")?.into_parts().0)
}

fn verdict(error: &GatewayError) -> ExitCode {
    let why = match error {
        GatewayError::Auth(AuthError::Token(t)) => t.to_string(),
        other => chain(other),
    };
    println!("decision: deny {} {} ({why})", error.status().as_u16(), error.code());
    ExitCode::SUCCESS
}
