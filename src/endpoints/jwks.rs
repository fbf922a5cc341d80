//! `GET /.well-known/jwks.json`: the public key of every asymmetric key,
//! verify-only ones included; never an HMAC secret or a private part.

use http::{HeaderValue, Response, StatusCode, header};

use crate::body::Body;
use crate::state::State;

pub fn jwks(state: &State) -> Response<Body> {
    let mut response = super::json_response(StatusCode::OK, &state.keys.jwks());
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response.headers_mut().remove(header::PRAGMA);
    response
}
