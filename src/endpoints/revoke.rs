//! `POST /auth/revoke`: an admin revokes one token (`{"jti"}`) or every
//! token of a subject issued so far (`{"sub"}`).

use http::Response;
use http::request::Parts;
use hyper::body::Incoming;
use serde::Deserialize;

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
    let caller = super::caller(&parts, state).await?;
    crate::auth::require_role(&caller, &state.config.login.admin_role)?;
    let stores = super::stores(state)?;
    let request: RevokeRequest = super::read_json(body, state).await?;
    let valid = |id: &Option<String>| id.as_ref().is_none_or(|id| !id.is_empty() && id.len() <= MAX_ID_BYTES);
    if !valid(&request.jti) || !valid(&request.sub) {
        return Err(GatewayError::BadRequest("give exactly one of jti or sub"));
    }
    let revocation = Revocation::by_operator(request.jti, request.sub, now(), stores.retention)
        .ok_or(GatewayError::BadRequest("give exactly one of jti or sub"))?;
    stores.revoke(&revocation).await?;
    let (kind, value) = match &revocation {
        Revocation::Jti { jti, .. } => ("jti", jti),
        Revocation::Subject { sub, .. } => ("sub", sub),
        Revocation::Session { sid, .. } => ("sid", sid),
    };
    tracing::info!(target: "audit", event = "revoke", by = %caller.sub, kind, value = %value, "revoked");
    Ok(super::no_content())
}
