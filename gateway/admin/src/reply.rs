//! Answers in Kong's shapes: JSON with Kong's content type, the DAO error object, and the
//! transport-level errors (`kong/api/api_helpers.lua`).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use gangway_config::dao::DaoError;
use serde_json::{Value, json};

/// Kong's JSON content type.
const JSON: &str = "application/json; charset=utf-8";

/// `body` as JSON with `status`.
pub fn json(status: u16, body: &Value) -> Response {
    json_text(status, &body.to_string())
}

/// A body that is JSON text already, with `status`.
pub fn json_text(status: u16, body: &str) -> Response {
    let mut response = Response::new(Body::from(body.to_owned()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    response
}

/// `{"message": <message>}` with `status`.
pub fn message(status: u16, text: &str) -> Response {
    json(status, &json!({ "message": text }))
}

/// An empty answer with `status` (204, 415).
pub fn empty(status: u16) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::NO_CONTENT);
    response
}

/// 404 `{"message":"Not found"}`: unknown paths and missing entities.
pub fn not_found() -> Response {
    message(404, "Not found")
}

/// 405 `{"message":"Method not allowed"}`.
pub fn method_not_allowed() -> Response {
    message(405, "Method not allowed")
}

/// 500 `{"message":"An unexpected error occurred"}`; the cause goes to the log.
pub fn unexpected(cause: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %cause, "admin API: unexpected error");
    message(500, "An unexpected error occurred")
}

/// A DAO error as Kong's endpoints answer it: its status, and its object as the body (a
/// database error is a 500 with the generic message; an unreachable database a 503 that
/// says so).
pub fn dao_error(error: &DaoError) -> Response {
    match error.status() {
        500 => unexpected(error),
        503 => message(503, &error.message),
        status => json(status, &error.to_json()),
    }
}
