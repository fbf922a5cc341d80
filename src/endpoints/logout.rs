//! `POST /auth/logout`: revokes the access token's `jti`, its session (every
//! access token with its `sid`) and its refresh family.
//!
//! The family comes from the token's `sid`, and from a refresh token in the
//! body or cookie if one is sent. A revocation the store did not take is an
//! error, never a 204.

use http::Response;
use http::request::Parts;
use hyper::body::Incoming;

use super::refresh::{RefreshRequest, presented};
use crate::body::Body;
use crate::downstream::Downstream;
use crate::error::GatewayError;
use crate::state::State;
use crate::store::{Revocation, now};

pub async fn logout(
    parts: Parts,
    body: Incoming,
    downstream: &Downstream,
    state: &State,
) -> Result<Response<Body>, GatewayError> {
    super::refuse_cross_site(&parts, state)?;
    let caller = super::caller(&parts, state).await?;
    let request: Option<RefreshRequest> = super::read_optional_json(body, state).await?;
    let stores = super::stores(state)?;
    let until = caller.expires_at.saturating_add(state.config.tokens.leeway.as_secs());
    stores.revoke(&Revocation::Jti { jti: caller.jti.clone(), expires_at: until }).await?;
    if let Some(sid) = caller.claims.get("sid").and_then(|s| s.as_str()) {
        stores.store.revoke_family(sid).await?;
        // Every access token of the session, not only the one presented.
        let session_until =
            now().saturating_add(state.config.tokens.access_ttl.as_secs() + state.config.tokens.leeway.as_secs());
        stores.revoke(&Revocation::Session { sid: sid.to_owned(), expires_at: session_until.max(until) }).await?;
    }
    if let Some(token) = presented(request, &parts, state).filter(|t| super::session::plausible_refresh_token(t)) {
        let hash = super::session::hash_refresh_token(&token);
        if let Some(family) = stores.store.family_of(&hash, now()).await? {
            stores.store.revoke_family(&family).await?;
        }
    }
    let ip = super::client_ip(&parts, downstream, state);
    tracing::info!(target: "audit", event = "logout", sub = %caller.sub, %ip, "logged out");
    let mut response = super::no_content();
    super::session::clear_cookies(state, &mut response);
    Ok(response)
}
