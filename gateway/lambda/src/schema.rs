//! Kong's `kong/plugins/aws-lambda/schema.lua`, plus Kong Enterprise's
//! `awsgateway_compatible_payload_version`.

use serde_json::{Map, Value, json};

use gangway_config::schema::{EntityCheck, Field, Schema};

/// The config schema.
pub fn schema() -> Schema {
    let flag =
        |default: bool, text: &'static str| Field::boolean().default(json!(default)).describe(text);
    Schema::new(
        super::NAME,
        Field::record(vec![
            (
                "timeout",
                Field::number()
                    .required()
                    .default(json!(60000))
                    .describe("An optional timeout in milliseconds when invoking the function."),
            ),
            (
                "keepalive",
                Field::number().required().default(json!(60000)).describe(
                    "An optional value in milliseconds that defines how long an idle \
                     connection lives before being closed.",
                ),
            ),
            (
                "aws_key",
                Field::string()
                    .referenceable()
                    .encrypted()
                    .describe("The AWS key credential to be used when invoking the function."),
            ),
            (
                "aws_secret",
                Field::string()
                    .referenceable()
                    .encrypted()
                    .describe("The AWS secret credential to be used when invoking the function."),
            ),
            (
                "aws_assume_role_arn",
                Field::string()
                    .referenceable()
                    .encrypted()
                    .describe("The target AWS IAM role ARN used to invoke the Lambda function."),
            ),
            (
                "aws_role_session_name",
                Field::string()
                    .default(json!("kong"))
                    .describe("The identifier of the assumed role session."),
            ),
            ("aws_sts_endpoint_url", url()),
            ("aws_region", host()),
            (
                "function_name",
                Field::string().describe(
                    "The AWS Lambda function to invoke. Both function name and function ARN \
                     (including partial) are supported.",
                ),
            ),
            (
                "qualifier",
                Field::string().describe("The qualifier to use when invoking the function."),
            ),
            (
                "invocation_type",
                Field::string()
                    .required()
                    .default(json!("RequestResponse"))
                    .one_of(&["RequestResponse", "Event", "DryRun"])
                    .describe(
                        "The InvocationType to use when invoking the function. Available \
                         types are RequestResponse, Event, DryRun.",
                    ),
            ),
            (
                "log_type",
                Field::string()
                    .required()
                    .default(json!("Tail"))
                    .one_of(&["Tail", "None"])
                    .describe(
                        "The LogType to use when invoking the function. By default, None and \
                         Tail are supported.",
                    ),
            ),
            ("host", host()),
            (
                "port",
                Field::integer()
                    .default(json!(443))
                    .between(0, 65_535)
                    .describe(
                        "An integer representing a port number between 0 and 65535, inclusive.",
                    ),
            ),
            ("disable_https", Field::boolean().default(json!(false))),
            (
                "unhandled_status",
                Field::integer().between(100, 999).describe(
                    "The response status code to use (instead of the default 200, 202, or 204) \
                     in the case of an Unhandled Function Error.",
                ),
            ),
            (
                "forward_request_method",
                flag(
                    false,
                    "An optional value that defines whether the original HTTP request method \
                     verb is sent in the request_method field of the JSON-encoded request.",
                ),
            ),
            (
                "forward_request_uri",
                flag(
                    false,
                    "An optional value that defines whether the original HTTP request URI is \
                     sent in the request_uri field of the JSON-encoded request.",
                ),
            ),
            (
                "forward_request_headers",
                flag(
                    false,
                    "An optional value that defines whether the original HTTP request headers \
                     are sent as a map in the request_headers field of the JSON-encoded request.",
                ),
            ),
            (
                "forward_request_body",
                flag(
                    false,
                    "An optional value that defines whether the request body is sent in the \
                     request_body field of the JSON-encoded request. If the body arguments can \
                     be parsed, they are sent in the separate request_body_args field of the \
                     request. ",
                ),
            ),
            (
                "is_proxy_integration",
                flag(
                    false,
                    "An optional value that defines whether the response format to receive from \
                     the Lambda to this format.",
                ),
            ),
            (
                "awsgateway_compatible",
                flag(
                    false,
                    "An optional value that defines whether the plugin should wrap requests \
                     into the Amazon API gateway.",
                ),
            ),
            ("proxy_url", url()),
            (
                "skip_large_bodies",
                flag(
                    true,
                    "An optional value that defines whether Kong should send large bodies that \
                     are buffered to disk",
                ),
            ),
            (
                "base64_encode_body",
                flag(
                    true,
                    "An optional value that Base64-encodes the request body.",
                ),
            ),
            (
                "aws_imds_protocol_version",
                Field::string()
                    .required()
                    .default(json!("v1"))
                    .one_of(&["v1", "v2"])
                    .describe(
                        "Identifier to select the IMDS protocol version to use: `v1` or `v2`. \
                         gangway always uses IMDSv2.",
                    ),
            ),
            (
                "empty_arrays_mode",
                Field::string()
                    .required()
                    .default(json!("legacy"))
                    .one_of(&["legacy", "correct"])
                    .describe(
                        "An optional value that defines whether Kong should send empty arrays \
                         (returned by Lambda function) as `[]` arrays or `{}` objects in JSON \
                         responses. The value `legacy` means Kong will send empty arrays as `{}` \
                         objects in response",
                    ),
            ),
            (
                "awsgateway_compatible_payload_version",
                Field::string()
                    .required()
                    .default(json!("1.0"))
                    .one_of(&["1.0", "2.0"])
                    .describe(
                        "The API Gateway event format with awsgateway_compatible: 1.0 (REST API \
                         proxy) or 2.0 (HTTP API).",
                    ),
            ),
        ]),
    )
    .with_check(EntityCheck::MutuallyRequired(vec![
        "config.aws_key",
        "config.aws_secret",
    ]))
    .with_check(EntityCheck::Custom {
        fields: vec!["config.proxy_url"],
        check: proxy_url_is_http,
    })
}

/// Kong's custom check: a proxy is reached over plain http.
fn proxy_url_is_http(entity: &Map<String, Value>) -> Result<(), (Option<String>, String)> {
    let url = entity
        .get("config")
        .and_then(|c| c.get("proxy_url"))
        .and_then(Value::as_str);
    let scheme = url.and_then(|u| u.split_once("://")).map(|(s, _)| s);
    match scheme {
        Some(s) if s != "http" => Err((None, "proxy_url scheme must be http".into())),
        _ => Ok(()),
    }
}

/// Kong's `typedefs.url`.
fn url() -> Field {
    Field::string().custom_validator(valid_url).describe(
        "A string representing a URL, such as https://example.com/path/to/resource?q=search.",
    )
}

/// Kong's `typedefs.host`.
fn host() -> Field {
    Field::string()
        .custom_validator(valid_host)
        .describe("A string representing a host name, such as example.com.")
}

fn valid_url(v: &Value) -> Result<(), String> {
    let text = v.as_str().unwrap_or_default();
    match text.split_once("://") {
        Some((scheme, rest)) if !scheme.is_empty() && !rest.is_empty() => Ok(()),
        Some(_) => Err("missing host in url".into()),
        None => Err("missing scheme in url".into()),
    }
}

fn valid_host(v: &Value) -> Result<(), String> {
    let text = v.as_str().unwrap_or_default();
    let ok = !text.is_empty()
        && text.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("invalid hostname: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use gangway_config::ConfigErrors;

    fn problems(config: serde_json::Value) -> String {
        let mut errors = ConfigErrors::default();
        let filled = super::schema().validate(Some(&config), "config", &mut errors);
        if errors.is_empty() {
            assert_eq!(filled["timeout"], 60000, "defaults filled");
            assert_eq!(filled["awsgateway_compatible_payload_version"], "1.0");
        }
        errors.to_string()
    }

    #[test]
    fn kongs_checks_hold_proxy_urls_are_http_and_keys_come_in_pairs() {
        assert_eq!(problems(json!({"function_name": "f"})), "");
        assert!(
            problems(json!({"proxy_url": "https://proxy:3128"}))
                .contains("proxy_url scheme must be http")
        );
        assert_eq!(problems(json!({"proxy_url": "http://proxy:3128"})), "");
        let unpaired = problems(json!({"aws_key": "AKID"}));
        assert!(unpaired.contains("aws_secret"), "{unpaired}");
        assert!(problems(json!({"invocation_type": "Later"})).contains("invocation_type"));
        assert!(
            problems(json!({"awsgateway_compatible_payload_version": "3.0"}))
                .contains("awsgateway_compatible_payload_version")
        );
    }
}
