//! Authorization: may this caller use this route?
//!
//! Owns the route's rules (`roles`: any one of them; `scopes`: every one) and the `Authorized`
//! value. Forwarding takes an `Authorized`, and only `authorize` can build
//! one, so no code path reaches the upstream without passing policy.

use super::{AuthError, Authenticated, Identity};
use crate::config::{AuthMode, Route};

/// Proof that policy allowed this request; the only way to forward.
#[derive(Debug)]
pub struct Authorized {
    identity: Option<Authenticated>,
}

impl Authorized {
    /// The verified caller; `None` on `auth = "none"` routes and anonymous `optional` requests.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_deref()
    }
}

pub fn authorize(route: &Route, identity: Option<Authenticated>) -> Result<Authorized, AuthError> {
    match (&identity, route.auth) {
        (None, AuthMode::Required) => return Err(AuthError::MissingToken),
        (Some(_), AuthMode::None) => {
            // `authenticate` never verifies on these routes; refuse rather than forward an identity.
            return Err(AuthError::InsufficientRole);
        }
        _ => {}
    }
    if !route.roles.is_empty() {
        let has_role = identity.as_ref().is_some_and(|id| id.roles.iter().any(|r| route.roles.contains(r)));
        if !has_role {
            return Err(AuthError::InsufficientRole);
        }
    }
    if !route.scopes.is_empty() {
        let granted = identity.as_ref().map_or(&[][..], |id| id.scopes.as_slice());
        if !route.scopes.iter().all(|needed| granted.contains(needed)) {
            return Err(AuthError::InsufficientScope);
        }
    }
    Ok(Authorized { identity })
}

/// A gateway endpoint's own rule (`/auth/revoke` needs `admin_role`): the
/// same "any of these roles" test as a route's.
pub fn require_role(caller: &Authenticated, role: &str) -> Result<(), AuthError> {
    if caller.roles.iter().any(|r| r == role) { Ok(()) } else { Err(AuthError::InsufficientRole) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;
    use std::sync::Arc;

    fn route(extra: &str) -> Route {
        let src = format!(
            "[server]\nhttp = \"127.0.0.1:0\"\n[[tokens.keys]]\nkid = \"k\"\nalgorithm = \"HS256\"\nsecret = \"{}\"\n[[route]]\npath = \"/\"\nupstream = \"builtin:echo\"\n{extra}",
            "s".repeat(32)
        );
        Config::from_str(&src, Path::new("t.toml")).unwrap().routes.remove(0)
    }

    fn caller(roles: &[&str]) -> Option<Authenticated> {
        Some(Authenticated(Arc::new(Identity {
            sub: "alice".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            jti: "j".into(),
            expires_at: u64::MAX,
            issued_at: 0,
            scopes: vec![],
            session: None,
            claims: Default::default(),
            header_values: Default::default(),
        })))
    }

    #[test]
    fn roles_are_any_of_and_exact() {
        let admin = route("roles = [\"admin\", \"ops\"]");
        assert!(authorize(&admin, caller(&["ops"])).is_ok());
        assert!(authorize(&admin, caller(&["user", "admin"])).is_ok());
        for roles in [&[][..], &["user"], &["ADMIN"], &["admin "], &["user,admin"]] {
            assert!(matches!(authorize(&admin, caller(roles)), Err(AuthError::InsufficientRole)), "{roles:?}");
        }
        assert!(matches!(authorize(&admin, None), Err(AuthError::MissingToken)));
    }

    #[test]
    fn scopes_are_all_of() {
        let orders = route("scopes = [\"read:orders\", \"write:orders\"]");
        let with = |scopes: &[&str]| {
            let mut id = Identity::clone(&caller(&[]).unwrap());
            id.scopes = scopes.iter().map(|s| s.to_string()).collect();
            Some(Authenticated(Arc::new(id)))
        };
        assert!(authorize(&orders, with(&["read:orders", "write:orders", "x"])).is_ok());
        assert!(matches!(authorize(&orders, with(&["read:orders"])), Err(AuthError::InsufficientScope)));
    }

    #[test]
    fn auth_modes() {
        assert!(authorize(&route(""), caller(&[])).is_ok());
        assert!(matches!(authorize(&route(""), None), Err(AuthError::MissingToken)));
        assert!(authorize(&route("auth = \"optional\""), None).is_ok());
        assert!(authorize(&route("auth = \"none\""), None).is_ok());
    }
}
