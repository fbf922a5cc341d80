//! Authentication and authorization: who is calling, and may they.
//!
//! The request path through here is `extract` (the credential's syntax) ->
//! `verify` (signature and claims, keys from `keys`) -> the denylist (the
//! stores' in-process copy) -> `policy` (route rules, builds `Authorized`).
//! Two types carry the result, and only this module can make them:
//! `Authenticated` (verified and not revoked: `authenticate` is the one way
//! to get one) and `Authorized` (and allowed by the route: `authorize`).
//! `mint` makes our own tokens. Nothing here touches the upstream request.

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
pub use policy::{Authorized, authorize, require_role};
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

/// A caller whose token was verified and is not revoked. Only
/// `authenticate` makes one, so no path can skip the denylist.
#[derive(Debug, Clone)]
pub struct Authenticated(Arc<Identity>);

impl std::ops::Deref for Authenticated {
    type Target = Identity;
    fn deref(&self) -> &Identity {
        &self.0
    }
}

/// Where `authenticate` looks, and with what.
pub struct Credentials<'a> {
    pub verifier: &'a Verifier,
    /// The denylist; `None`: no store (`explain`), nothing is revoked.
    pub stores: Option<&'a Stores>,
    /// Cookie mode: the access cookie, with its CSRF rule.
    pub cookies: bool,
    /// `[tokens] accept_bare_token`.
    pub bare: bool,
}

/// Finds and verifies the caller's token as the route's `auth` mode asks,
/// then checks it against the denylist: the Bearer header, else (cookie
/// mode) the access cookie with its CSRF rule. A request with a header
/// never falls back to the cookie. `Ok(None)`: anonymous, allowed only
/// where the mode allows it.
pub async fn authenticate(
    method: &Method,
    headers: &HeaderMap,
    mode: AuthMode,
    with: &Credentials<'_>,
) -> Result<Option<Authenticated>, AuthError> {
    if mode == AuthMode::None {
        return Ok(None);
    }
    let identity = if let Some(token) = extract::token(headers, with.bare)? {
        // Two different credentials: which one the caller meant is unknowable (Kong refuses too).
        if with.cookies && cookies::get(headers, cookies::ACCESS_COOKIE)?.is_some_and(|cookie| cookie != token) {
            return Err(TokenError::Malformed("a bearer token and a different access cookie").into());
        }
        with.verifier.verify_waiting(token).await?
    } else if with.cookies
        && let Some(token) = cookies::get(headers, cookies::ACCESS_COOKIE)?
    {
        let identity = with.verifier.verify_waiting(token).await?;
        cookies::check_csrf(method, headers, &identity)?;
        identity
    } else if let Some((issuer, token)) = trusted_cookie(headers, with.verifier)? {
        // An app's own cookie (Flask-JWT-Extended): the token must be that entry's,
        // and unsafe methods carry its double-submit header.
        let identity = with.verifier.verify_waiting(token).await?;
        let entry_iss = issuer.config.issuer.as_deref();
        if identity.claims.get("iss").and_then(serde_json::Value::as_str) != entry_iss {
            return Err(TokenError::Malformed("a cookie holds another issuer's token").into());
        }
        if let Some(cookie) = &issuer.config.cookie {
            cookies::check_double_submit(method, headers, &identity, &cookie.csrf_header, &cookie.csrf_claim)?;
        }
        identity
    } else {
        return match mode {
            AuthMode::Optional => Ok(None),
            _ => Err(AuthError::MissingToken),
        };
    };
    check_revocation(&identity, with.stores)?;
    Ok(Some(Authenticated(identity)))
}

/// The first trusted entry's cookie present in the request, and its token.
fn trusted_cookie<'h>(
    headers: &'h HeaderMap,
    verifier: &'h Verifier,
) -> Result<Option<(&'h Arc<trusted::Issuer>, &'h str)>, TokenError> {
    for issuer in verifier.trusted_cookies() {
        if let Some(cookie) = &issuer.config.cookie
            && let Some(token) = cookies::get(headers, &cookie.name)?
        {
            return Ok(Some((issuer, token)));
        }
    }
    Ok(None)
}

/// docs/endpoints.md step 6: the token's `jti`, and its subject's cut-off, against the
/// in-process denylist copy. No network round trip. While the copy cannot
/// be confirmed current, `on_unavailable` decides.
fn check_revocation(identity: &Identity, stores: Option<&Stores>) -> Result<(), AuthError> {
    let Some(stores) = stores else { return Ok(()) };
    if !stores.is_current() {
        match stores.on_unavailable {
            OnUnavailable::Deny => return Err(AuthError::StoreUnavailable),
            OnUnavailable::Allow => {
                tracing::error!(sub = %identity.sub, "denylist not confirmed current; letting the request through (on_unavailable = allow)");
            }
        }
    }
    if stores.denylist.is_revoked(&identity.jti, &identity.sub, identity.issued_at, identity.session.as_deref()) {
        return Err(AuthError::Revoked);
    }
    Ok(())
}
