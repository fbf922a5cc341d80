//! `POST /auth/revoke`: an admin revokes one token (`{"jti"}`) or every
//! token of a subject issued so far (`{"sub"}`).

use http::Response;
use http::request::Parts;
use hyper::body::Incoming;
use serde::Deserialize;

use crate::auth::AuthError;
use crate::body::Body;
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
    let caller = super::caller(&parts, state)?;
    if !caller.roles.contains(&state.config.login.admin_role) {
        return Err(AuthError::InsufficientRole.into());
    }
    let stores = super::stores(state)?;
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
    Ok(super::no_content())
}
