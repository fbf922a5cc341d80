//! The attack catalog's rig (`SECURITY-CASES.md`): the gateway G with the
//! catalog's routes, a recording upstream U, the tokens A (alice, role
//! `user`) and Z (root, role `admin`), and the invariants checked after
//! every case:
//!
//! - I1: G still serves the control request `A -> /api/x = 200`;
//! - I2: no 5xx unless the case says so (checked by each case's status);
//! - I3: U never saw a client-supplied `X-Auth-*` (every spoofed value in
//!   these tests contains `spoof`), a second identity header, an
//!   `Authorization` header or one of the gateway's cookies;
//! - I4: a rejected request reached U zero times;
//! - I5: a token rejection came back within [`FAST`].
//!
//! Routes: `/public` anonymous, `/api` any authenticated caller, `/admin`
//! role `admin`, anything else is not routed (404, nothing forwarded).

use std::time::{Duration, Instant};

use super::client::get_bearer;
use super::gateway::{Options, TestGateway};
use super::tokens::{claims, sign};
use super::upstream::Upstream;

/// I5's bound on a token rejection (no network, file or store work driven by
/// the attacker). Debug builds on a loaded two-core machine stay well under it.
pub const FAST: Duration = Duration::from_millis(100);

pub struct Rig {
    pub gw: TestGateway,
    pub up: Upstream,
    /// alice, role `user`.
    pub a: String,
    /// root, role `admin`.
    pub z: String,
}

/// What a case expects of U.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// Rejected by G: U saw nothing (I4).
    Rejected,
    /// A token rejection: I4 and answered within [`FAST`] (I5).
    TokenRejected,
    /// Forwarded (U's view is checked for I3).
    Forwarded,
    /// The case itself asserted what U may see (I3 and I1 still checked).
    Checked,
}

/// One case in flight: what U had seen and when it started.
pub struct Case {
    name: String,
    before: usize,
    started: Instant,
}

pub fn catalog_routes(up: &Upstream) -> String {
    format!(
        "[[route]]\npath = \"/public\"\nupstream = \"{u}\"\nauth = \"none\"\n\
         [[route]]\npath = \"/api\"\nupstream = \"{u}\"\n\
         [[route]]\npath = \"/admin\"\nupstream = \"{u}\"\nroles = [\"admin\"]\n",
        u = up.url()
    )
}

impl Rig {
    pub async fn start() -> Rig {
        Self::start_with("", Options::default()).await
    }

    /// The catalog's routes plus `rest` (more routes, `[headers]`, ...).
    pub async fn start_with(rest: &str, options: Options) -> Rig {
        let up = Upstream::start().await;
        let gw = TestGateway::start_with(&format!("{}{rest}", catalog_routes(&up)), options).await;
        Rig { gw, up, a: sign("es256", &claims("alice", &["user"])), z: sign("es256", &claims("root", &["admin"])) }
    }

    pub fn url(&self, path: &str) -> String {
        self.gw.url(path)
    }

    pub fn begin(&self, name: impl Into<String>) -> Case {
        Case { name: name.into(), before: self.up.count(), started: Instant::now() }
    }

    /// Checks I1, I3, I4 and I5 for a finished case.
    pub async fn end(&self, case: Case, outcome: Outcome) {
        let elapsed = case.started.elapsed();
        let name = &case.name;
        match outcome {
            Outcome::Rejected | Outcome::TokenRejected => {
                assert_eq!(self.up.count(), case.before, "I4: {name}: a rejected request reached the upstream")
            }
            Outcome::Forwarded => assert!(self.up.count() > case.before, "{name}: nothing was forwarded"),
            Outcome::Checked => {}
        }
        if outcome == Outcome::TokenRejected {
            assert!(elapsed < FAST, "I5: {name}: the rejection took {elapsed:?}");
        }
        self.assert_upstream_clean(name);
        let control = get_bearer(&self.url("/api/x"), &self.a).await;
        assert_eq!(control.status, 200, "I1: {name}: the control request failed afterwards");
    }

    /// I3 over everything U has received so far.
    pub fn assert_upstream_clean(&self, name: &str) {
        for seen in self.up.all() {
            for (header, value) in &seen.headers {
                let value = String::from_utf8_lossy(value.as_bytes()).to_ascii_lowercase();
                if header.as_str().starts_with("x-auth-") {
                    assert!(!value.contains("spoof"), "I3: {name}: a client {header} reached the upstream");
                    assert_eq!(seen.headers.get_all(header).iter().count(), 1, "I3: {name}: two {header}");
                }
                assert_ne!(header, "authorization", "I3: {name}: Authorization reached the upstream");
                if header == "cookie" {
                    assert!(!value.contains("authgate-"), "I3: {name}: a gateway cookie reached the upstream");
                }
            }
        }
    }
}
