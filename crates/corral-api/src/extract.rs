//! Extractors: the authenticated context, JSON bodies and path parameters, each failing with
//! the contract's JSON error instead of a framework's plain-text rejection.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use corral_core::OpCtx;
use corral_core::auth::{Credential, invalid_credentials};
use corral_types::Error;
use serde::de::DeserializeOwned;

use axum::response::IntoResponse;

use crate::error::ApiError;
use crate::{AppState, RequestId};

/// The authenticated operation context of a request (README 3).
pub struct Ctx(pub OpCtx);

fn unauthorized(msg: &str) -> Error {
    Error::Unauthorized(msg.to_string())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Error> {
    headers
        .get(name)
        .map(|v| v.to_str().map(str::trim).map_err(|_| invalid_credentials()))
        .transpose()
}

/// Reads the credential a request presents, applying the precedence of README 3.2.
pub fn credential_from_headers(headers: &HeaderMap) -> Result<Credential, Error> {
    let user = header_str(headers, "coopr-userid")?;
    let tenant = header_str(headers, "coopr-tenantid")?;
    let apikey = header_str(headers, "coopr-apikey")?;
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let malformed = || unauthorized("Malformed Authorization header.");
        let auth = auth.to_str().map_err(|_| malformed())?.trim();
        let (scheme, value) = auth.split_once(' ').ok_or_else(malformed)?;
        let value = value.trim();
        if value.is_empty() {
            return Err(malformed());
        }
        let mut cred = Credential {
            secret: String::new(),
            user: user.map(str::to_string),
            tenant: tenant.map(str::to_string),
            user_must_be_unique: false,
        };
        if scheme.eq_ignore_ascii_case("bearer") {
            cred.secret = value.to_string();
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = STANDARD.decode(value).map_err(|_| malformed())?;
            let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
            let (who, key) = decoded.split_once(':').ok_or_else(malformed)?;
            let (basic_user, basic_tenant) = match who.rsplit_once('@') {
                Some((u, t)) => (u, Some(t)),
                None => (who, None),
            };
            // Coopr headers sent beside a Basic credential must name the same identity.
            if cred.user.as_deref().is_some_and(|u| u != basic_user)
                || (cred.tenant.is_some() && basic_tenant.is_some() && cred.tenant.as_deref() != basic_tenant)
            {
                return Err(invalid_credentials());
            }
            cred.user = Some(basic_user.to_string());
            if let Some(t) = basic_tenant {
                cred.tenant = Some(t.to_string());
            }
            cred.user_must_be_unique = cred.tenant.is_none();
            cred.secret = key.to_string();
        } else {
            return Err(malformed());
        }
        if cred.secret.is_empty() {
            return Err(malformed());
        }
        return Ok(cred);
    }
    if user.is_none() && tenant.is_none() && apikey.is_none() {
        return Err(unauthorized("Authentication required."));
    }
    let user = user.ok_or_else(|| unauthorized("Coopr-UserID not found in request headers."))?;
    let tenant = tenant.ok_or_else(|| unauthorized("Coopr-TenantID not found in request headers."))?;
    let apikey = apikey.ok_or_else(|| unauthorized("Coopr-ApiKey not found in request headers."))?;
    Ok(Credential {
        secret: apikey.to_string(),
        user: Some(user.to_string()),
        tenant: Some(tenant.to_string()),
        user_must_be_unique: false,
    })
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let principal = match credential_from_headers(&parts.headers) {
            Ok(cred) => state.core.authenticator().authenticate(&cred).await?,
            // No credential in the headers: the console's session cookie may be one.
            Err(e) => match crate::console::session_principal(parts, state).await {
                Some(principal) => principal?,
                None => return Err(e.into()),
            },
        };
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        tracing::debug!(tenant = %principal.tenant.name, user = %principal.user, "authenticated");
        let ctx = OpCtx::new(principal, request_id);
        Ok(Ctx(
            match parts.extensions.get::<crate::middleware::RevisionSlot>() {
                Some(slot) => slot.attach(ctx),
                None => ctx,
            },
        ))
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Not JSON at all: always `Request body is not valid JSON: ...`.
    Syntax(Error),
    /// JSON of the wrong shape; an endpoint may replace the message with its family's text.
    Shape(Error),
    /// Over the limit (413) or unreadable.
    Transport(Error),
}

impl BodyError {
    pub fn into_error(self) -> Error {
        match self {
            BodyError::Syntax(e) | BodyError::Shape(e) | BodyError::Transport(e) => e,
        }
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        ApiError(e.into_error())
    }
}

impl IntoResponse for BodyError {
    fn into_response(self) -> axum::response::Response {
        ApiError(self.into_error()).into_response()
    }
}

pub(crate) async fn read_body(req: Request, state: &AppState) -> Result<Bytes, BodyError> {
    let limit = state.body_read_timeout;
    let Ok(read) = tokio::time::timeout(limit, Bytes::from_request(req, state)).await else {
        return Err(BodyError::Transport(Error::RequestTimeout(format!(
            "The request body did not arrive within {} s.",
            limit.as_secs()
        ))));
    };
    read.map_err(|rej| {
        if rej.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            BodyError::Transport(Error::PayloadTooLarge(state.max_body_bytes as u64))
        } else {
            BodyError::Transport(Error::bad_request(format!(
                "Could not read the request body: {rej}."
            )))
        }
    })
}

/// True when a JSON text holds the escape `\u0000` (a NUL character in a string). PostgreSQL
/// cannot store NUL in text, so such a body is refused up front on every store alike
/// instead of failing deep in a query.
fn has_nul_escape(bytes: &[u8]) -> bool {
    const ESCAPE: &[u8] = b"\\u0000";
    (0..bytes.len().saturating_sub(ESCAPE.len() - 1)).any(|i| {
        bytes[i..].starts_with(ESCAPE) && {
            // The backslash escapes only if an even number of backslashes precede it.
            let before = bytes[..i].iter().rev().take_while(|b| **b == b'\\').count();
            before % 2 == 0
        }
    })
}

/// Parses JSON whatever the `Content-Type` (README 9), naming the field of a type error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    if has_nul_escape(bytes) {
        return Err(BodyError::Syntax(Error::bad_request(
            "Request body contains a NUL character (\\u0000), which Corral does not accept.",
        )));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof
            | serde_json::error::Category::Io => BodyError::Syntax(Error::bad_request(format!(
                "Request body is not valid JSON: {inner}."
            ))),
            serde_json::error::Category::Data if path == "." || path.is_empty() => {
                BodyError::Shape(Error::bad_request(format!("Invalid request body: {inner}.")))
            }
            serde_json::error::Category::Data => BodyError::Shape(Error::bad_request(format!(
                "Invalid request body: {path}: {inner}."
            ))),
        }
    })?;
    de.end().map_err(|e| {
        BodyError::Syntax(Error::bad_request(format!(
            "Request body is not valid JSON: {e}."
        )))
    })?;
    Ok(value)
}

/// A required JSON body.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = BodyError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// An optional JSON body: empty (or whitespace) means `T::default()`.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = BodyError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// A body the endpoint ignores; it is still read so the size limit applies.
pub struct IgnoredBody;

impl FromRequest<AppState> for IgnoredBody {
    type Rejection = BodyError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        read_body(req, state).await.map(|_| IgnoredBody)
    }
}

/// Path parameters, percent-decoded once by the router (README 6.1); a decoded value with
/// `/` or a control character is refused with 400.
pub struct Params<T>(pub T);

impl<T> FromRequestParts<AppState> for Params<T>
where
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Path(raw): Path<Vec<(String, String)>> = Path::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError(Error::bad_request(format!("Invalid path parameter: {e}."))))?;
        if let Some((_, v)) = raw
            .iter()
            .find(|(_, v)| v.contains('/') || v.chars().any(char::is_control))
        {
            return Err(ApiError(Error::bad_request(format!(
                "Invalid path parameter '{}'.",
                v.escape_default()
            ))));
        }
        let Path(value) = Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError(Error::bad_request(format!("Invalid path parameter: {e}."))))?;
        Ok(Params(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn msg(r: Result<Credential, Error>) -> String {
        r.unwrap_err().external_message()
    }

    #[test]
    fn coopr_headers_need_all_three_in_order() {
        assert_eq!(
            msg(credential_from_headers(&headers(&[]))),
            "Authentication required."
        );
        assert_eq!(
            msg(credential_from_headers(&headers(&[("coopr-apikey", "k")]))),
            "Coopr-UserID not found in request headers."
        );
        assert_eq!(
            msg(credential_from_headers(&headers(&[("coopr-userid", "u")]))),
            "Coopr-TenantID not found in request headers."
        );
        assert_eq!(
            msg(credential_from_headers(&headers(&[
                ("coopr-userid", "u"),
                ("coopr-tenantid", "t")
            ]))),
            "Coopr-ApiKey not found in request headers."
        );
        let c = credential_from_headers(&headers(&[
            ("coopr-userid", "u"),
            ("coopr-tenantid", "t"),
            ("coopr-apikey", "k"),
        ]))
        .unwrap();
        assert_eq!(
            (c.secret.as_str(), c.user.as_deref(), c.tenant.as_deref()),
            ("k", Some("u"), Some("t"))
        );
    }

    #[test]
    fn authorization_forms() {
        let c = credential_from_headers(&headers(&[("authorization", "bEaReR crk_x")])).unwrap();
        assert_eq!(c.secret, "crk_x");
        let basic = STANDARD.encode("alice@acme:crk_y");
        let c = credential_from_headers(&headers(&[("authorization", &format!("Basic {basic}"))])).unwrap();
        assert_eq!(
            (c.secret.as_str(), c.user.as_deref(), c.tenant.as_deref()),
            ("crk_y", Some("alice"), Some("acme"))
        );
        assert!(!c.user_must_be_unique);
        let bare = STANDARD.encode("alice:crk_y");
        let c = credential_from_headers(&headers(&[("authorization", &format!("basic {bare}"))])).unwrap();
        assert!(c.user_must_be_unique);
        for bad in ["Digest abc", "Bearer", "Basic !!!", "Basic Zm9v", "Token"] {
            assert_eq!(
                msg(credential_from_headers(&headers(&[("authorization", bad)]))),
                "Malformed Authorization header.",
                "{bad}"
            );
        }
    }

    #[test]
    fn json_errors_name_the_problem() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            workers: i64,
        }
        let syntax = parse_json::<T>(b"{nope")
            .unwrap_err()
            .into_error()
            .external_message();
        assert!(syntax.starts_with("Request body is not valid JSON: "), "{syntax}");
        let nul = parse_json::<T>(br#"{"workers": 1, "x": "a\u0000"}"#)
            .unwrap_err()
            .into_error()
            .to_string();
        assert!(nul.contains("NUL"), "{nul}");
        assert!(parse_json::<serde_json::Value>(br#"["a\\u0000", "\\\\u0000"]"#).is_ok());
        assert!(parse_json::<serde_json::Value>(br#"["\\\u0000"]"#).is_err());
        let shape = parse_json::<T>(br#"{"workers": "ten"}"#)
            .unwrap_err()
            .into_error()
            .external_message();
        assert!(shape.contains("workers"), "{shape}");
        assert!(matches!(
            parse_json::<T>(b"{\"workers\": 1} x"),
            Err(BodyError::Syntax(_))
        ));
    }
}
