//! Who may log in: the read-only users file, then the store's users.
//!
//! Owns parsing `users_file` (`[[user]] name, password_hash, roles,
//! disabled`), with problems reported as `FILE:LINE:COL` like the config's,
//! and the lookup order: a name in the file is the file's, and cannot be
//! registered in the store.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::config::{Diagnostic, Location, SourceMap};
use crate::store::{Store, StoreError, User};

#[derive(Debug, Default)]
pub struct UsersFile {
    users: HashMap<String, User>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    user: Vec<Spanned<RawUser>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    password_hash: Spanned<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    disabled: bool,
}

impl UsersFile {
    pub fn load(path: &Path) -> Result<UsersFile, Vec<Diagnostic>> {
        let src = std::fs::read_to_string(path).map_err(|e| {
            vec![Diagnostic {
                location: Location { file: path.into(), line: 1, column: 1 },
                message: format!("cannot read users file: {e}"),
            }]
        })?;
        Self::parse(&src, path)
    }

    pub fn parse(src: &str, path: &Path) -> Result<UsersFile, Vec<Diagnostic>> {
        let map = SourceMap::new(path, src);
        let raw: RawFile = toml::from_str(src).map_err(|e| vec![map.diagnostic(e.span(), e.message())])?;
        let mut users = HashMap::new();
        let mut errors = Vec::new();
        for entry in raw.user {
            let span = entry.span();
            let u = entry.into_inner();
            if argon2::password_hash::PasswordHash::new(u.password_hash.get_ref()).is_err() {
                errors.push(map.diagnostic(
                    Some(u.password_hash.span()),
                    "`password_hash` is not a PHC string (use `authgate hash-password`)",
                ));
                continue;
            }
            let user = User {
                name: u.name.clone(),
                password_hash: u.password_hash.into_inner(),
                roles: u.roles,
                disabled: u.disabled,
            };
            if users.insert(u.name.clone(), user).is_some() {
                errors.push(map.diagnostic(Some(span), format!("user `{}` is listed twice", u.name)));
            }
        }
        if errors.is_empty() { Ok(UsersFile { users }) } else { Err(errors) }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    /// The file's user, else the store's.
    pub async fn find(&self, name: &str, store: &dyn Store) -> Result<Option<User>, StoreError> {
        match self.users.get(name) {
            Some(u) => Ok(Some(u.clone())),
            None => store.user(name).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_users_and_reports_bad_hashes_with_their_location() {
        let ok = "[[user]]\nname = \"ops\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo\"\nroles = [\"admin\"]\n";
        let file = UsersFile::parse(ok, Path::new("users.toml")).unwrap();
        assert!(file.contains("ops"));
        let bad = "[[user]]\nname = \"ops\"\npassword_hash = \"plain\"\n";
        let errors = UsersFile::parse(bad, Path::new("users.toml")).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "users.toml:3:17: `password_hash` is not a PHC string (use `authgate hash-password`)"
        );
        assert!(UsersFile::parse("[[user]]\nname = \"x\"\npasword_hash = \"\"\n", Path::new("u.toml")).is_err());
    }
}
