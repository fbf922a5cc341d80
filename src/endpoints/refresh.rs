//! `POST /auth/refresh`: a spent refresh token for a new pair.
//!
//! The token is rotated atomically in the store. Presented again within
//! `refresh_reuse_grace` of its first use (two tabs refreshing at once), it
//! rotates again; later, it is reuse and ends the whole session: its refresh
//! family and every access token carrying its `sid` (RFC 9700 §4.14.2). The
//! user is read again, so a disabled user or changed roles take effect here.

use http::Response;
use http::request::Parts;
use hyper::body::Incoming;
use serde::Deserialize;

use crate::auth::cookies::{self, REFRESH_COOKIE};
use crate::body::Body;
use crate::downstream::Downstream;
use crate::error::GatewayError;
use crate::state::State;
use crate::store::{Rotation, now};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: Option<String>,
}

/// The refresh token from the body, else (cookie mode) the refresh cookie.
pub fn presented(request: Option<RefreshRequest>, parts: &Parts, state: &State) -> Option<String> {
    request.and_then(|r| r.refresh_token).or_else(|| {
        if !state.config.login.cookies {
            return None;
        }
        cookies::get(&parts.headers, REFRESH_COOKIE).ok().flatten().map(str::to_owned)
    })
}

pub async fn refresh(
    parts: Parts,
    body: Incoming,
    downstream: &Downstream,
    state: &State,
) -> Result<Response<Body>, GatewayError> {
    super::refuse_cross_site(&parts, state)?;
    let request: Option<RefreshRequest> = super::read_optional_json(body, state).await?;
    let token = presented(request, &parts, state).ok_or(GatewayError::InvalidRefreshToken)?;
    if !super::session::plausible_refresh_token(&token) {
        return Err(GatewayError::InvalidRefreshToken);
    }
    let stores = super::stores(state)?;
    let store = &*stores.store;
    let ip = super::client_ip(&parts, downstream, state);
    let next = super::session::new_refresh_token()?;
    let (now, ttl) = (now(), state.config.tokens.refresh_ttl.as_secs());
    let old = super::session::hash_refresh_token(&token);
    let grace = state.config.login.refresh_reuse_grace.as_secs();
    match store.rotate(&old, &next.hash, now.saturating_add(ttl), now, grace).await? {
        Rotation::Invalid => Err(GatewayError::InvalidRefreshToken),
        Rotation::Reused { family, sub } => {
            // The whole session ends: its refresh tokens (the family, revoked
            // by the rotation) and every access token carrying its `sid`.
            let until =
                now.saturating_add(state.config.tokens.access_ttl.as_secs() + state.config.tokens.leeway.as_secs());
            stores.revoke(&crate::store::Revocation::Session { sid: family.clone(), expires_at: until }).await?;
            tracing::warn!(target: "audit", event = "refresh_reused", %sub, %family, %ip, "refresh token reused: session revoked");
            Err(GatewayError::RefreshReused)
        }
        Rotation::Rotated { family, sub, replayed } => {
            if replayed {
                tracing::info!(target: "audit", event = "refresh_replayed", %sub, %ip, "refresh token presented again within the grace");
            }
            // Marked spent again on a master that a failover left without this rotation.
            stores.denylist.remember_spent(&old, now);
            let user = state.users_file.find(&sub, store).await?;
            let Some(user) = user.filter(|u| !u.disabled) else {
                store.revoke_family(&family).await?;
                tracing::warn!(target: "audit", event = "refresh_refused", %sub, %ip, "refresh refused: user disabled or gone");
                return Err(GatewayError::InvalidRefreshToken);
            };
            tracing::info!(target: "audit", event = "refresh", %sub, %ip, "refreshed");
            super::session::issue(state, &user, &family, &next)
        }
    }
}
