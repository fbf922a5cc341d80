//! Authentication and authorization: who is calling, and may they.
//!
//! The request path through here is `extract` (the credential's syntax) ->
//! `verify` (signature and claims, keys from `keys`) -> denylist (the store,
//! in the stores work) -> `policy` (route rules, builds `Authorized`).
//! `mint` makes our own tokens. Nothing here touches the network or the
//! upstream request.

pub mod cookies;
pub mod extract;
pub mod keys;
pub mod mint;
pub mod password;
pub mod policy;
pub mod signature;
pub mod trusted;
pub mod users;
pub mod verify;

use std::sync::Arc;

use http::{HeaderMap, Method};

use crate::config::{AuthMode, OnUnavailable};
use crate::store::Stores;
pub use policy::{Authorized, authorize};
pub use verify::{Identity, TokenError, Verifier, claim_path};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials")]
    MissingToken,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("caller lacks the route's role")]
    InsufficientRole,
    #[error("caller lacks one of the route's scopes")]
    InsufficientScope,
    #[error("token revoked")]
    Revoked,
    #[error("the denylist copy is not confirmed current")]
    StoreUnavailable,
    #[error("CSRF check failed")]
    CsrfFailed,
}

/// Finds and verifies the caller's token as the route's `auth` mode asks:
/// the Bearer header, else (cookie mode) the access cookie with its CSRF
/// rule. A request with a header never falls back to the cookie.
/// `Ok(None)`: anonymous, allowed only where the mode allows it.
pub async fn authenticate(
    method: &Method,
    headers: &HeaderMap,
    mode: AuthMode,
    verifier: &Verifier,
    cookie_mode: bool,
) -> Result<Option<Arc<Identity>>, AuthError> {
    if mode == AuthMode::None {
        return Ok(None);
    }
    if let Some(token) = extract::bearer_token(headers)? {
        // Two different credentials: which one the caller meant is unknowable (Kong refuses too).
        if cookie_mode && cookies::get(headers, cookies::ACCESS_COOKIE)?.is_some_and(|cookie| cookie != token) {
            return Err(TokenError::Malformed("a bearer token and a different access cookie").into());
        }
        return Ok(Some(verifier.verify_waiting(token).await?));
    }
    if cookie_mode && let Some(token) = cookies::get(headers, cookies::ACCESS_COOKIE)? {
        let identity = verifier.verify_waiting(token).await?;
        cookies::check_csrf(method, headers, &identity)?;
        return Ok(Some(identity));
    }
    match mode {
        AuthMode::Optional => Ok(None),
        _ => Err(AuthError::MissingToken),
    }
}

/// SPEC §3 step 6: the token's `jti`, and its subject's cut-off, against the
/// in-process denylist copy. No network round trip. While the copy cannot
/// be confirmed current, `on_unavailable` decides.
pub fn check_revocation(identity: &Identity, stores: Option<&Stores>) -> Result<(), AuthError> {
    let Some(stores) = stores else { return Ok(()) };
    if !stores.is_current() {
        match stores.on_unavailable {
            OnUnavailable::Deny => return Err(AuthError::StoreUnavailable),
            OnUnavailable::Allow => {
                tracing::error!(sub = %identity.sub, "denylist not confirmed current; letting the request through (on_unavailable = allow)");
            }
        }
    }
    if stores.denylist.is_revoked(&identity.jti, &identity.sub, identity.issued_at, identity.session()) {
        return Err(AuthError::Revoked);
    }
    Ok(())
}
