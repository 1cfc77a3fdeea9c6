//! The web console's server side (docs/security.md, "Console sessions"): its files, embedded
//! at build time (`build.rs`) and served under `/ui` with a strict Content-Security-Policy,
//! and the session cookie as a credential of every API route.
//!
//! The session rules (sealing, expiry, CSRF tokens) are core's (`identity/sessions.rs`); this
//! module only reads and writes cookies and headers.

use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use corral_types::{Error, Principal};

use crate::AppState;
use crate::error::ApiError;

include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));

/// The sealed session (`Path=/`: every API route reads it).
pub const SESSION_COOKIE: &str = "corral_session";
/// The sign-in form's double-submit token (`Path=/ui`: only the sign-in reads it).
pub const FORM_COOKIE: &str = "corral_csrf";
/// Where a cookie-authenticated change request puts the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The console runs only its own scripts and styles and talks only to its origin.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Served when the build found no `console/index.html`.
const PLACEHOLDER: &[u8] = b"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Corral console</title></head><body><p>This build has no console.</p></body></html>\n";

/// Adds the headers every `/ui` answer carries.
pub fn security_headers(headers: &mut HeaderMap) {
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
}

/// The contract's 404 for a path that is not served (the console is disabled, or no such
/// asset), with the `/ui` headers.
fn not_found(method: &Method, path: &str) -> Response {
    let mut resp = ApiError(Error::not_found(format!("No route for {method} {path}."))).into_response();
    security_headers(resp.headers_mut());
    resp
}

/// The content type of a console file, by its extension.
fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json; charset=utf-8",
        Some("webmanifest") => "application/manifest+json; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn find(path: &str) -> Option<(&'static [u8], &'static str)> {
    ASSETS
        .binary_search_by(|(p, _, _)| (*p).cmp(path))
        .ok()
        .and_then(|i| ASSETS.get(i))
        .map(|(_, bytes, etag)| (*bytes, *etag))
}

/// One file's answer: 304 when the browser's copy is current. `no-cache`: the browser keeps
/// the file but asks again (the names carry no version, and a new binary may change them).
fn file(headers: &HeaderMap, path: &str, bytes: &'static [u8], etag: &'static str) -> Response {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut resp = bytes.into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
        resp
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_static(etag));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    security_headers(h);
    resp
}

fn index_html(headers: &HeaderMap) -> Response {
    match find("index.html") {
        Some((bytes, etag)) => file(headers, "index.html", bytes, etag),
        None => file(headers, "index.html", PLACEHOLDER, "\"placeholder\""),
    }
}

/// `GET /ui`: the console's page (it signs in by itself; no credentials needed).
pub async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.console_enabled {
        return not_found(&Method::GET, "/ui");
    }
    index_html(&headers)
}

/// `GET /ui/{*path}`: a console file, or the page itself for any other path outside
/// `assets/` (the console routes on the client). A missing file under `assets/` is 404.
pub async fn asset(State(state): State<AppState>, Path(path): Path<String>, headers: HeaderMap) -> Response {
    if !state.console_enabled {
        return not_found(&Method::GET, &format!("/ui/{path}"));
    }
    match find(&path) {
        Some((bytes, etag)) => file(&headers, &path, bytes, etag),
        None if path.starts_with("assets/") => not_found(&Method::GET, &format!("/ui/{path}")),
        None => index_html(&headers),
    }
}

/// `GET /`: a browser that opens the server's address lands on the console.
pub async fn root(State(state): State<AppState>) -> Response {
    if !state.console_enabled {
        return not_found(&Method::GET, "/");
    }
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, HeaderValue::from_static("/ui/"))],
    )
        .into_response()
}

/// Any other method on a console route: the contract's 405 with `Allow: GET, HEAD` (these
/// routes are outside the OpenAPI document the `Allow` map is built from).
pub async fn get_only(method: Method, uri: axum::http::Uri) -> Response {
    let mut resp = ApiError(Error::MethodNotAllowed {
        message: format!("Method {method} is not allowed for {}.", uri.path()),
        allow: "GET, HEAD".into(),
    })
    .into_response();
    security_headers(resp.headers_mut());
    resp
}

/// The value of cookie `name` in the request's `Cookie` headers (the first one).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
}

/// A `Set-Cookie` value: always `HttpOnly` and `SameSite=Strict`, `Secure` under TLS;
/// `max_age` `Some(0)` deletes the cookie, `None` makes it last the browser session.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age: Option<u64>,
    secure: bool,
) -> Option<HeaderValue> {
    let mut text = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        text.push_str("; Secure");
    }
    HeaderValue::from_str(&text).ok()
}

/// A `Cookie` header without the console's cookies (what the method proxy forwards to a
/// service: the session is a credential of Corral, not of the service). `None`: nothing left.
pub fn without_console_cookies(value: &HeaderValue) -> Option<HeaderValue> {
    let text = value.to_str().ok()?;
    let kept: Vec<&str> = text
        .split(';')
        .map(str::trim)
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
            !pair.is_empty() && name != SESSION_COOKIE && name != FORM_COOKIE
        })
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join("; ")).ok()
}

/// Does the request carry a credential in its headers (README 3.2)? Then a cookie is ignored.
fn has_header_credential(headers: &HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION)
        || headers.contains_key("coopr-userid")
        || headers.contains_key("coopr-tenantid")
        || headers.contains_key("coopr-apikey")
}

/// The principal of a request authenticated by its session cookie, called by the `Ctx`
/// extractor only once the headers held no credential. `None`: no session cookie (or the
/// console is disabled), so the request has no credentials at all. Otherwise the session is
/// opened (401 if it does not open or has ended), its key authenticated like a bearer key
/// (401 once revoked), and a change request must carry the session's CSRF token (403).
pub async fn session_principal(parts: &Parts, state: &AppState) -> Option<Result<Principal, Error>> {
    // The method proxy answers with a user's service's content on this origin: a browser's
    // ambient session must never reach it (docs/security.md), only header credentials.
    if !state.console_enabled
        || has_header_credential(&parts.headers)
        || crate::proxy::split_method_path(parts.uri.path()).is_some()
    {
        return None;
    }
    let value = cookie(&parts.headers, SESSION_COOKIE)?;
    let identity = state.core.identity();
    let check = async {
        let session = identity.open_session(value)?;
        let principal = identity.session_principal(&session).await?;
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            let presented = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            identity.check_session_csrf(&session, presented)?;
        }
        Ok(principal)
    };
    Some(check.await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; corral_session=v1:x+y/z=="),
        );
        h.append(header::COOKIE, HeaderValue::from_static("corral_csrf=t"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("v1:x+y/z=="));
        assert_eq!(cookie(&h, FORM_COOKIE), Some("t"));
        assert_eq!(cookie(&h, "a"), Some("1"));
        assert_eq!(cookie(&h, "b"), None);
    }

    #[test]
    fn the_proxy_forwards_other_cookies_only() {
        let v = HeaderValue::from_static("a=1; corral_session=v1:x; corral_csrf=t;b=2");
        assert_eq!(without_console_cookies(&v).unwrap(), "a=1; b=2");
        let v = HeaderValue::from_static("corral_session=v1:x");
        assert_eq!(without_console_cookies(&v), None);
    }

    #[test]
    fn cookies_are_strict_and_secure_under_tls() {
        let c = set_cookie("n", "v", "/", Some(60), true).unwrap();
        assert_eq!(c, "n=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=60; Secure");
        let c = set_cookie("n", "v", "/ui", None, false).unwrap();
        assert_eq!(c, "n=v; Path=/ui; HttpOnly; SameSite=Strict");
    }

    #[test]
    fn assets_are_sorted_and_have_types() {
        assert!(ASSETS.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(find("index.html").is_some());
        assert_eq!(content_type("assets/app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("a.CSS"), "text/css; charset=utf-8");
        assert_eq!(content_type("x"), "application/octet-stream");
    }
}
