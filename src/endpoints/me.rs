//! `GET /auth/me`: the verified claims of the caller.

use http::request::Parts;
use http::{Response, StatusCode};
use serde_json::Value;

use crate::body::Body;
use crate::error::GatewayError;
use crate::state::State;

pub async fn me(parts: &Parts, state: &State) -> Result<Response<Body>, GatewayError> {
    let caller = super::caller(parts, state).await?;
    Ok(super::json_response(StatusCode::OK, &Value::Object((*caller.claims).clone())))
}
