//! `[login]`: the gateway's own endpoints, sessions and cookie mode.

use super::*;

pub(super) fn login(c: &mut Checker<'_>, raw: Option<&S<super::raw::RawLogin>>, tokens: &Tokens) -> Login {
    let default = super::raw::RawLogin::default();
    let r = raw.map_or(&default, |r| r.get_ref());
    let enabled = r.enabled.unwrap_or(false);
    let path_prefix = match &r.path_prefix {
        None => "/auth".to_owned(),
        Some(p) => match normalize(p.get_ref()) {
            Ok(n) if n != "/" && n.trim_end_matches('/') == p.get_ref().trim_end_matches('/') => {
                n.trim_end_matches('/').to_owned()
            }
            _ => {
                c.error(p.span(), "`path_prefix` must be a normalized absolute path other than `/`, e.g. \"/auth\"");
                "/auth".to_owned()
            }
        },
    };
    let default_roles = names(c, r.default_roles.as_deref().unwrap_or(&[]), Name::Role);
    let default_roles = if r.default_roles.is_none() { vec!["user".to_owned()] } else { default_roles };
    let min_password_length = r.min_password_length.as_ref().map_or(8, |v| *v.get_ref());
    if let Some(v) = &r.min_password_length
        && !(1..=1024).contains(v.get_ref())
    {
        c.error(v.span(), "`min_password_length` must be between 1 and 1024");
    }
    let max_attempts = r.max_attempts.as_ref().map_or(5, |v| *v.get_ref());
    if let Some(v) = &r.max_attempts
        && *v.get_ref() == 0
    {
        c.error(v.span(), "`max_attempts` must be at least 1");
    }
    if enabled && tokens.signing_key.is_none() {
        let span = raw.map_or(0..0, S::span);
        c.error(span, "[login] is enabled but no key can sign tokens: set `tokens.signing_key` to a key with a private key or secret");
    }
    Login {
        enabled,
        path_prefix,
        registration: r.registration.unwrap_or(false),
        default_roles,
        admin_role: c.non_empty(&r.admin_role, "admin_role", "admin"),
        users_file: r.users_file.as_ref().map(|p| c.path(p)),
        cookies: r.cookies.unwrap_or(false),
        min_password_length,
        max_attempts,
        attempt_window: c.duration(&r.attempt_window, Duration::from_secs(15 * 60)),
        refresh_reuse_grace: c.duration(&r.refresh_reuse_grace, Duration::from_secs(10)),
        tokens_in_body: r.tokens_in_body.unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::check;

    #[test]
    fn login_rules() {
        let signing = "[tokens]\nsigning_key = \"k\"\n";
        let cases: &[(&str, &[&str])] = &[
            ("[login]\nenabled = true\nrefresh_reuse_grace = \"0s\"\ntokens_in_body = true\n", &[]),
            ("[login]\nenabled = true\ndefault_roles = [\"a,b\"]\n", &["role `a,b` must be non-empty"]),
            ("[login]\nenabled = true\nrefresh_reuse_grace = \"soon\"\n", &["soon"]),
            ("[login]\nenabled = true\nadmin_role = \" \"\n", &["`admin_role` must not be empty"]),
        ];
        for (rest, expected) in cases {
            check(&format!("{signing}{rest}"), expected);
        }
    }
}
