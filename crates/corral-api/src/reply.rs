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

/// 200 with a JSON array written batch by batch as `batches` yields them, so a list of any
/// length is never held whole. The first batch is awaited before anything is sent: an error
/// there is an ordinary error answer, and a list that fits in one batch is one plain body with
/// its `Content-Length`, byte for byte what [`Json`] of the whole list gives. Longer lists go out
/// with chunked transfer encoding. An error after the status is sent cannot change it any more:
/// it is logged (with `request_id`) and the body ends abruptly, without the final chunk, so the
/// client sees a broken body instead of a short but well-formed list.
pub async fn json_array_stream<T, S>(batches: S, request_id: String) -> Result<Response, ApiError>
where
    T: Serialize + Send + 'static,
    S: futures_util::Stream<Item = Result<Vec<T>, corral_types::Error>> + Send + 'static,
{
    use futures_util::StreamExt;
    let mut batches = Box::pin(batches);
    let mut head = vec![b'['];
    let first = batches.next().await.transpose()?.unwrap_or_default();
    append_items(&mut head, &first, true)?;
    let Some(second) = batches.next().await else {
        head.push(b']');
        return Ok(([(header::CONTENT_TYPE, HeaderValue::from_static(JSON))], head).into_response());
    };
    let started = !first.is_empty();
    let rest = futures_util::stream::iter([second]).chain(batches);
    let body = futures_util::stream::once(async move { Ok::<_, std::io::Error>(head) }).chain(
        futures_util::stream::unfold(
            (Box::pin(rest), started, false),
            move |(mut rest, started, done)| {
                let request_id = request_id.clone();
                async move {
                    if done {
                        return None;
                    }
                    let failed = |e: corral_types::Error| {
                        tracing::error!(request_id = %request_id, error = ?e,
                            "a streamed list failed after its status was sent; the body is cut off");
                        std::io::Error::other("list stream failed")
                    };
                    match rest.next().await {
                        Some(Ok(items)) => {
                            let mut buf = Vec::with_capacity(items.len() * 160);
                            match append_items(&mut buf, &items, !started) {
                                Ok(()) => Some((Ok(buf), (rest, started || !items.is_empty(), false))),
                                Err(e) => Some((Err(failed(e.0)), (rest, started, true))),
                            }
                        }
                        Some(Err(e)) => Some((Err(failed(e)), (rest, started, true))),
                        None => Some((Ok(b"]".to_vec()), (rest, started, true))),
                    }
                }
            },
        ),
    );
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

/// Appends `items` to a JSON array being written, comma-separated as `serde_json` writes a list.
fn append_items<T: Serialize>(buf: &mut Vec<u8>, items: &[T], mut first: bool) -> Result<(), ApiError> {
    for item in items {
        if !first {
            buf.push(b',');
        }
        first = false;
        serde_json::to_writer(&mut *buf, item)
            .map_err(|e| ApiError(corral_types::Error::internal(format!("serialize: {e}"))))?;
    }
    Ok(())
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
