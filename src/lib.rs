//! authgate: a reverse proxy that authenticates every request before an
//! unmodified backend sees it.
//!
//! # The path of a request
//!
//! ```text
//! server (listener, TLS handshake, hyper limits)
//!   -> proxy::handle          one straight line; errors -> error::GatewayError::into_response
//!     -> decide::decide       the one decision, for every door (the proxy, explain):
//!          path::normalize, endpoints::find, router (host + methods + longest prefix),
//!          auth::authenticate (extract -> verify -> denylist => Authenticated),
//!          auth::authorize (roles, scopes => the only `Authorized`)
//!     -> proxy::forward       header hygiene, X-Forwarded-*, identity; stream to the upstream
//! ```
//!
//! `config` parses and validates the file (every problem at once, with its
//! location); `state` builds the live parts from it. `ARCHITECTURE.md` at
//! the repository root is the longer tour.

#![forbid(unsafe_code)]

pub mod auth;
pub mod authz;
pub mod body;
pub mod client_tls;
pub mod config;
pub mod decide;
pub mod downstream;
pub mod endpoints;
pub mod error;
pub mod headers;
pub mod logs;
pub mod metrics;
pub mod path;
pub mod proxy;
pub mod report;
pub mod router;
pub mod server;
pub mod state;
pub mod store;
pub mod tls;
pub mod upstream;

pub use server::Gateway;
pub use state::State;
