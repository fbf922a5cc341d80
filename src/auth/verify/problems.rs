//! Every reason a token would be refused, for `authgate explain`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::Verifier;
use super::header::JoseHeader;
use super::issuer::check_trusted_typ;
use super::json::Member;

impl Verifier {
    /// Every reason the token's claims and header would be refused, read
    /// without the signature (for `explain`: `verify` stops at the first).
    /// Empty when nothing but the signature or the key could be at fault.
    pub fn problems(&self, token: &str) -> Vec<String> {
        // Each part decoded once: the header's bytes are read as a map here,
        // and again below as `verify` reads them.
        type Object = Map<String, Value>;
        let read = || -> Option<(Vec<u8>, Object, Object)> {
            let mut parts = token.split('.').map(|part| URL_SAFE_NO_PAD.decode(part).ok());
            let (header_json, payload) = (parts.next()??, parts.next()??);
            let (header, claims) = (serde_json::from_slice(&header_json).ok()?, serde_json::from_slice(&payload).ok()?);
            Some((header_json, header, claims))
        };
        let Some((header_json, header, claims)) = read() else {
            return vec!["not a JWS: the header or the payload is not base64url JSON".to_owned()];
        };
        let mut out = Vec::new();
        // The map keeps a repeated member's last value; `verify` refuses it.
        if JoseHeader::parse(&header_json).is_none() {
            out.push("the header repeats a member".to_owned());
        }
        let now = jsonwebtoken::get_current_timestamp();
        let trusted = self.issuer_for(&Member::of(claims.get("iss"))).ok().flatten();
        let (issuers, audience, max_lifetime): (Vec<&str>, &[String], u64) = match trusted {
            Some(t) => (
                t.config.issuer.iter().map(String::as_str).collect(),
                &t.config.audience,
                t.config.max_lifetime.as_secs(),
            ),
            None => (vec![self.issuer.as_str()], &self.audience, self.max_lifetime),
        };
        match trusted {
            Some(t) => {
                if let Err(e) = check_trusted_typ(&Member::of(header.get("typ")), t.config.require_typ.as_deref()) {
                    out.push(e.to_string());
                }
                if ["nonce", "at_hash", "c_hash", "s_hash"].iter().any(|c| claims.contains_key(*c)) {
                    out.push("it is an OpenID Connect ID token (nonce / at_hash / c_hash), not an access token".into());
                }
            }
            None => {
                let typ = header.get("typ").and_then(Value::as_str).map(str::to_ascii_lowercase);
                if !matches!(typ.as_deref(), Some("at+jwt" | "application/at+jwt")) {
                    out.push("header typ is not at+jwt".into());
                }
            }
        }
        let iss = claims.get("iss").and_then(Value::as_str);
        match iss {
            Some(i) if issuers.contains(&i) => {}
            Some(i) => out.push(format!("iss {i:?} is not {issuers:?}")),
            None if !issuers.is_empty() => out.push("iss is missing".into()),
            None => {}
        }
        let auds: Vec<&str> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(l)) => l.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !audience.is_empty() && !auds.iter().any(|a| audience.iter().any(|x| x == a)) {
            out.push(format!("aud {auds:?} names none of {audience:?}"));
        }
        let number = |name: &str| claims.get(name).and_then(Value::as_f64).map(|n| n as u64);
        match number("exp") {
            None => out.push("exp is missing".into()),
            Some(exp) if exp.saturating_add(self.leeway) < now => {
                out.push(format!("expired {} s ago", now - exp));
            }
            Some(exp)
                if number("iat").map_or(exp.saturating_sub(now), |iat| exp.saturating_sub(iat)) > max_lifetime =>
            {
                out.push(format!("lifetime above max_lifetime ({max_lifetime} s)"));
            }
            Some(_) => {}
        }
        if number("nbf").is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            out.push("not valid yet (nbf)".into());
        }
        if !matches!(claims.get("sub"), Some(Value::String(s)) if !s.is_empty()) {
            out.push("sub is missing or empty".into());
        }
        out
    }
}
