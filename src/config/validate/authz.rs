//! `[authz]`: decision mode (docs/decisions.md): the decision endpoints'
//! prefix and who may ask.

use super::*;

pub(super) fn authz(c: &mut Checker<'_>, raw: Option<&S<super::raw::RawAuthz>>, login: &Login) -> Authz {
    let default = super::raw::RawAuthz::default();
    let r = raw.map_or(&default, |r| r.get_ref());
    let path_prefix = match &r.path_prefix {
        None => "/authz".to_owned(),
        Some(p) => {
            let text = p.get_ref();
            let normal = normalize(text).is_ok_and(|n| n == *text);
            if !text.starts_with('/') || text.len() < 2 || text.ends_with('/') || !normal {
                c.error(p.span(), "`path_prefix` must be a normalized path like \"/authz\", without a trailing `/`");
            }
            text.clone()
        }
    };
    let enabled = r.enabled.unwrap_or(false);
    if enabled && login.enabled && path_prefix == login.path_prefix {
        let span = r.path_prefix.as_ref().map_or_else(|| raw.map_or(0..0, S::span), S::span);
        c.error(span, "`[authz] path_prefix` is the same as `[login] path_prefix`");
    }
    let allow_from = c.nets(&r.allow_from);
    let grpc = c.addr(&r.grpc, "grpc");
    if grpc.is_some() && !enabled {
        let span = r.grpc.as_ref().map_or(0..0, S::span);
        c.error(span, "`grpc` needs `enabled = true`");
    }
    Authz { enabled, path_prefix, allow_from, grpc }
}

#[cfg(test)]
mod tests {
    use super::super::check::check;

    #[test]
    fn authz_rules() {
        let cases: &[(&str, &[&str])] = &[
            ("[authz]\nenabled = true\nallow_from = [\"10.0.0.0/8\", \"::1\"]\n", &[]),
            ("[authz]\nenabled = true\npath_prefix = \"authz\"\n", &["`path_prefix` must be a normalized path"]),
            ("[authz]\nenabled = true\nallow_from = [\"10.0.0.0/40\"]\n", &["is not an IP address or CIDR"]),
            ("[authz]\nenabled = true\n[[route]]\npath = \"/decide\"\nroles = [\"a\"]\n", &[]),
            ("[[route]]\npath = \"/decide\"\n", &["only with [authz] enabled"]),
            ("[authz]\ngrpc = \"127.0.0.1:9191\"\n", &["`grpc` needs `enabled = true`"]),
            ("[authz]\nenabled = true\ngrpc = \"9191\"\n", &["`grpc` must be an IP address and port"]),
        ];
        for (rest, expected) in cases {
            check(rest, expected);
        }
    }
}
