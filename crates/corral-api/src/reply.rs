//! Success responders with the contract's content types (README 4, 9).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::ApiError;

const JSON: &str = "application/json; charset=utf-8";

/// A JSON body with `application/json; charset=utf-8`.
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        json_with(StatusCode::OK, &self.0)
    }
}

/// 201 with a JSON body.
pub struct Created<T>(pub T);

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        json_with(StatusCode::CREATED, &self.0)
    }
}

fn json_with<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))],
            bytes,
        )
            .into_response(),
        Err(e) => ApiError(corral_types::Error::internal(format!("serialize: {e}"))).into_response(),
    }
}

/// 200 with an empty body and no content type.
pub struct Empty;

impl IntoResponse for Empty {
    fn into_response(self) -> Response {
        StatusCode::OK.into_response()
    }
}

/// A `text/plain; charset=utf-8` body.
pub fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body.into(),
    )
        .into_response()
}

pub type ApiResult<T> = Result<T, ApiError>;
