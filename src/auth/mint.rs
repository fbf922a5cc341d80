//! Minting access tokens with the configured signing key.
//!
//! Owns the shape of our access tokens (docs/endpoints.md): header
//! `{"alg","typ":"at+jwt","kid"}`, claims `iss sub aud exp iat nbf jti roles`.
//! Used by `authgate token` now and by the login endpoints later.

use std::time::Duration;

use jsonwebtoken::Header;
use serde_json::{Map, Value, json};

use super::keys::SigningKey;
use crate::config::Tokens;

pub fn mint_access_token(
    tokens: &Tokens,
    key: &SigningKey,
    sub: &str,
    roles: &[String],
    ttl: Duration,
    extra: Map<String, Value>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = jsonwebtoken::get_current_timestamp();
    let mut header = Header::new(key.algorithm);
    header.typ = Some("at+jwt".to_owned());
    header.kid = Some(key.kid.clone());
    let aud = match tokens.audience.as_slice() {
        [one] => json!(one),
        many => json!(many),
    };
    let mut claims = extra;
    claims.insert("iss".into(), json!(tokens.issuer));
    claims.insert("sub".into(), json!(sub));
    claims.insert("aud".into(), aud);
    claims.insert("iat".into(), json!(now));
    claims.insert("nbf".into(), json!(now));
    claims.insert("exp".into(), json!(now.saturating_add(ttl.as_secs())));
    claims.insert("jti".into(), json!(uuid::Uuid::new_v4().simple().to_string()));
    claims.insert("roles".into(), json!(roles));
    jsonwebtoken::encode(&header, &claims, &key.encoding)
}
