//! Path normalisation: the one representation both routing and the upstream see.
//!
//! Owns RFC 3986 §6.2.2 normalisation of a request path: percent-decoding of
//! unreserved characters only, upper-case hex in the escapes that stay, `.`
//! and `..` segments resolved (§5.2.4), empty segments (`//`) merged. A path
//! that cannot be normalised without changing what some upstream might
//! route on is refused: an encoded `/` or `\`, a raw `\`, NUL, a bad escape,
//! `..` above the root, or a `;` raw or encoded (Tomcat and Jetty cut path
//! parameters before routing, so `/admin;x/y` is `/admin/y` to them while
//! it matches nothing here; Spring Security's strict firewall refuses it too). The router decides on the output of `normalize`
//! and the proxy forwards that same string, so the two can never disagree.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormalizeError {
    /// Not origin-form: does not start with `/` (`*`, `admin`, empty).
    NotAbsolute,
    /// `%2F` or `%5C` (an encoded separator), or a raw `\`.
    EncodedSeparator,
    /// `%00`, or a byte no URI may contain.
    ForbiddenByte,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// More `..` segments than there are segments to remove.
    AboveRoot,
    /// A `;` (path parameters), raw or encoded.
    PathParameter,
}

impl fmt::Display for NormalizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NormalizeError::NotAbsolute => "path does not start with /",
            NormalizeError::EncodedSeparator => "path contains an encoded or backslash separator",
            NormalizeError::ForbiddenByte => "path contains a forbidden byte",
            NormalizeError::BadEscape => "path contains a malformed percent escape",
            NormalizeError::AboveRoot => "path climbs above the root",
            NormalizeError::PathParameter => "path contains a `;` (path parameters are refused)",
        })
    }
}

impl std::error::Error for NormalizeError {}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Bytes allowed raw in a path segment (RFC 3986 `pchar` minus `%`).
fn is_pchar(b: u8) -> bool {
    is_unreserved(b)
        || matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' | b'@')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes the escapes of unreserved characters in one segment, upper-cases the rest.
fn normalize_segment(segment: &str, out: &mut String) -> Result<(), NormalizeError> {
    let bytes = segment.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) =
                (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex))
            else {
                return Err(NormalizeError::BadEscape);
            };
            let decoded = hi << 4 | lo;
            match decoded {
                b'/' | b'\\' => return Err(NormalizeError::EncodedSeparator),
                b';' => return Err(NormalizeError::PathParameter),
                0 => return Err(NormalizeError::ForbiddenByte),
                d if is_unreserved(d) => out.push(char::from(d)),
                d => {
                    const HEX: &[u8; 16] = b"0123456789ABCDEF";
                    out.push('%');
                    out.push(char::from(HEX[usize::from(d >> 4)]));
                    out.push(char::from(HEX[usize::from(d & 0xf)]));
                }
            }
            i += 3;
        } else if b == b'\\' {
            return Err(NormalizeError::EncodedSeparator);
        } else if b == b';' {
            return Err(NormalizeError::PathParameter);
        } else if is_pchar(b) {
            out.push(char::from(b));
            i += 1;
        } else {
            return Err(NormalizeError::ForbiddenByte);
        }
    }
    Ok(())
}

/// Normalizes an origin-form path (no query). Idempotent: `normalize(normalize(p)) == normalize(p)`.
pub fn normalize(path: &str) -> Result<String, NormalizeError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(NormalizeError::NotAbsolute);
    };
    if is_normal(rest) {
        return Ok(path.to_owned());
    }
    resolve(path, rest)
}

/// `normalize` the long way: segment by segment.
fn resolve(path: &str, rest: &str) -> Result<String, NormalizeError> {
    let mut segments: Vec<String> = Vec::new();
    let mut trailing_slash = false;
    let mut raw = rest.split('/').peekable();
    while let Some(raw_segment) = raw.next() {
        let is_last = raw.peek().is_none();
        let mut segment = String::with_capacity(raw_segment.len());
        normalize_segment(raw_segment, &mut segment)?;
        match segment.as_str() {
            "" | "." => trailing_slash = is_last,
            ".." => {
                if segments.pop().is_none() {
                    return Err(NormalizeError::AboveRoot);
                }
                trailing_slash = is_last;
            }
            _ => {
                segments.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// Whether a path (after its first `/`) is already what `normalize` makes
/// of it, as most are: raw `pchar`s and `/` only (no escape, no `;`), no
/// empty segment but a last one (a trailing slash), no `.` or `..`.
fn is_normal(rest: &str) -> bool {
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if (segment.is_empty() && !last) || segment == "." || segment == ".." {
            return false;
        }
    }
    rest.bytes().all(|b| b == b'/' || (is_pchar(b) && b != b';'))
}

#[cfg(test)]
mod tests {
    use super::NormalizeError::*;
    use super::*;

    fn check(input: &str, expected: Result<&str, NormalizeError>) {
        assert_eq!(normalize(input).as_deref().map_err(|e| *e), expected, "input: {input:?}");
    }

    /// The shortcut for a path already normal agrees with the long way, on
    /// paths made of the bytes that matter (`/`, `.`, `%`, `;`, `\\`, hex, letters).
    #[test]
    fn the_shortcut_agrees_with_the_long_way() {
        use proptest::prelude::*;
        let mut runner = proptest::test_runner::TestRunner::default();
        let paths = proptest::string::string_regex("/[a/.%;\\\\2eEfF~_-]{0,12}").unwrap();
        runner
            .run(&paths, |path| {
                let rest = &path[1..];
                if is_normal(rest) {
                    prop_assert_eq!(resolve(&path, rest), Ok(path.clone()));
                }
                Ok(())
            })
            .unwrap();
        for normal in ["/", "/a", "/a/", "/a/b.c/~d_e-f/", "/.well-known/x", "/a..b/...", "/@:!$&'()*+,="] {
            assert!(is_normal(&normal[1..]), "{normal}");
        }
        for not in ["//", "/a//b", "/.", "/./a", "/a/..", "/a/../b", "/a%2e", "/a;b", "/a\\b", "/a b"] {
            assert!(!is_normal(&not[1..]), "{not}");
        }
    }

    #[test]
    fn normalizes_the_classic_bypasses() {
        let cases: &[(&str, Result<&str, NormalizeError>)] = &[
            ("/", Ok("/")),
            ("/admin", Ok("/admin")),
            ("/admin/", Ok("/admin/")),
            ("/public/../admin", Ok("/admin")),
            ("/public/../admin/x", Ok("/admin/x")),
            ("/public/%2e%2e/admin", Ok("/admin")),
            ("/public/%2E%2E/admin/x", Ok("/admin/x")),
            ("/public/.%2e/admin/x", Ok("/admin/x")),
            ("//admin", Ok("/admin")),
            ("///admin/x", Ok("/admin/x")),
            ("/./admin/x", Ok("/admin/x")),
            ("/admin//x", Ok("/admin/x")),
            ("/admin/.", Ok("/admin/")),
            ("/admin/x/..", Ok("/admin/")),
            ("/a/b/../../c", Ok("/c")),
            ("/%61dmin", Ok("/admin")),
            ("/%7euser", Ok("/~user")),
            ("/caf%c3%a9", Ok("/caf%C3%A9")),
            ("/a%20b", Ok("/a%20b")),
            ("/a;b=c", Err(PathParameter)),
            ("/admin;/x", Err(PathParameter)),
            ("/a%3Bb", Err(PathParameter)),
            ("/admin%2fx", Err(EncodedSeparator)),
            ("/admin%2Fx", Err(EncodedSeparator)),
            ("/public%2f..%2fadmin", Err(EncodedSeparator)),
            ("/admin%5cx", Err(EncodedSeparator)),
            ("/public\\..\\admin", Err(EncodedSeparator)),
            ("/a%00b", Err(ForbiddenByte)),
            ("/a\0b", Err(ForbiddenByte)),
            ("/a b", Err(ForbiddenByte)),
            ("/a#b", Err(ForbiddenByte)),
            ("/a?b", Err(ForbiddenByte)),
            ("/a%2", Err(BadEscape)),
            ("/a%zz", Err(BadEscape)),
            ("/..", Err(AboveRoot)),
            ("/%2e%2e/admin/x", Err(AboveRoot)),
            ("/a/../../b", Err(AboveRoot)),
            ("*", Err(NotAbsolute)),
            ("admin", Err(NotAbsolute)),
            ("", Err(NotAbsolute)),
        ];
        for (input, expected) in cases {
            check(input, *expected);
        }
    }

    #[test]
    fn normalizing_twice_changes_nothing() {
        for input in ["/a/./b/../c//d/", "/%7e/%41%2a", "/x/%2e/y", "/a%20b/%c3%a9"] {
            let once = normalize(input).unwrap();
            assert_eq!(normalize(&once).unwrap(), once, "{input}");
        }
    }
}
