//! Authentication and authorization: who is calling, and may they.
//!
//! The request path through here is `extract` (the credential's syntax) ->
//! `verify` (signature and claims, keys from `keys`) -> denylist (the store,
//! in the stores work) -> `policy` (route rules, builds `Authorized`).
//! `mint` makes our own tokens. Nothing here touches the network or the
//! upstream request.

pub mod extract;
pub mod keys;
pub mod mint;
pub mod policy;
pub mod verify;

use http::HeaderMap;

use crate::config::AuthMode;
pub use policy::{Authorized, authorize};
pub use verify::{Identity, TokenError, Verifier};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials")]
    MissingToken,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("caller lacks the route's role")]
    InsufficientRole,
}

/// Finds and verifies the caller's token as the route's `auth` mode asks.
/// `Ok(None)`: anonymous, allowed only where the mode allows it.
pub fn authenticate(headers: &HeaderMap, mode: AuthMode, verifier: &Verifier) -> Result<Option<Identity>, AuthError> {
    if mode == AuthMode::None {
        return Ok(None);
    }
    match extract::bearer_token(headers)? {
        Some(token) => Ok(Some(verifier.verify(token)?)),
        None if mode == AuthMode::Optional => Ok(None),
        None => Err(AuthError::MissingToken),
    }
}
