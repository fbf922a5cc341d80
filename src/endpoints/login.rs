//! `POST /auth/login`: password login, throttled per user name and per client IP.

use http::Response;
use http::request::Parts;
use hyper::body::Incoming;
use serde::Deserialize;

use crate::auth::password::{self, MAX_PASSWORD_BYTES};
use crate::body::Body;
use crate::downstream::Downstream;
use crate::error::GatewayError;
use crate::state::State;
use crate::store::now;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

pub async fn login(
    parts: Parts,
    body: Incoming,
    downstream: &Downstream,
    state: &State,
) -> Result<Response<Body>, GatewayError> {
    super::refuse_cross_site(&parts, state)?;
    let credentials: Credentials = super::read_json(body, state).await?;
    if credentials.password.len() > MAX_PASSWORD_BYTES
        || credentials.username.is_empty()
        || credentials.username.len() > 256
    {
        return Err(GatewayError::BadRequest("user name or password out of bounds"));
    }
    let stores = super::stores(state)?;
    let store = &*stores.store;
    let login = &state.config.login;
    let ip = super::client_ip(&parts, downstream, state);
    let (user_key, ip_key) = (format!("user:{}", credentials.username), format!("ip:{ip}"));

    // Blocked: refused before any password work, right password or not.
    for key in [&user_key, &ip_key] {
        let attempts = store.attempts(key).await?;
        if attempts.count >= login.max_attempts {
            state.metrics.login("throttled");
            tracing::warn!(target: "audit", event = "login_throttled", sub = %credentials.username, %ip, "login throttled");
            return Err(GatewayError::TooManyAttempts(attempts.retry_after));
        }
    }
    let user = state.users_file.find(&credentials.username, store).await?;
    // Unknown and disabled users are checked against the dummy hash: same work, same answer.
    let phc = user.as_ref().filter(|u| !u.disabled).map(|u| u.password_hash.clone());
    let hasher = state.hasher.as_ref().ok_or(GatewayError::Internal("no password hasher"))?;
    let password_again = credentials.password.clone();
    let matched = hasher.verify(credentials.password, phc).await;
    let Some(user) = user.filter(|_| matched) else {
        for key in [&user_key, &ip_key] {
            store.record_failure(key, login.attempt_window).await?;
        }
        state.metrics.login("failed");
        tracing::warn!(target: "audit", event = "login_failed", sub = %credentials.username, %ip, "login failed");
        return Err(GatewayError::InvalidCredentials);
    };
    store.clear(&user_key).await?;
    // An imported hash (Werkzeug, bcrypt, passlib, older argon2) becomes ours
    // now that the password is known; the user never notices. Store users only
    // (the users file is read-only); a failure here costs nothing but the upgrade.
    if !password::HashFormat::is_ours(&user.password_hash) && !state.users_file.contains(&user.name) {
        match hasher.hash(password_again).await {
            Ok(phc) => match store.set_password_hash(&user.name, &phc).await {
                Ok(_) => {
                    tracing::info!(target: "audit", event = "password_rehashed", sub = %user.name, "password hash upgraded to argon2id")
                }
                Err(e) => {
                    tracing::warn!(sub = %user.name, error = %crate::report::chain(&e), "cannot store the upgraded password hash")
                }
            },
            Err(e) => tracing::warn!(sub = %user.name, error = %e, "cannot upgrade the password hash"),
        }
    }
    let family = super::session::new_family_id()?;
    let refresh = super::session::new_refresh_token()?;
    let expires = now().saturating_add(state.config.tokens.refresh_ttl.as_secs());
    store.start_family(&family, &user.name, &refresh.hash, expires).await?;
    state.metrics.login("ok");
    tracing::info!(target: "audit", event = "login", sub = %user.name, %ip, "login ok");
    super::session::issue(state, &user, &family, &refresh)
}
