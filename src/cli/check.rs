//! `authgate check`: validate the config and print what would run.

use std::fmt::Write as _;

use anyhow::Context;
use std::path::Path;
use std::process::ExitCode;

use authgate::State;
use authgate::auth::keys::LoadMode;
use authgate::config::{KeySource, Store, format_duration};

pub fn check(config_path: &Path, online: bool) -> anyhow::Result<ExitCode> {
    let state = super::load_state(config_path, LoadMode::CheckOnly)?;
    print!("{}", summary(&state));
    if online {
        let entries = super::with_store(config_path, async |_, store| {
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), store.snapshot(authgate::store::now()));
            let (entries, _) =
                read.await.context("the store did not answer within 5 s")?.context("the store failed")?;
            Ok(entries.len())
        })?;
        println!("\nstore: reachable, {entries} revocations in force");
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(state: &State) -> String {
    let c = &state.config;
    let mut out = String::new();
    let _ = writeln!(out, "{}: configuration is valid\n\nlisteners:", c.source.display());
    if let Some(a) = c.server.http {
        let _ = writeln!(out, "  http   {a}");
    }
    if let (Some(a), Some(tls)) = (c.server.https, &c.server.tls) {
        let origin = if tls.self_signed && !tls.cert_file.exists() {
            "self-signed, generated at first start".to_owned()
        } else {
            tls.cert_file.display().to_string()
        };
        let _ = writeln!(out, "  https  {a}  (HTTP/1.1 and HTTP/2, certificate: {origin})");
    }
    if let Some(a) = c.server.admin {
        let _ = writeln!(out, "  admin  {a}  (/healthz /readyz)");
    }
    let _ = writeln!(
        out,
        "\ntokens: issuer {:?}, audience {:?}, leeway {}",
        c.tokens.issuer,
        c.tokens.audience,
        format_duration(c.tokens.leeway)
    );
    for k in &c.tokens.keys {
        let role = match &k.source {
            _ if c.tokens.signing_key.as_deref() == Some(k.kid.as_str()) => "signs and verifies",
            KeySource::Public { .. } => "verifies only",
            _ => "verifies",
        };
        let pending = if state.keys.pending.contains(&k.kid) { ", generated at first start" } else { "" };
        let _ = writeln!(out, "  key {:?}  {:?}  {role}{pending}", k.kid, k.algorithm);
    }
    for t in &c.tokens.trusted {
        let keys = match &t.keys {
            authgate::config::TrustedKeys::JwksUrl(url) => format!("keys from {url}"),
            authgate::config::TrustedKeys::JwksFile(path) => format!("keys in {}", path.display()),
            authgate::config::TrustedKeys::Secret(_) => format!("a shared secret, {:?}", t.algorithms),
            authgate::config::TrustedKeys::PublicKeyFile(path) => {
                format!("the key in {}, {:?}", path.display(), t.algorithms)
            }
        };
        let _ = writeln!(out, "  trusted issuer {:?}  {keys}", t.name());
    }
    let store = match &c.store {
        Store::Embedded { path } => format!("embedded, {}", path.display()),
        Store::Redis { key_prefix, .. } => format!("redis, key prefix {key_prefix:?}"),
    };
    let _ = writeln!(out, "store: {store}");
    if c.login.enabled {
        let p = &c.login.path_prefix;
        let register = if c.login.registration { format!(" {p}/register") } else { String::new() };
        let cookies = if c.login.cookies { " (cookie mode)" } else { "" };
        let _ = writeln!(
            out,
            "gateway endpoints{cookies}:{register} {p}/login {p}/refresh {p}/logout {p}/me {p}/revoke /.well-known/jwks.json"
        );
    }
    let _ = writeln!(out, "\nroutes (longest prefix wins; gateway endpoints first):");
    let _ = writeln!(
        out,
        "  {:<24} {:<20} {:<14} {:<9} {:<16} {:<16} upstream",
        "path", "host", "methods", "auth", "roles", "scopes"
    );
    for r in state.router.routes() {
        let methods =
            r.methods.as_ref().map_or("*".to_owned(), |m| m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(","));
        let roles = if r.roles.is_empty() { "-".to_owned() } else { r.roles.join(",") };
        let scopes = if r.scopes.is_empty() { "-".to_owned() } else { r.scopes.join(",") };
        let path = if r.strip_prefix { format!("{} (stripped)", r.path) } else { r.path.clone() };
        let _ = writeln!(
            out,
            "  {:<24} {:<20} {:<14} {:<9} {:<16} {:<16} {}",
            path,
            r.host.as_deref().unwrap_or("*"),
            methods,
            r.auth.to_string(),
            roles,
            scopes,
            r.upstream
        );
    }
    out
}
