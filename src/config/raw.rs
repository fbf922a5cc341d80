//! The config file as written: serde structs that mirror the TOML.
//!
//! Owns the file's shape only: every table rejects unknown keys, and each
//! section (and each `[[route]]`) is deserialized on its own so that one bad
//! section does not hide the problems of the others. Meaning (addresses,
//! durations, keys, routes) is checked in `validate.rs`, never here.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// A value and where it was written.
pub type S<T> = Spanned<T>;

#[derive(Debug, Default)]
pub struct RawConfig {
    pub server: Option<S<RawServer>>,
    pub tokens: Option<S<RawTokens>>,
    pub store: Option<S<RawStore>>,
    pub login: Option<S<RawLogin>>,
    pub headers: Option<S<RawHeaders>>,
    pub authz: Option<S<RawAuthz>>,
    pub routes: Vec<S<RawRoute>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthz {
    pub enabled: Option<bool>,
    pub path_prefix: Option<S<String>>,
    pub allow_from: Option<Vec<S<String>>>,
    pub grpc: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub http: Option<S<String>>,
    pub https: Option<S<String>>,
    pub admin: Option<S<String>>,
    pub workers: Option<S<usize>>,
    pub trusted_proxies: Option<Vec<S<String>>>,
    pub tls: Option<S<RawTls>>,
    pub limits: Option<RawLimits>,
    pub underscore_headers: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: Option<S<String>>,
    pub key_file: Option<S<String>>,
    pub self_signed: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_header_bytes: Option<S<usize>>,
    pub max_headers: Option<S<usize>>,
    pub max_connections: Option<S<usize>>,
    pub header_read_timeout: Option<S<String>>,
    pub tls_handshake_timeout: Option<S<String>>,
    pub upstream_connect_timeout: Option<S<String>>,
    pub upstream_timeout: Option<S<String>>,
    pub shutdown_grace: Option<S<String>>,
    pub max_body_bytes: Option<S<u64>>,
    pub request_body_timeout: Option<S<String>>,
    pub idle_timeout: Option<S<String>>,
    pub h2_max_concurrent_streams: Option<S<usize>>,
    pub upstream_max_connections: Option<S<usize>>,
    pub upstream_resolve_interval: Option<S<String>>,
}

/// `audience = "api"` or `audience = ["api", "web"]`; a route's `upstream`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokens {
    pub issuer: Option<S<String>>,
    pub audience: Option<S<OneOrMany>>,
    pub access_ttl: Option<S<String>>,
    pub refresh_ttl: Option<S<String>>,
    pub leeway: Option<S<String>>,
    pub signing_key: Option<S<String>>,
    pub verify_cache: Option<S<usize>>,
    pub max_lifetime: Option<S<String>>,
    pub accept_bare_token: Option<bool>,
    #[serde(default)]
    pub keys: Vec<S<RawKey>>,
    #[serde(default)]
    pub trusted: Vec<S<RawTrusted>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub kid: Option<S<String>>,
    pub algorithm: Option<S<String>>,
    pub private_key_file: Option<S<String>>,
    pub private_key_env: Option<S<String>>,
    pub public_key_file: Option<S<String>>,
    pub secret_file: Option<S<String>>,
    pub secret_env: Option<S<String>>,
    pub secret: Option<S<String>>,
    pub generate_if_missing: Option<S<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrusted {
    pub issuer: Option<S<String>>,
    pub jwks_url: Option<S<String>>,
    pub jwks_file: Option<S<String>>,
    pub secret_file: Option<S<String>>,
    pub secret_env: Option<S<String>>,
    pub public_key_file: Option<S<String>>,
    pub algorithms: Option<Vec<S<String>>>,
    pub audience: Option<S<OneOrMany>>,
    pub subject_claim: Option<S<String>>,
    pub roles_claim: Option<S<String>>,
    pub required_claims: Option<S<toml::Table>>,
    pub cookie: Option<S<String>>,
    pub csrf_header: Option<S<String>>,
    pub csrf_claim: Option<S<String>>,
    pub ca_file: Option<S<String>>,
    pub max_lifetime: Option<S<String>>,
    pub require_typ: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub backend: Option<S<String>>,
    pub path: Option<S<String>>,
    pub url: Option<S<String>>,
    pub url_env: Option<S<String>>,
    pub key_prefix: Option<S<String>>,
    pub on_unavailable: Option<S<String>>,
    pub max_staleness: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub ack_replicas: Option<S<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogin {
    pub enabled: Option<bool>,
    pub path_prefix: Option<S<String>>,
    pub registration: Option<bool>,
    pub default_roles: Option<Vec<S<String>>>,
    pub admin_role: Option<S<String>>,
    pub users_file: Option<S<String>>,
    pub cookies: Option<bool>,
    pub min_password_length: Option<S<usize>>,
    pub max_attempts: Option<S<u32>>,
    pub attempt_window: Option<S<String>>,
    pub refresh_reuse_grace: Option<S<String>>,
    pub tokens_in_body: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaders {
    pub user: Option<S<String>>,
    pub roles: Option<S<String>>,
    #[serde(default)]
    pub claims: BTreeMap<String, S<String>>,
    pub strip_prefix: Option<S<String>>,
    pub forward_token: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub path: Option<S<String>>,
    pub host: Option<S<String>>,
    pub methods: Option<Vec<S<String>>>,
    pub upstream: Option<S<OneOrMany>>,
    pub auth: Option<S<String>>,
    pub roles: Option<Vec<S<String>>>,
    pub scopes: Option<Vec<S<String>>>,
    pub strip_prefix: Option<bool>,
    pub max_body_bytes: Option<S<u64>>,
    pub body_timeout: Option<S<String>>,
    pub upstream_tls: Option<S<RawUpstreamTls>>,
    pub cors: Option<S<RawCors>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    pub ca_file: Option<S<String>>,
    pub server_name: Option<S<String>>,
    pub client_cert_file: Option<S<String>>,
    pub client_key_file: Option<S<String>>,
    pub insecure_skip_verify: Option<S<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    pub allow_origins: Vec<S<String>>,
    pub allow_methods: Option<Vec<S<String>>>,
    pub allow_headers: Option<Vec<S<String>>>,
    pub expose_headers: Option<Vec<S<String>>>,
    pub allow_credentials: Option<bool>,
    pub max_age: Option<S<String>>,
}

/// A problem found while reading the file's shape: a byte span and a message.
pub type RawError = (Option<Range<usize>>, String);

const SECTIONS: &str = "server, tokens, store, login, headers, authz, route";

/// Reads the file's shape, collecting every problem instead of stopping at the first.
pub fn parse(src: &str) -> (RawConfig, Vec<RawError>) {
    let (doc, syntax_errors) = DeTable::parse_recoverable(src);
    let mut errors: Vec<RawError> = syntax_errors.into_iter().map(|e| (e.span(), e.message().to_owned())).collect();
    let mut raw = RawConfig::default();
    for (key, value) in doc.into_inner() {
        let span = value.span();
        match key.get_ref().as_ref() {
            "server" => raw.server = section(value, &mut errors),
            "tokens" => raw.tokens = section(value, &mut errors),
            "store" => raw.store = section(value, &mut errors),
            "login" => raw.login = section(value, &mut errors),
            "headers" => raw.headers = section(value, &mut errors),
            "authz" => raw.authz = section(value, &mut errors),
            "route" => match value.into_inner() {
                DeValue::Array(items) => {
                    for item in items {
                        if let Some(route) = section(item, &mut errors) {
                            raw.routes.push(route);
                        }
                    }
                }
                _ => errors.push((Some(span), "`route` must be an array of tables: write [[route]]".to_owned())),
            },
            other => errors.push((Some(key.span()), format!("unknown section `{other}`, expected one of: {SECTIONS}"))),
        }
    }
    (raw, errors)
}

fn section<T: DeserializeOwned>(value: Spanned<DeValue<'_>>, errors: &mut Vec<RawError>) -> Option<S<T>> {
    let span = value.span();
    if !matches!(value.get_ref(), DeValue::Table(_)) {
        errors.push((Some(span), format!("expected a table, found {}", value.get_ref().type_str())));
        return None;
    }
    match S::<T>::deserialize(ValueDeserializer::from(value)) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push((e.span().or(Some(span)), e.message().to_owned()));
            None
        }
    }
}
