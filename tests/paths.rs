//! Path normalisation and routing through the real gateway, with the
//! request target sent byte for byte: the rule is decided on exactly the
//! path the upstream receives.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use support::client::{raw, raw_get};
use support::gateway::TestGateway;
use support::tokens::{claims, sign};
use support::upstream::Upstream;

fn routes(up: &Upstream) -> String {
    format!(
        "[[route]]\npath = \"/public\"\nupstream = \"{u}\"\nauth = \"none\"\n\
         [[route]]\npath = \"/admin\"\nupstream = \"{u}\"\nroles = [\"admin\"]\n\
         [[route]]\npath = \"/svc\"\nupstream = \"{u}/base\"\nauth = \"none\"\nstrip_prefix = true\n",
        u = up.url()
    )
}

#[tokio::test]
async fn path_table() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&routes(&up)).await;
    // (target, status, what the upstream receives; None = nothing forwarded)
    let cases: &[(&str, u16, Option<&str>)] = &[
        ("/public/x", 200, Some("/public/x")),
        ("/public/./x//y/", 200, Some("/public/x/y/")),
        ("/public/%7Ex?q=%2F..", 200, Some("/public/~x?q=%2F..")),
        ("/public/../admin", 401, None),
        ("/public/../admin/x", 401, None),
        ("/public/%2e%2e/admin", 401, None),
        ("/public/%2E%2E/admin/x", 401, None),
        ("/public/.%2e/admin/x", 401, None),
        ("//admin", 401, None),
        ("///admin/x", 401, None),
        ("/./admin/x", 401, None),
        ("/admin%2fx", 400, None),
        ("/admin%2Fx", 400, None),
        ("/public%2f..%2fadmin", 400, None),
        ("/admin%5cx", 400, None),
        ("/public/..%5cadmin", 400, None),
        ("/%2e%2e/admin/x", 400, None),
        ("/public/%00", 400, None),
        ("/admin;/x", 400, None),
        ("/public;jsessionid=1/x", 400, None),
        ("/public/x%3Badmin", 400, None),
        ("/public/x%3b", 400, None),
        ("/publicity", 404, None),
        ("/public-admin", 404, None),
        ("/administrator", 404, None),
        ("/ADMIN/x", 404, None),
        ("/svc", 200, Some("/base/")),
        ("/svc/orders/1?x=1", 200, Some("/base/orders/1?x=1")),
        ("/svc/../public/x", 200, Some("/public/x")),
    ];
    for (target, status, forwarded) in cases {
        let before = up.count();
        let (got, text) = raw_get(gw.http, target, "").await;
        assert_eq!(got, *status, "{target}: {text}");
        match forwarded {
            Some(path) => assert_eq!(up.last().path_and_query, *path, "{target}"),
            None => assert_eq!(up.count(), before, "{target} reached the upstream"),
        }
        if *status == 400 && !text.is_empty() {
            assert!(text.contains("\"bad_path\"") || text.contains("\"bad_request\""), "{target}: {text}");
        }
    }
}

#[tokio::test]
async fn an_admin_reaches_the_normalized_path() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&routes(&up)).await;
    let token = sign("es256", &claims("root", &["admin"]));
    let (status, _) = raw_get(gw.http, "/public/%2e%2e/admin//x", &format!("Authorization: Bearer {token}\r\n")).await;
    assert_eq!(status, 200);
    assert_eq!(up.last().path_and_query, "/admin/x");
}

#[tokio::test]
async fn request_target_forms_and_hosts() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&routes(&up)).await;
    let cases: &[(&str, u16)] = &[
        ("OPTIONS * HTTP/1.1\r\nHost: localhost\r\n", 400),
        ("GET http://localhost/public/x HTTP/1.1\r\nHost: localhost\r\n", 200),
        ("GET http://other.example/public/x HTTP/1.1\r\nHost: localhost\r\n", 400),
        ("GET /public/x HTTP/1.1\r\n", 400),
        ("GET /public/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n", 400),
        ("GET /public/x HTTP/1.1\r\nHost: a@b\r\n", 400),
        ("GET /public/x HTTP/1.0\r\n", 200),
        ("TRACE /public/x HTTP/1.1\r\nHost: localhost\r\n", 405),
        ("CONNECT localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n", 400),
        ("GET public/x HTTP/1.1\r\nHost: localhost\r\n", 400),
    ];
    for (head, status) in cases {
        let before = up.count();
        let (got, text) = raw(gw.http, format!("{head}Connection: close\r\n\r\n").as_bytes()).await;
        assert_eq!(got, *status, "{head:?}: {text}");
        if *status != 200 {
            assert_eq!(up.count(), before, "{head:?} reached the upstream");
        }
    }
}

/// P01–P10 as classes through the catalog's rig: the rule is decided on the
/// path alone, for every method, and nothing without the admin role reaches
/// `/admin`; the invariants are checked after each.
#[tokio::test]
async fn p01_to_p10_classes_with_the_invariants() {
    use support::attack::{Outcome, Rig};
    let rig = Rig::start().await;
    let a = format!("Authorization: Bearer {}\r\n", rig.a);
    let targets = [
        "/ADMIN/x",
        "/Admin/x",
        "//admin/x",
        "/./admin/x",
        "/admin//x",
        "/public/../admin/x",
        "/public/%2e%2e/admin/x",
        "/public/.%2E/admin/x",
        "/public%2f..%2fadmin/x",
        "/admin%2fx",
        "/public\\..\\admin/x",
        "/admin/x?/public",
        "/admin/x?public",
        "/admin/x#/public",
        "/admin/x%23/public",
        "/admin;/x",
        "/admin/x;/public",
        "/%61dmin/x",
        "/admin%00/x",
        "/admin/%2e%2e/admin/x",
    ];
    for target in targets {
        for method in ["GET", "get", "POST", "GETX", "PROPFIND", "DELETE"] {
            for auth in ["", a.as_str()] {
                let case = rig
                    .begin(format!("P {method} {target} {}", if auth.is_empty() { "anonymous" } else { "as alice" }));
                let head = format!(
                    "{method} {target} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let (status, text) = raw(rig.gw.http, head.as_bytes()).await;
                assert!(
                    matches!(status, 400 | 401 | 403 | 404 | 405) || (status == 0 && text.is_empty()),
                    "{method} {target}: {status} {text}"
                );
                rig.end(case, Outcome::Rejected).await;
            }
        }
    }
    // P07: the query never decides; the admin gets through with any of them.
    let z = format!("Authorization: Bearer {}\r\n", rig.z);
    let (status, _) = raw_get(rig.gw.http, "/admin/x?/public", &z).await;
    assert_eq!(status, 200);
    assert_eq!(rig.up.last().path_and_query, "/admin/x?/public");
}
