//! `/ui/session`: the web console's sign-in, session and sign-out (docs/security.md,
//! "Console sessions"). Public routes: the credential is the body's key (sign-in) or the
//! session cookie itself.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use corral_core::identity::sessions::{self, CSRF_REFUSED, Session, SignIn};
use corral_types::views::ErrorBody;
use corral_types::{Error, Principal};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::console::{CSRF_HEADER, FORM_COOKIE, SESSION_COOKIE, cookie, security_headers, set_cookie};
use crate::error::ApiError;
use crate::extract::{BodyError, parse_json, read_body};

/// The console's view of its session.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConsoleSession {
    pub signed_in: bool,
    /// Signed in: the token every change request sends as `X-CSRF-Token`. Signed out: the
    /// sign-in form's token, sent back as `csrf`.
    pub csrf: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `admin`, `user` or `viewer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// An admin of tenant `superadmin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superadmin: Option<bool>,
    /// When the session ends, milliseconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// The sign-in form: a key (README 3.1) and, optionally, whose it must be.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct SignInForm {
    /// An API key (`crk_...`) or an access token.
    pub api_key: String,
    /// When given, the key must be this user's (with `tenant`, or the user's only tenant).
    #[serde(default)]
    pub user: Option<String>,
    /// When given, the key must belong to this tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The sign-in form's token from `GET /ui/session` (or send it as `X-CSRF-Token`).
    #[serde(default)]
    pub csrf: Option<String>,
}

fn disabled(method: Method) -> Response {
    ApiError(Error::not_found(format!("No route for {method} /ui/session."))).into_response()
}

/// A JSON answer of `/ui/session`: the `/ui` headers, never cached.
fn answer(status: StatusCode, body: Option<&ConsoleSession>, cookies: Vec<HeaderValue>) -> Response {
    let mut resp = match body {
        Some(b) => crate::reply::Json(b).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    };
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    for c in cookies {
        h.append(header::SET_COOKIE, c);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    security_headers(h);
    resp
}

/// An error of `/ui/session`, with the `/ui` headers.
fn refuse(e: Error) -> Response {
    let mut resp = ApiError(e).into_response();
    security_headers(resp.headers_mut());
    resp
}

fn signed_in(state: &AppState, principal: &Principal, session: &Session) -> ConsoleSession {
    ConsoleSession {
        signed_in: true,
        csrf: state.core.identity().session_csrf(session),
        user: Some(principal.user.as_str().to_string()),
        tenant: Some(principal.tenant.name.as_str().to_string()),
        role: Some(principal.role.as_str().to_string()),
        superadmin: Some(principal.is_superadmin()),
        expires_at: Some(session.expires_at()),
    }
}

fn clear_session(state: &AppState) -> Option<HeaderValue> {
    set_cookie(SESSION_COOKIE, "", "/", Some(0), state.tls)
}

/// The signed-in session of the request's cookie, if it opens and its key still
/// authenticates.
async fn current(state: &AppState, headers: &HeaderMap) -> Option<(Principal, Session)> {
    let value = cookie(headers, SESSION_COOKIE)?;
    let identity = state.core.identity();
    let session = identity.open_session(value).ok()?;
    let principal = identity.session_principal(&session).await.ok()?;
    Some((principal, session))
}

/// The console's session: who is signed in, with the CSRF token of its change requests; or,
/// signed out, the sign-in form's token (also set as the `corral_csrf` cookie, `Path=/ui`,
/// unless the request already has a valid one). A session cookie that no longer
/// authenticates (ended, key revoked) is cleared.
#[utoipa::path(get, path = "/ui/session", tag = "console", security(()),
    responses((status = 200, body = ConsoleSession),
              (status = 404, description = "The console is disabled (`[console] enabled = false`).", body = ErrorBody)))]
pub async fn get_session(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.console_enabled {
        return disabled(Method::GET);
    }
    if let Some((principal, session)) = current(&state, &headers).await {
        return answer(
            StatusCode::OK,
            Some(&signed_in(&state, &principal, &session)),
            Vec::new(),
        );
    }
    let mut cookies: Vec<HeaderValue> = Vec::new();
    if cookie(&headers, SESSION_COOKIE).is_some() {
        cookies.extend(clear_session(&state));
    }
    let token = match cookie(&headers, FORM_COOKIE).filter(|t| sessions::is_form_token(t)) {
        Some(t) => t.to_string(),
        None => match sessions::new_form_token() {
            Ok(t) => {
                cookies.extend(set_cookie(FORM_COOKIE, &t, "/ui", None, state.tls));
                t
            }
            Err(e) => return refuse(e),
        },
    };
    let body = ConsoleSession {
        signed_in: false,
        csrf: token,
        user: None,
        tenant: None,
        role: None,
        superadmin: None,
        expires_at: None,
    };
    answer(StatusCode::OK, Some(&body), cookies)
}

/// Is the request's `Origin` this server (the `Host` it was sent to)? A browser sends
/// `Origin` on every cross-origin request and on same-origin `POST`s.
fn same_origin(headers: &HeaderMap) -> bool {
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if site.is_some_and(|s| s.eq_ignore_ascii_case("cross-site") || s.eq_ignore_ascii_case("same-site")) {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, authority)) = origin.to_str().ok().and_then(|o| o.split_once("://")) else {
        return false;
    };
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let strip = |a: &str| a.strip_suffix(default_port).unwrap_or(a).to_ascii_lowercase();
    strip(authority) == strip(host)
}

/// The form of a sign-in body: URL-encoded when the request says so, JSON otherwise
/// (README 9).
fn parse_form(headers: &HeaderMap, bytes: &[u8]) -> Result<SignInForm, Error> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if form {
        serde_urlencoded::from_bytes(bytes)
            .map_err(|e| Error::bad_request(format!("Invalid request body: {e}.")))
    } else {
        parse_json(bytes).map_err(BodyError::into_error)
    }
}

/// Signs in with an API key: `200` with the session and its cookie (`corral_session`,
/// `HttpOnly`, `SameSite=Strict`, `Secure` under TLS, `Max-Age` = `[console] session_ttl`).
/// The form's `csrf` (or `X-CSRF-Token`) must equal the `corral_csrf` cookie of
/// `GET /ui/session`, and a cross-site request is refused (403). A key that does not
/// authenticate (or is not the named user's or tenant's) is 401 `Invalid credentials.`.
#[utoipa::path(post, path = "/ui/session", tag = "console", security(()),
    request_body(content(
        (SignInForm = "application/json"),
        (SignInForm = "application/x-www-form-urlencoded"),
    )),
    responses((status = 200, body = ConsoleSession),
              (status = 400, description = "The body is not a sign-in form.", body = ErrorBody),
              (status = 401, description = "`Invalid credentials.`", body = ErrorBody),
              (status = 403, description = "`CSRF token missing or invalid.` (no or another `corral_csrf` cookie), or `Cross-site request refused.`", body = ErrorBody),
              (status = 404, description = "The console is disabled.", body = ErrorBody)))]
pub async fn post_session(State(state): State<AppState>, req: Request) -> Response {
    if !state.console_enabled {
        return disabled(Method::POST);
    }
    let headers = req.headers().clone();
    if !same_origin(&headers) {
        return refuse(Error::Forbidden("Cross-site request refused.".into()));
    }
    let bytes = match read_body(req, &state).await {
        Ok(b) => b,
        Err(e) => return refuse(e.into_error()),
    };
    let form = match parse_form(&headers, &bytes) {
        Ok(f) => f,
        Err(e) => return refuse(e),
    };
    let presented = form
        .csrf
        .as_deref()
        .or_else(|| headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()));
    let expected = cookie(&headers, FORM_COOKIE);
    if !matches!((presented, expected), (Some(p), Some(e)) if sessions::same_form_token(e, p.trim())) {
        return refuse(Error::Forbidden(CSRF_REFUSED.into()));
    }
    let given = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let input = SignIn {
        secret: form.api_key.trim().to_string(),
        user: given(form.user),
        tenant: given(form.tenant),
    };
    let done = match state.core.identity().sign_in(input).await {
        Ok(d) => d,
        Err(e) => return refuse(e),
    };
    let ttl = state.core.identity().session_ttl().as_secs();
    let mut cookies: Vec<HeaderValue> = Vec::new();
    cookies.extend(set_cookie(
        SESSION_COOKIE,
        &done.cookie,
        "/",
        Some(ttl),
        state.tls,
    ));
    cookies.extend(set_cookie(FORM_COOKIE, "", "/ui", Some(0), state.tls));
    answer(
        StatusCode::OK,
        Some(&signed_in(&state, &done.principal, &done.session)),
        cookies,
    )
}

/// Signs out: `204` and the session cookie cleared. A session that still opens must send its
/// CSRF token as `X-CSRF-Token` (403 otherwise); without one there is nothing to protect.
#[utoipa::path(delete, path = "/ui/session", tag = "console", security(()),
    responses((status = 204, description = "Signed out."),
              (status = 403, description = "`CSRF token missing or invalid.`", body = ErrorBody),
              (status = 404, description = "The console is disabled.", body = ErrorBody)))]
pub async fn delete_session(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.console_enabled {
        return disabled(Method::DELETE);
    }
    let identity = state.core.identity();
    if let Some(session) = cookie(&headers, SESSION_COOKIE).and_then(|v| identity.open_session(v).ok()) {
        let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if let Err(e) = identity.check_session_csrf(&session, presented) {
            return refuse(e);
        }
    }
    answer(
        StatusCode::NO_CONTENT,
        None,
        clear_session(&state).into_iter().collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn only_same_origin_requests_sign_in() {
        assert!(same_origin(&h(&[("host", "a:1")])));
        assert!(same_origin(&h(&[("host", "a:1"), ("origin", "http://a:1")])));
        assert!(same_origin(&h(&[("host", "A"), ("origin", "https://a:443")])));
        assert!(same_origin(&h(&[
            ("host", "a:1"),
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(!same_origin(&h(&[("host", "a:1"), ("origin", "http://b:1")])));
        assert!(!same_origin(&h(&[("host", "a:1"), ("origin", "null")])));
        assert!(!same_origin(&h(&[
            ("host", "a:1"),
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(!same_origin(&h(&[("origin", "http://a:1")])));
    }
}
