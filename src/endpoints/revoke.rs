//! `POST /auth/revoke`: an admin revokes one token (`{"jti"}`) or every
//! token of a subject issued so far (`{"sub"}`).

use http::request::Parts;
use http::{Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::auth::{self, AuthError};
use crate::body::{self, Body};
use crate::config::AuthMode;
use crate::error::GatewayError;
use crate::state::State;
use crate::store::{Revocation, now};

/// Longest `jti` or `sub` accepted.
const MAX_ID_BYTES: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    jti: Option<String>,
    sub: Option<String>,
}

pub async fn revoke(parts: Parts, body: Incoming, state: &State) -> Result<Response<Body>, GatewayError> {
    let caller =
        auth::authenticate(&parts.headers, AuthMode::Required, &state.verifier)?.ok_or(AuthError::MissingToken)?;
    auth::check_revocation(&caller, state.stores.as_deref())?;
    if !caller.roles.contains(&state.config.login.admin_role) {
        return Err(AuthError::InsufficientRole.into());
    }
    let stores = state.stores.as_deref().ok_or(AuthError::StoreUnavailable)?;
    let request: RevokeRequest = super::read_json(body).await?;
    let valid = |id: &String| !id.is_empty() && id.len() <= MAX_ID_BYTES;
    let now = now();
    let until = now.saturating_add(stores.retention.as_secs());
    let revocation = match (request.jti, request.sub) {
        (Some(jti), None) if valid(&jti) => Revocation::Jti { jti, expires_at: until },
        (None, Some(sub)) if valid(&sub) => Revocation::Subject { sub, before: now, expires_at: until },
        _ => return Err(GatewayError::BadRequest("give exactly one of jti or sub")),
    };
    stores.revoke(&revocation).await?;
    let (kind, value) = match &revocation {
        Revocation::Jti { jti, .. } => ("jti", jti),
        Revocation::Subject { sub, .. } => ("sub", sub),
    };
    tracing::info!(target: "audit", event = "revoke", by = %caller.sub, kind, value = %value, "revoked");
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}
