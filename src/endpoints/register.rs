//! `POST /auth/register`: self-service sign-up, when `registration = true`.

use http::request::Parts;
use http::{Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::login::Credentials;
use crate::auth::password::check_length;
use crate::body::Body;
use crate::error::GatewayError;
use crate::state::State;
use crate::store::User;

pub async fn register(parts: Parts, body: Incoming, state: &State) -> Result<Response<Body>, GatewayError> {
    let login = &state.config.login;
    if !login.registration {
        return Err(GatewayError::NotFound);
    }
    super::refuse_cross_site(&parts, state)?;
    let credentials: Credentials = super::read_json(body, state).await?;
    let name = credentials.username;
    let name_ok = !name.is_empty()
        && name.chars().count() <= super::MAX_USERNAME_CHARS
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if !name_ok {
        return Err(GatewayError::BadRequest("user names are 1 to 64 letters, digits, '.', '_', '-' or '@'"));
    }
    check_length(&credentials.password, login.min_password_length)
        .map_err(|_| GatewayError::BadRequest("the password is too short or too long"))?;
    let stores = super::stores(state)?;
    if state.users_file.contains(&name) {
        return Err(GatewayError::UserExists);
    }
    let hasher = state.hasher.as_ref().ok_or(GatewayError::Internal("no password hasher"))?;
    let password_hash =
        hasher.hash(credentials.password).await.map_err(|_| GatewayError::Internal("password hashing failed"))?;
    let user = User { name: name.clone(), password_hash, roles: login.default_roles.clone(), disabled: false };
    if !stores.store.create_user(&user).await? {
        return Err(GatewayError::UserExists);
    }
    tracing::info!(target: "audit", event = "register", sub = %name, "registered");
    Ok(super::json_response(StatusCode::CREATED, &json!({"username": name, "roles": user.roles})))
}
