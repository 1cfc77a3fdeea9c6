//! The one place where [`corral_types::Error`] becomes an HTTP response (README 4, 5).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use corral_types::Error;
use corral_types::error::reason_phrase;
use corral_types::views::ErrorBody;

/// An error on its way out. Handlers return `Result<_, ApiError>` and use `?` on core calls.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

/// The JSON error body, with the content type every error carries.
pub fn error_response(status: StatusCode, message: String) -> Response {
    let body = ErrorBody {
        code: status.as_u16(),
        error: reason_phrase(status.as_u16()).to_string(),
        message,
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let mut resp = (status, json).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// The contract's error body with the oldest revision still available.
fn gone_response(status: StatusCode, message: String, oldest: i64) -> Response {
    let body = serde_json::json!({
        "code": status.as_u16(),
        "error": reason_phrase(status.as_u16()),
        "message": message,
        "oldest": oldest,
    });
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let err = self.0;
        let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if let corral_types::Error::Internal { detail } = &err {
            // The request id is on the enclosing span; the detail goes to the log only.
            tracing::error!(%detail, "internal error");
        }
        let mut resp = match &err {
            // The change feed's 410 also names where a client can resume (docs/events.md).
            Error::Gone { oldest, .. } => gone_response(status, err.external_message(), *oldest),
            _ => error_response(status, err.external_message()),
        };
        match &err {
            Error::Unauthorized(_) => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"corral\""),
                );
            }
            Error::MethodNotAllowed { allow, .. } => {
                if let Ok(v) = HeaderValue::from_str(allow) {
                    resp.headers_mut().insert(header::ALLOW, v);
                }
            }
            // The rest of a stalled body is never read: the connection cannot carry another
            // request.
            Error::RequestTimeout(_) => {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        resp
    }
}

impl ApiError {
    /// For layers that must build a response without a request (the panic catcher).
    pub fn into_response_static(self) -> Response<axum::body::Body> {
        self.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn render(err: Error) -> (Response, serde_json::Value) {
        let resp = ApiError(err).into_response();
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let json = serde_json::from_slice(&bytes).unwrap();
        (Response::from_parts(parts, axum::body::Body::empty()), json)
    }

    #[tokio::test]
    async fn errors_render_the_contract_body() {
        let (resp, json) = render(Error::not_found("Cluster 'prod' does not exist.")).await;
        assert_eq!(resp.status(), 404);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
        assert_eq!(
            json,
            serde_json::json!({"code": 404, "error": "Not Found", "message": "Cluster 'prod' does not exist."})
        );
    }

    #[tokio::test]
    async fn unauthorized_carries_the_challenge_and_internal_hides_detail() {
        let (resp, _) = render(Error::Unauthorized("Authentication required.".into())).await;
        assert_eq!(
            resp.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"corral\""
        );
        let (resp, json) = render(Error::internal("secret detail")).await;
        assert_eq!(resp.status(), 500);
        assert_eq!(json["message"], "Internal error.");
    }
}
