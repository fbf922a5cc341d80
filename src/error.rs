//! The one place errors become responses (docs/errors.md).
//!
//! Every failure a request can meet is a `GatewayError`; `into_response`
//! maps it to a status, the fixed JSON body `{"error","message"}` and, for
//! 401 and 403, an RFC 6750 `WWW-Authenticate`. The match is exhaustive
//! with no wildcard, so a new error cannot slip out without a decided
//! answer. Clients get the fixed text; the cause chain goes to the log
//! (`crate::report::chain`).

use http::{HeaderValue, Response, StatusCode, header};

use crate::auth::{AuthError, TokenError};
use crate::body::{self, Body, ReadError};
use crate::router::RouteError;
use crate::upstream::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("store failed")]
    Store(#[from] crate::store::StoreError),
    #[error("request headers exceed the configured limits")]
    HeadersTooLarge,
    #[error("request body exceeds the limit")]
    PayloadTooLarge,
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The message's framing is ambiguous (smuggling): refused, and the connection closed.
    #[error("ambiguous framing: {0}")]
    Framing(&'static str),
    #[error("the request body did not arrive within request_body_timeout")]
    BodyTimeout,
    #[error("wrong user name or password")]
    InvalidCredentials,
    #[error("unknown, expired or revoked refresh token")]
    InvalidRefreshToken,
    #[error("a spent refresh token was presented again")]
    RefreshReused,
    #[error("user name taken")]
    UserExists,
    #[error("too many failed logins")]
    TooManyAttempts(std::time::Duration),
    #[error("internal error: {0}")]
    Internal(&'static str),
    #[error("reading the request body")]
    Body(#[from] crate::body::ReadError),
    #[error("method not allowed: {0}")]
    MethodNotAllowed(http::Method),
    #[error("not found")]
    NotFound,
    /// A decision asked from outside `[authz] allow_from`.
    #[error("the caller may not ask for decisions")]
    Forbidden,
    #[error("draining")]
    Draining,
}

/// What the client is told.
struct Answer {
    status: StatusCode,
    code: &'static str,
    message: &'static str,
    /// RFC 6750 §3 `error` attribute; `None` with `Some(status 401)` means "no credentials" (no attribute).
    bearer_error: Option<&'static str>,
}

impl GatewayError {
    /// The spec's error code, for logs and metrics.
    pub fn code(&self) -> &'static str {
        self.answer().code
    }

    pub fn status(&self) -> StatusCode {
        self.answer().status
    }

    fn answer(&self) -> Answer {
        use StatusCode as S;
        let a = |status, code, message| Answer { status, code, message, bearer_error: None };
        let bearer = |status, code, message, error| Answer { status, code, message, bearer_error: Some(error) };
        match self {
            GatewayError::Route(RouteError::BadPath(_)) => {
                a(S::BAD_REQUEST, "bad_path", "the request path cannot be normalized safely")
            }
            GatewayError::Route(RouteError::BadHost(_)) => {
                a(S::BAD_REQUEST, "bad_request", "the request's host is missing, malformed or ambiguous")
            }
            GatewayError::Route(RouteError::NoRoute) => a(S::NOT_FOUND, "no_route", "no route matches this request"),
            GatewayError::Auth(AuthError::MissingToken) => {
                a(S::UNAUTHORIZED, "missing_token", "an access token is required")
            }
            GatewayError::Auth(AuthError::Token(TokenError::Expired)) => {
                bearer(S::UNAUTHORIZED, "token_expired", "the access token has expired", "invalid_token")
            }
            GatewayError::Auth(AuthError::Token(TokenError::NotYetValid)) => {
                bearer(S::UNAUTHORIZED, "token_not_yet_valid", "the access token is not valid yet", "invalid_token")
            }
            GatewayError::Auth(AuthError::Token(
                TokenError::TooLarge
                | TokenError::Malformed(_)
                | TokenError::Header(_)
                | TokenError::UnknownKey
                | TokenError::AlgorithmMismatch
                | TokenError::Claims(_)
                | TokenError::Verification(_)
                | TokenError::BadSignature,
            )) => bearer(S::UNAUTHORIZED, "invalid_token", "the access token is invalid", "invalid_token"),
            GatewayError::Auth(AuthError::Revoked) => {
                bearer(S::UNAUTHORIZED, "token_revoked", "the access token has been revoked", "invalid_token")
            }
            GatewayError::Auth(AuthError::StoreUnavailable) => {
                a(S::SERVICE_UNAVAILABLE, "store_unavailable", "revocations cannot be checked right now")
            }
            GatewayError::Auth(AuthError::InsufficientScope) => bearer(
                S::FORBIDDEN,
                "insufficient_scope",
                "the caller lacks a scope this route requires",
                "insufficient_scope",
            ),
            GatewayError::Auth(AuthError::CsrfFailed) => {
                a(S::FORBIDDEN, "csrf_failed", "the CSRF token is missing or does not match")
            }
            GatewayError::Auth(AuthError::InsufficientRole) => bearer(
                S::FORBIDDEN,
                "insufficient_role",
                "the caller lacks a role this route requires",
                "insufficient_scope",
            ),
            GatewayError::Upstream(UpstreamError::Busy) => {
                a(S::SERVICE_UNAVAILABLE, "upstream_busy", "every endpoint of the upstream is at its connection limit")
            }
            GatewayError::Upstream(UpstreamError::Timeout(_)) => {
                a(S::GATEWAY_TIMEOUT, "upstream_timeout", "the upstream did not answer in time")
            }
            GatewayError::Upstream(
                UpstreamError::Unavailable(_) | UpstreamError::BadUpgrade(_) | UpstreamError::Request(_),
            ) => a(S::BAD_GATEWAY, "upstream_unavailable", "the upstream could not be reached"),
            GatewayError::Store(_) => {
                a(S::SERVICE_UNAVAILABLE, "store_unavailable", "the store cannot be reached right now")
            }
            GatewayError::HeadersTooLarge => {
                a(S::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large", "the request headers are too large")
            }
            GatewayError::PayloadTooLarge | GatewayError::Body(ReadError::TooLarge(_)) => {
                a(S::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large")
            }
            GatewayError::BadRequest(_) | GatewayError::Framing(_) | GatewayError::Body(ReadError::Malformed(_)) => {
                a(S::BAD_REQUEST, "bad_request", "the request is malformed")
            }
            GatewayError::BodyTimeout | GatewayError::Body(ReadError::Timeout) => {
                a(S::REQUEST_TIMEOUT, "request_timeout", "the request body did not arrive in time")
            }
            GatewayError::MethodNotAllowed(_) => {
                a(S::METHOD_NOT_ALLOWED, "method_not_allowed", "this method is not allowed through the gateway")
            }
            GatewayError::NotFound => a(S::NOT_FOUND, "not_found", "not found"),
            GatewayError::Forbidden => a(S::FORBIDDEN, "forbidden", "this address may not ask for decisions"),
            GatewayError::InvalidCredentials => {
                a(S::UNAUTHORIZED, "invalid_credentials", "wrong user name or password")
            }
            GatewayError::InvalidRefreshToken => {
                a(S::UNAUTHORIZED, "invalid_refresh_token", "the refresh token is unknown, expired or revoked")
            }
            GatewayError::RefreshReused => {
                a(S::UNAUTHORIZED, "refresh_reused", "the refresh token was already used; its session is revoked")
            }
            GatewayError::UserExists => a(S::CONFLICT, "user_exists", "that user name is taken"),
            GatewayError::TooManyAttempts(_) => {
                a(S::TOO_MANY_REQUESTS, "too_many_attempts", "too many failed logins; try again later")
            }
            GatewayError::Internal(_) => a(S::INTERNAL_SERVER_ERROR, "internal_error", "internal error"),
            GatewayError::Draining => a(S::SERVICE_UNAVAILABLE, "draining", "the gateway is shutting down"),
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let answer = self.answer();
        let close = matches!(
            self,
            GatewayError::Framing(_) | GatewayError::BodyTimeout | GatewayError::Body(ReadError::Timeout)
        );
        let retry_after = match &self {
            GatewayError::TooManyAttempts(wait) => Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)),
            _ => None,
        };
        let mut response = Response::new(body::json(&serde_json::json!({
            "error": answer.code,
            "message": answer.message,
        })));
        *response.status_mut() = answer.status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let challenge = match (answer.bearer_error, answer.status) {
            (Some(error), _) => {
                Some(format!("Bearer realm=\"authgate\", error=\"{error}\", error_description=\"{}\"", answer.message))
            }
            // RFC 6750 §3.1: a request without credentials gets no error code.
            (None, StatusCode::UNAUTHORIZED) => Some("Bearer realm=\"authgate\"".to_owned()),
            (None, _) => None,
        };
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }

    /// The same refusal for a gRPC client (`content-type: application/grpc...`),
    /// which reads no HTTP body and no HTTP status: 200, and a trailers-only
    /// answer whose `grpc-status` carries the meaning (UNAUTHENTICATED for
    /// 401, PERMISSION_DENIED for 403, ...) and `grpc-message` the text;
    /// `WWW-Authenticate` and `Retry-After` stay.
    pub fn into_grpc_response(self) -> Response<Body> {
        let answer = self.answer();
        let code: u16 = match answer.status.as_u16() {
            400 => 3,             // INVALID_ARGUMENT
            401 => 16,            // UNAUTHENTICATED
            403 => 7,             // PERMISSION_DENIED
            404 | 405 => 12,      // UNIMPLEMENTED: no such method here
            408 | 504 => 4,       // DEADLINE_EXCEEDED
            413 | 429 | 431 => 8, // RESOURCE_EXHAUSTED
            502 | 503 => 14,      // UNAVAILABLE
            _ => 2,               // UNKNOWN
        };
        let mut response = self.into_response();
        *response.status_mut() = StatusCode::OK;
        *response.body_mut() = body::empty();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from(code));
        headers.insert("grpc-message", HeaderValue::from_static(answer.message));
        headers.remove(header::CONNECTION);
        response
    }
}

/// Whether a request is a gRPC call (`application/grpc`, `+proto`, `+json`, ...).
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
        let ct = ct.trim().to_ascii_lowercase();
        ct == "application/grpc" || ct.starts_with("application/grpc+") || ct.starts_with("application/grpc;")
    })
}
