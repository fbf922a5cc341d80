//! A session: an access token and a rotating refresh token of one family.
//!
//! Owns what login and refresh hand out: the access token (claims of
//! docs/endpoints.md, plus `sid` = the refresh family, so logout can end the session, and
//! `csrf` in cookie mode), the opaque refresh token (256 random bits; only
//! its SHA-256 is stored), the JSON answer and, in cookie mode, the cookies.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Response, StatusCode, header};
use serde_json::{Map, Value, json};

use crate::auth::cookies::{ACCESS_COOKIE, CSRF_COOKIE, REFRESH_COOKIE, set_cookie};
use crate::auth::mint::mint_access_token;
use crate::body::Body;
use crate::error::GatewayError;
use crate::state::State;
use crate::store::User;

/// A refresh token and the hash the store keeps.
pub struct RefreshToken {
    pub token: String,
    pub hash: String,
}

fn random_b64(bytes: usize) -> Result<String, GatewayError> {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).map_err(|_| GatewayError::Internal("the system random generator failed"))?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

pub fn new_refresh_token() -> Result<RefreshToken, GatewayError> {
    let token = random_b64(32)?;
    Ok(RefreshToken { hash: hash_refresh_token(&token), token })
}

pub fn new_family_id() -> Result<String, GatewayError> {
    random_b64(16)
}

/// SHA-256, hex: what the store knows of a refresh token.
pub fn hash_refresh_token(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a presented refresh token could be one of ours (cheap, before any store call).
pub fn plausible_refresh_token(token: &str) -> bool {
    token.len() == 43 && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// 200 with a new access token and `refresh`, for `user`, in session `family`.
pub fn issue(state: &State, user: &User, family: &str, refresh: &RefreshToken) -> Result<Response<Body>, GatewayError> {
    let tokens = &state.config.tokens;
    let login = &state.config.login;
    let key = state.keys.signing().ok_or(GatewayError::Internal("no signing key"))?;
    let mut extra = Map::new();
    extra.insert("sid".into(), Value::String(family.to_owned()));
    let csrf = if login.cookies { Some(random_b64(32)?) } else { None };
    if let Some(c) = &csrf {
        extra.insert("csrf".into(), Value::String(c.clone()));
    }
    let access = mint_access_token(tokens, key, &user.name, &user.roles, tokens.access_ttl, extra)
        .map_err(|_| GatewayError::Internal("signing failed"))?;
    // In cookie mode the tokens stay out of reach of page script (HttpOnly)
    // unless the operator asks for them in the body too.
    let document = if login.cookies && !login.tokens_in_body {
        json!({"token_type": "Bearer", "expires_in": tokens.access_ttl.as_secs()})
    } else {
        json!({
            "access_token": access,
            "refresh_token": refresh.token,
            "token_type": "Bearer",
            "expires_in": tokens.access_ttl.as_secs(),
        })
    };
    let mut response = super::json_response(StatusCode::OK, &document);
    if let Some(csrf) = csrf {
        let (access_age, refresh_age) = (tokens.access_ttl.as_secs(), tokens.refresh_ttl.as_secs());
        let cookies = [
            set_cookie(ACCESS_COOKIE, &access, "/", true, access_age),
            set_cookie(REFRESH_COOKIE, &refresh.token, &login.path_prefix, true, refresh_age),
            set_cookie(CSRF_COOKIE, &csrf, "/", false, access_age),
        ];
        for cookie in cookies.into_iter().flatten() {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
    }
    Ok(response)
}

/// Clears the session cookies (same names, paths and flags; `Max-Age=0`).
pub fn clear_cookies(state: &State, response: &mut Response<Body>) {
    if !state.config.login.cookies {
        return;
    }
    let prefix = &state.config.login.path_prefix;
    let cookies = [
        set_cookie(ACCESS_COOKIE, "", "/", true, 0),
        set_cookie(REFRESH_COOKIE, "", prefix, true, 0),
        set_cookie(CSRF_COOKIE, "", "/", false, 0),
    ];
    for cookie in cookies.into_iter().flatten() {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
}
