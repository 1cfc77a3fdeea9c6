//! The one public error enum. Every layer returns it; only `corral-api` turns it into HTTP.
//!
//! Each variant carries the *external* message, the text a client may see. Internal detail
//! (a database error, an I/O error) lives only in [`Error::Internal`] and is logged once by
//! the API layer, never sent.

use std::fmt;

/// Errors a request or a job can end with. The HTTP status is fixed per variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// 400: the request is malformed or a value is invalid.
    BadRequest(String),
    /// 401: missing or invalid credentials.
    Unauthorized(String),
    /// 403: authenticated but not allowed, or a reserved object.
    Forbidden(String),
    /// 404: no such resource (including another tenant's).
    NotFound(String),
    /// 405: known route, wrong method. `allow` is the `Allow` header value.
    MethodNotAllowed { message: String, allow: String },
    /// 408: the request body did not arrive in time (a slow or stalled client).
    RequestTimeout(String),
    /// 409: conflicts with the current state.
    Conflict(String),
    /// 410: what was asked for is no longer kept (a change feed resumed from a revision that
    /// retention removed); `oldest` is the oldest revision still available.
    Gone { message: String, oldest: i64 },
    /// 413: body over the limit (the limit in bytes).
    PayloadTooLarge(u64),
    /// 429: a per-tenant limit is reached (change feed watchers).
    TooManyRequests(String),
    /// 501: a known URI of a feature Corral does not implement.
    NotImplemented(String),
    /// 503: a dependency (the store) cannot be reached, or a service has no healthy instance.
    Unavailable(String),
    /// 500: an unexpected fault. `detail` is for the log only.
    Internal { detail: String },
    /// 500: an expected failure the client must hear about in its own words (a service
    /// program that could not be started): the message is shown.
    Failed(String),
}

impl Error {
    /// Builds an internal error from anything printable; the text never reaches a client.
    pub fn internal(detail: impl fmt::Display) -> Self {
        Error::Internal {
            detail: detail.to_string(),
        }
    }

    pub fn bad_request(msg: impl Into<String>) -> Self {
        Error::BadRequest(msg.into())
    }

    pub fn not_found(msg: impl Into<String>) -> Self {
        Error::NotFound(msg.into())
    }

    pub fn conflict(msg: impl Into<String>) -> Self {
        Error::Conflict(msg.into())
    }

    pub fn forbidden(msg: impl Into<String>) -> Self {
        Error::Forbidden(msg.into())
    }

    /// The HTTP status code of this error.
    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequest(_) => 400,
            Error::Unauthorized(_) => 401,
            Error::Forbidden(_) => 403,
            Error::NotFound(_) => 404,
            Error::MethodNotAllowed { .. } => 405,
            Error::RequestTimeout(_) => 408,
            Error::Conflict(_) => 409,
            Error::Gone { .. } => 410,
            Error::PayloadTooLarge(_) => 413,
            Error::TooManyRequests(_) => 429,
            Error::NotImplemented(_) => 501,
            Error::Unavailable(_) => 503,
            Error::Internal { .. } | Error::Failed(_) => 500,
        }
    }

    /// The message a client sees.
    pub fn external_message(&self) -> String {
        match self {
            Error::BadRequest(m)
            | Error::Unauthorized(m)
            | Error::Forbidden(m)
            | Error::NotFound(m)
            | Error::Conflict(m)
            | Error::RequestTimeout(m)
            | Error::NotImplemented(m)
            | Error::Unavailable(m)
            | Error::Failed(m)
            | Error::TooManyRequests(m) => m.clone(),
            Error::MethodNotAllowed { message, .. } | Error::Gone { message, .. } => message.clone(),
            Error::PayloadTooLarge(limit) => format!("Request body exceeds {limit} bytes."),
            Error::Internal { .. } => "Internal error.".to_string(),
        }
    }
}

/// A request body as the API read it: the domain input, or the 400 to answer once the checks
/// the contract puts first (permission, the resource's existence) have passed.
pub type Parsed<T> = std::result::Result<T, Error>;

/// The reason phrase of a status code, as the contract's `error` field spells it.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Internal { detail } => write!(f, "internal error: {detail}"),
            other => write!(f, "{} {}", other.status(), other.external_message()),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_its_status_and_a_known_reason() {
        let cases = [
            (Error::bad_request("x"), 400),
            (Error::Unauthorized("x".into()), 401),
            (Error::forbidden("x"), 403),
            (Error::not_found("x"), 404),
            (
                Error::MethodNotAllowed {
                    message: "x".into(),
                    allow: "GET".into(),
                },
                405,
            ),
            (Error::conflict("x"), 409),
            (
                Error::Gone {
                    message: "x".into(),
                    oldest: 3,
                },
                410,
            ),
            (Error::PayloadTooLarge(10), 413),
            (Error::RequestTimeout("x".into()), 408),
            (Error::TooManyRequests("x".into()), 429),
            (Error::NotImplemented("x".into()), 501),
            (Error::Unavailable("x".into()), 503),
            (Error::internal("boom"), 500),
        ];
        for (err, status) in cases {
            assert_eq!(err.status(), status, "{err:?}");
            assert_ne!(reason_phrase(status), "Error", "{status} lacks a reason phrase");
        }
    }

    #[test]
    fn internal_detail_is_never_external() {
        let err = Error::internal("password=hunter2 at db");
        assert_eq!(err.external_message(), "Internal error.");
        assert_eq!(
            Error::PayloadTooLarge(4).external_message(),
            "Request body exceeds 4 bytes."
        );
    }
}
