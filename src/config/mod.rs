//! The gateway's configuration: typed, validated values.
//!
//! Owns the two-stage load: `raw.rs` reads the file's shape, `validate.rs`
//! turns it into the types below and reports every problem at once as
//! `FILE:LINE:COL: message`. Nothing here binds a port, reads a key file or
//! touches the network; key material and certificates are loaded by the
//! state built from this (`crate::state`), with the locations kept here.

mod diagnostic;
mod duration;
mod raw;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use diagnostic::{ConfigErrors, Diagnostic, Location, SourceMap};
pub use duration::{format_duration, parse_duration};
pub use jsonwebtoken::Algorithm;

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let src = read(path)?;
    Config::from_str(&src, path)
}

/// Reads a config file's text; a failure is reported at its first line.
pub fn read(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![Diagnostic {
            location: Location { file: path.into(), line: 1, column: 1 },
            message: format!("cannot read config file: {e}"),
        }])
    })
}

impl Config {
    /// Validates config text; `path` names it in errors and anchors relative paths.
    pub fn from_str(src: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let (config, diagnostics) = Config::parse(src, path);
        if diagnostics.is_empty() { Ok(config) } else { Err(ConfigErrors(diagnostics)) }
    }

    /// The config as far as it is valid, and every problem found, in file order.
    /// Lets a caller check more (keys, certificates) before reporting all at once.
    pub fn parse(src: &str, path: &Path) -> (Config, Vec<Diagnostic>) {
        let map = SourceMap::new(path, src);
        let (raw, errors) = raw::parse(src);
        let mut diagnostics: Vec<Diagnostic> =
            errors.into_iter().map(|(span, msg)| map.diagnostic(span, msg)).collect();
        let config = validate::validate(raw, &map, &mut diagnostics);
        sort_diagnostics(&mut diagnostics);
        (config, diagnostics)
    }
}

/// File order, duplicates removed.
pub fn sort_diagnostics(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.sort_by_key(|d| (d.location.line, d.location.column));
    diagnostics.dedup();
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from.
    pub source: PathBuf,
    pub server: Server,
    pub tokens: Tokens,
    pub store: Store,
    pub login: Login,
    pub headers: Headers,
    pub authz: Authz,
    /// In file order; the router decides precedence.
    pub routes: Vec<Route>,
}

/// `[route.upstream_tls]`: how an `https://` upstream is verified and what
/// the gateway presents to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct UpstreamTls {
    /// PEM CA certificates to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// The name to send (SNI) and verify, instead of the URL's host.
    pub server_name: Option<String>,
    /// A client certificate chain and its key (mTLS to the upstream).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// No certificate check at all: validation allows it for loopback endpoints only.
    pub insecure_skip_verify: bool,
}

/// `[authz]`: decision mode, for an ingress that asks before it forwards.
#[derive(Debug, Clone)]
pub struct Authz {
    pub enabled: bool,
    /// Where the decision endpoints live: `{prefix}/auth-request`, `/forward-auth`, `/ext-authz/...`.
    pub path_prefix: String,
    /// Who may ask; empty: anyone (an answer only concerns the caller's own credentials).
    pub allow_from: Vec<ipnet::IpNet>,
    /// A listener for Envoy's gRPC `ext_authz` (HTTP/2, prior knowledge).
    pub grpc: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// Request threads; already resolved from `0` to the CPUs available.
    pub workers: usize,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub tls: Option<Tls>,
    pub limits: Limits,
    pub underscore_headers: UnderscoreHeaders,
}

/// `[server] underscore_headers`: what becomes of client header names with
/// `_`, which CGI/WSGI servers read as `-` (docs/configuration.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnderscoreHeaders {
    /// Removed before anything reads them (nginx's default).
    Drop,
    /// The request is refused: 400 `bad_request`.
    Reject,
    /// Kept; names the gateway strips or sets are still matched folded.
    Allow,
}

impl Server {
    /// Whether `ip` is a trusted proxy, whose `X-Forwarded-*` may be believed.
    pub fn is_trusted_proxy(&self, ip: &std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(ip))
    }
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Generate a self-signed pair at startup when the files are missing (dev only).
    pub self_signed: bool,
    pub location: Location,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    pub upstream_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Request bodies above this are refused with 413 (per route: `max_body_bytes`; 0 = no limit).
    pub max_body_bytes: u64,
    /// How long the gateway's own endpoints wait for a whole request body (408 after).
    pub request_body_timeout: Duration,
    /// A connection that moves no byte either way for this long is closed
    /// gracefully (in-flight requests finish first).
    pub idle_timeout: Duration,
    pub h2_max_concurrent_streams: u32,
    /// Connections to one upstream endpoint, busy and idle (HTTP/2: streams in flight).
    pub upstream_max_connections: usize,
    /// How often upstream endpoints written as DNS names are resolved again.
    pub upstream_resolve_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            upstream_connect_timeout: Duration::from_secs(2),
            upstream_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(20),
            max_body_bytes: 10 * 1024 * 1024,
            request_body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            h2_max_concurrent_streams: 100,
            upstream_max_connections: 1024,
            upstream_resolve_interval: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Tokens {
    pub issuer: String,
    pub audience: Vec<String>,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub leeway: Duration,
    /// The kid that signs new tokens, if any key can sign.
    pub signing_key: Option<String>,
    pub verify_cache: usize,
    /// The longest an own access token may live (`exp - iat`, and `exp - now`);
    /// a longer-lived one was not minted by this gateway's policy.
    pub max_lifetime: Duration,
    pub keys: Vec<KeySpec>,
    pub trusted: Vec<TrustedIssuer>,
    /// `Authorization: <jwt>` without a scheme is read as a bearer token.
    pub accept_bare_token: bool,
}

#[derive(Debug, Clone)]
pub struct KeySpec {
    pub kid: String,
    pub algorithm: Algorithm,
    pub source: KeySource,
    pub location: Location,
}

/// Where a key's material comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// HMAC secret (HS*).
    Secret(SecretSource),
    /// An asymmetric private key, PEM (PKCS#8, or PKCS#1/SEC1); it can sign and verify.
    Private { source: SecretSource, generate_if_missing: bool },
    /// An asymmetric public key, PEM: verify-only (rotated out of signing).
    Public { path: PathBuf },
}

#[derive(Clone)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
    /// Accepted for HMAC secrets with a startup warning; never printed.
    Inline(String),
}

impl SecretSource {
    /// A secret's bytes from a file (warning if others may read it), an
    /// environment variable, or the config; one final newline is dropped.
    pub fn read(&self) -> Result<Vec<u8>, String> {
        let mut bytes = match self {
            SecretSource::File(path) => {
                warn_if_readable_by_others(path);
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
            }
            SecretSource::Env(name) => std::env::var(name)
                .map_err(|_| format!("environment variable `{name}` is not set or not UTF-8"))?
                .into_bytes(),
            SecretSource::Inline(s) => s.clone().into_bytes(),
        };
        // Editors and `echo` add a final newline; it is not part of the secret.
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        Ok(bytes)
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "key file is readable by group or others; chmod 600 it");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "File({})", p.display()),
            SecretSource::Env(name) => write!(f, "Env({name})"),
            SecretSource::Inline(_) => f.write_str("Inline(<redacted>)"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    /// The exact `iss`; `None`: the entry for tokens that carry no `iss` (at most one).
    pub issuer: Option<String>,
    pub keys: TrustedKeys,
    /// Empty: `aud` is not checked (static keys only).
    pub audience: Vec<String>,
    /// Pinned algorithms (required with static keys); empty: each JWKS key's own.
    pub algorithms: Vec<Algorithm>,
    /// The caller's name: `sub`, or another claim (`user`, `username`, ...).
    pub subject_claim: String,
    /// The roles claim: a key, else a dotted path (`realm_access.roles`).
    pub roles_claim: String,
    /// Claims the token must carry with exactly these values (`type = "access"`).
    pub required_claims: Vec<(String, serde_json::Value)>,
    /// Also read the token from this cookie, with a double-submit CSRF rule.
    pub cookie: Option<TrustedCookie>,
    pub ca_file: Option<PathBuf>,
    /// The longest a token of this issuer may live (`exp - iat`, `exp - now`).
    pub max_lifetime: Duration,
    /// The header `typ` every token must have (RFC 9068's `at+jwt`); `None`: any access-token `typ`.
    pub require_typ: Option<String>,
    pub location: Location,
}

impl TrustedIssuer {
    /// How logs and `/readyz` name it.
    pub fn name(&self) -> &str {
        self.issuer.as_deref().unwrap_or("(tokens without iss)")
    }
}

/// Where a trusted issuer's keys come from.
#[derive(Debug, Clone)]
pub enum TrustedKeys {
    /// Fetched, and refreshed, from the issuer.
    JwksUrl(http::Uri),
    /// A JWKS on disk, read at start and on reload.
    JwksFile(PathBuf),
    /// One HMAC secret (at least 32 bytes), shared with the app that mints.
    Secret(SecretSource),
    /// One public key, PEM.
    PublicKeyFile(PathBuf),
}

/// A trusted issuer's cookie (Flask-JWT-Extended's cookie mode): the token,
/// and for unsafe methods a header that must equal one of its claims.
#[derive(Debug, Clone)]
pub struct TrustedCookie {
    pub name: String,
    pub csrf_header: http::HeaderName,
    pub csrf_claim: String,
}

#[derive(Debug, Clone)]
pub enum Store {
    Embedded {
        path: PathBuf,
    },
    Redis {
        url: SecretSource,
        key_prefix: String,
        on_unavailable: OnUnavailable,
        max_staleness: Duration,
        /// Bound on every Redis call.
        timeout: Duration,
        /// Replicas that must hold a write before it is acknowledged (`WAIT`);
        /// `None`: one once the master has shown a connected replica, else none.
        ack_replicas: Option<u32>,
    },
}

impl Store {
    /// What protected routes do while the denylist copy is not confirmed current.
    pub fn on_unavailable(&self) -> OnUnavailable {
        match self {
            Store::Embedded { .. } => OnUnavailable::Deny,
            Store::Redis { on_unavailable, .. } => *on_unavailable,
        }
    }

    /// How long the denylist copy may go unconfirmed.
    pub fn max_staleness(&self) -> Duration {
        match self {
            Store::Embedded { .. } => Duration::from_secs(2),
            Store::Redis { max_staleness, .. } => *max_staleness,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnavailable {
    Deny,
    Allow,
}

#[derive(Debug, Clone)]
pub struct Login {
    pub enabled: bool,
    pub path_prefix: String,
    pub registration: bool,
    pub default_roles: Vec<String>,
    pub admin_role: String,
    pub users_file: Option<PathBuf>,
    pub cookies: bool,
    pub min_password_length: usize,
    pub max_attempts: u32,
    pub attempt_window: Duration,
    /// A refresh token presented again within this of its first use rotates
    /// again (two tabs); later, it is reuse. Zero: every second use is reuse.
    pub refresh_reuse_grace: Duration,
    /// With `cookies`, also put the tokens in login's and refresh's JSON body.
    pub tokens_in_body: bool,
}

#[derive(Debug, Clone)]
pub struct Headers {
    pub user: http::HeaderName,
    pub roles: http::HeaderName,
    /// Claim (a key, else a dotted path) -> header name, in name order.
    pub claims: Vec<(String, http::HeaderName)>,
    /// Lowercase; empty means no prefix is stripped (the identity headers still are).
    pub strip_prefix: String,
    pub forward_token: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// No token is looked at; forwarded without identity.
    None,
    /// No token: forwarded without identity. A token that fails: 401, never anonymous.
    Optional,
    Required,
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthMode::None => "none",
            AuthMode::Optional => "optional",
            AuthMode::Required => "required",
        })
    }
}

#[derive(Debug, Clone)]
pub enum Upstream {
    /// Answers with the request it received, as JSON.
    Echo,
    /// None: the route exists for decisions only (`[authz]`); proxied, it is 404.
    None,
    /// `http://host:port` with an optional base path (no trailing `/`);
    /// `h2c://`: HTTP/2 with prior knowledge (a gRPC service in the pod);
    /// `https://` (`tls`): TLS, HTTP/1.1 or HTTP/2 by ALPN. One or more
    /// endpoints (as written: a DNS name stands for all its addresses).
    Http { endpoints: Vec<http::uri::Authority>, base_path: String, h2: bool, tls: Option<UpstreamTls> },
}

impl Upstream {
    /// Its endpoints as written, with scheme and base path, and no TLS
    /// details: how the logs and the metrics name it.
    pub fn addresses(&self) -> Addresses<'_> {
        Addresses(self)
    }
}

/// `Upstream::addresses`.
pub struct Addresses<'a>(&'a Upstream);

impl fmt::Display for Addresses<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Upstream::Echo => f.write_str("builtin:echo"),
            Upstream::None => f.write_str("(decisions only)"),
            Upstream::Http { endpoints, base_path, h2, tls } => {
                let scheme = match (tls, h2) {
                    (Some(_), _) => "https",
                    (None, true) => "h2c",
                    (None, false) => "http",
                };
                for (i, authority) in endpoints.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{scheme}://{authority}{base_path}")?;
                }
                Ok(())
            }
        }
    }
}

/// The addresses, then the TLS settings (`check`, `explain`).
impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.addresses().fmt(f)?;
        if let Upstream::Http { tls: Some(t), .. } = self {
            if let Some(ca) = &t.ca_file {
                write!(f, " (CA {})", ca.display())?;
            }
            if let Some(name) = &t.server_name {
                write!(f, " (server name {name})")?;
            }
            if t.client_cert.is_some() {
                f.write_str(" (client certificate)")?;
            }
            if t.insecure_skip_verify {
                f.write_str(" (certificate NOT verified)")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Normalized, without a trailing `/` (except the root route `/`).
    pub path: String,
    /// Lowercase host name, without port.
    pub host: Option<String>,
    pub methods: Option<Vec<http::Method>>,
    pub upstream: Upstream,
    pub auth: AuthMode,
    pub roles: Vec<String>,
    /// Every one required (from `scope` or `scp`).
    pub scopes: Vec<String>,
    pub strip_prefix: bool,
    /// Request bodies above this get 413 (0 = no limit); from `[server.limits]` unless set.
    pub max_body_bytes: u64,
    /// The whole request body must reach the gateway within this (408), from
    /// `[server.limits] request_body_timeout` unless set; zero: no bound.
    pub body_timeout: Duration,
    pub cors: Option<Cors>,
    pub location: Location,
}

/// CORS for one route: preflights answered by the gateway, actual responses decorated.
#[derive(Debug, Clone)]
pub struct Cors {
    /// Exact origins (`scheme://host[:port]`), or `*` (only without credentials).
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<http::Method>,
    pub allow_headers: Vec<http::HeaderName>,
    pub expose_headers: Vec<http::HeaderName>,
    pub allow_credentials: bool,
    pub max_age: Option<Duration>,
}
