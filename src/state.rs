//! Everything a request needs, built once from a validated config.
//!
//! Owns turning `Config` into live parts: keys loaded and parsed, the route
//! table, the verifier, the TLS acceptor and the upstream client. Building
//! reports every key or certificate problem with its config location; a
//! `State` that exists is complete. It is swapped whole on reload, so no
//! request ever sees half of two configs.

use std::sync::Arc;

use crate::auth::Verifier;
use crate::auth::keys::{KeySet, LoadMode};
use crate::config::{Config, ConfigErrors, sort_diagnostics};
use crate::router::Router;
use crate::upstream::Upstreams;

pub struct State {
    pub config: Config,
    pub router: Router,
    pub keys: Arc<KeySet>,
    pub verifier: Verifier,
    pub tls: Option<crate::tls::Terminator>,
    pub upstream: Upstreams,
    /// The store and its denylist copy; `None` for dry runs (`check`, `explain`).
    pub stores: Option<Arc<crate::store::Stores>>,
    /// Read-only users (`login.users_file`).
    pub users_file: crate::auth::users::UsersFile,
    /// Password hashing off the request threads; with `[login] enabled`.
    pub hasher: Option<Arc<crate::auth::password::Hasher>>,
    /// Lives as long as the gateway: a reload hands it on.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Trusted issuers; their keys arrive once `start_background` ran.
    pub trusted: Vec<Arc<crate::auth::trusted::Issuer>>,
}

/// Reads, validates and builds, reporting the file's problems and its keys'
/// and certificates' problems together. With problems in the file, nothing
/// is created on disk whatever `mode` says.
pub fn load(path: &std::path::Path, mode: LoadMode) -> Result<State, ConfigErrors> {
    let src = crate::config::read(path)?;
    let (config, mut problems) = Config::parse(&src, path);
    let mode = if problems.is_empty() { mode } else { LoadMode::CheckOnly };
    match State::build(config, mode) {
        Ok(state) if problems.is_empty() => return Ok(state),
        Ok(_) => {}
        Err(ConfigErrors(more)) => problems.extend(more),
    }
    sort_diagnostics(&mut problems);
    Err(ConfigErrors(problems))
}

impl State {
    /// Starts what a running gateway needs besides requests: the trusted
    /// issuers' key refresh and the upstreams' DNS resolution (each stops
    /// when its state is dropped).
    pub fn start_background(&self) {
        self.upstream.start_resolving();
        for issuer in &self.trusted {
            issuer.spawn_refresh();
        }
    }

    /// Loads keys and certificates; in `CheckOnly` mode nothing is created on disk.
    pub fn build(config: Config, mode: LoadMode) -> Result<State, ConfigErrors> {
        let mut errors = Vec::new();
        let keys = KeySet::load(&config.tokens, mode).map_err(|e| errors.extend(e)).ok();
        let tls = match &config.server.tls {
            Some(tls) => match crate::tls::terminator(tls, mode) {
                Ok(a) => Some(a),
                Err(d) => {
                    errors.push(d);
                    None
                }
            },
            None => None,
        };
        let users_file = match &config.login.users_file {
            Some(path) if config.login.enabled => {
                crate::auth::users::UsersFile::load(path).map_err(|e| errors.extend(e)).unwrap_or_default()
            }
            _ => Default::default(),
        };
        let mut trusted = Vec::new();
        for t in &config.tokens.trusted {
            match crate::auth::trusted::Issuer::new(t.clone()) {
                Ok(issuer) => trusted.push(Arc::new(issuer)),
                Err(message) => errors.push(crate::config::Diagnostic { location: t.location.clone(), message }),
            }
        }
        let upstream = match Upstreams::new(&config.routes, &config.server.limits) {
            Ok(upstreams) => Some(upstreams),
            Err(problems) => {
                for (index, message) in problems {
                    let location = config.routes[index].location.clone();
                    errors.push(crate::config::Diagnostic { location, message });
                }
                None
            }
        };
        let (Some(keys), Some(upstream)) = (keys.filter(|_| errors.is_empty()), upstream) else {
            return Err(ConfigErrors(errors));
        };
        let verifier = Verifier::new(&config.tokens, &keys, &trusted);
        Ok(State {
            router: Router::new(config.routes.clone()),
            keys: Arc::new(keys),
            verifier,
            tls,
            upstream,
            stores: None,
            users_file,
            hasher: hasher(&config)?,
            metrics: Arc::default(),
            trusted,
            config,
        })
    }
}

fn hasher(config: &Config) -> Result<Option<Arc<crate::auth::password::Hasher>>, ConfigErrors> {
    if !config.login.enabled {
        return Ok(None);
    }
    crate::auth::password::Hasher::for_this_machine().map(|h| Some(Arc::new(h))).map_err(|e| {
        ConfigErrors(vec![crate::config::Diagnostic {
            location: crate::config::Location { file: config.source.as_path().into(), line: 1, column: 1 },
            message: format!("cannot set up password hashing: {e}"),
        }])
    })
}
