//! A function on AWS's own Rust runtime (`lambda_runtime`), as a team moving from API
//! Gateway would have written it: it takes API Gateway events (REST 1.0 or HTTP API 2.0) in
//! `aws_lambda_events`' types and answers with their response types. The integration suite
//! runs it under `cargo lambda watch` and invokes it through gangway, which proves gangway's
//! events and its reading of the answers against AWS's runtime contract.
//!
//! It answers with what it understood: the path, the path and query parameters, the request
//! id, the client address, the decoded body and the authorizer's consumer.

use aws_lambda_events::apigw::{
    ApiGatewayProxyRequest, ApiGatewayProxyResponse, ApiGatewayV2httpRequest,
    ApiGatewayV2httpResponse,
};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(handle)).await
}

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    if payload.get("version").and_then(Value::as_str) == Some("2.0") {
        let request: ApiGatewayV2httpRequest = serde_json::from_value(payload)?;
        let body = json!({
            "version": "2.0",
            "routeKey": request.route_key,
            "path": request.raw_path,
            "pathParameters": request.path_parameters,
            "query": request.raw_query_string,
            "cookies": request.cookies,
            "requestId": request.request_context.request_id,
            "sourceIp": request.request_context.http.source_ip,
            "body": decoded(request.body, request.is_base64_encoded),
            "runtimeRequestId": context.request_id,
        });
        let mut response = ApiGatewayV2httpResponse::default();
        response.status_code = 200;
        response.headers = json_headers();
        response.body = Some(Body::Text(body.to_string()));
        response.cookies = vec!["runtime=rust".into()];
        return Ok(serde_json::to_value(response)?);
    }
    let request: ApiGatewayProxyRequest = serde_json::from_value(payload)?;
    let consumer = request
        .request_context
        .authorizer
        .fields
        .get("consumer_username")
        .cloned();
    let body = json!({
        "version": "1.0",
        "resource": request.resource,
        "path": request.path,
        "method": request.http_method.as_str(),
        "pathParameters": request.path_parameters,
        "query": request.query_string_parameters.iter().collect::<Vec<_>>(),
        "requestId": request.request_context.request_id,
        "sourceIp": request.request_context.identity.source_ip,
        "consumer": consumer,
        "body": decoded(request.body, request.is_base64_encoded),
        "runtimeRequestId": context.request_id,
    });
    let mut multi = HeaderMap::new();
    multi.append("set-cookie", HeaderValue::from_static("runtime=rust"));
    multi.append("set-cookie", HeaderValue::from_static("events=v1"));
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = 200;
    response.headers = json_headers();
    response.multi_value_headers = multi;
    response.body = Some(Body::Text(body.to_string()));
    Ok(serde_json::to_value(response)?)
}

fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers
}

/// The request body as text, base64-decoded when the event says so.
fn decoded(body: Option<String>, base64: bool) -> Option<String> {
    let body = body?;
    if !base64 {
        return Some(body);
    }
    let bytes = BASE64.decode(body).ok()?;
    String::from_utf8(bytes).ok()
}
