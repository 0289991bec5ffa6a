use super::*;

const RID: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn body(format: ErrorFormat, status: u16, message: Option<&str>) -> String {
    let mut out = Vec::new();
    write_error_body(&mut out, format, status, message, RID);
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn json_body_matches_kong_template() {
    assert_eq!(
        body(
            ErrorFormat::Json,
            404,
            Some("no Route matched with those values")
        ),
        format!(
            "{{\n  \"message\":\"no Route matched with those values\",\n  \"request_id\":\"{RID}\"\n}}"
        )
    );
    let parsed: serde_json::Value =
        serde_json::from_str(&body(ErrorFormat::Json, 401, Some("say \"hi\" \\ now")))
            .expect("escaped JSON stays valid");
    assert_eq!(parsed["message"], "say \"hi\" \\ now");
    assert_eq!(parsed["request_id"], RID);
}

#[test]
fn html_body_matches_kong_template() {
    assert_eq!(
        body(ErrorFormat::Html, 504, None),
        format!(
            "<!doctype html>\n<html>\n  <head>\n    <meta charset=\"utf-8\">\n    <title>Error</title>\n  </head>\n  <body>\n    <h1>Error</h1>\n    <p>The upstream server is timing out.</p>\n    <p>request_id: {RID}</p>\n  </body>\n</html>\n"
        )
    );
    assert!(body(ErrorFormat::Html, 400, Some("<b>&")).contains("<p>&lt;b&gt;&amp;.</p>"));
}

#[test]
fn xml_body_matches_kong_template() {
    assert_eq!(
        body(ErrorFormat::Xml, 502, None),
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<error>\n  <message>An invalid response was received from the upstream server</message>\n  <requestid>{RID}</requestid>\n</error>\n"
        )
    );
}

#[test]
fn plain_body_matches_kong_template() {
    // spec/02-integration/05-proxy/13-error_handlers_spec.lua: "Method not allowed\nrequest_id: %x+\n"
    assert_eq!(
        body(ErrorFormat::Plain, 405, None),
        format!("Method not allowed\nrequest_id: {RID}\n")
    );
}

#[test]
fn grpc_and_exit_json_bodies() {
    assert_eq!(body(ErrorFormat::Grpc, 400, None), "");
    assert_eq!(ErrorFormat::Grpc.content_type(), None);
    assert_eq!(
        body(ErrorFormat::MessageJson, 400, Some("a/b")),
        r#"{"message":"a\/b"}"#
    );
}

#[test]
fn unknown_status_message_follows_kong_fallback() {
    assert_eq!(
        body(ErrorFormat::Plain, 499, None),
        format!("The upstream server responded with 499\nrequest_id: {RID}\n")
    );
    assert_eq!(
        default_message(494),
        Some("Request header or cookie too large")
    );
    assert_eq!(default_message(413), Some("Payload too large"));
    assert_eq!(default_message(599), None);
}

#[test]
fn content_types() {
    assert_eq!(
        ErrorFormat::Json.content_type(),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        ErrorFormat::Html.content_type(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        ErrorFormat::Xml.content_type(),
        Some("application/xml; charset=utf-8")
    );
    assert_eq!(
        ErrorFormat::Plain.content_type(),
        Some("text/plain; charset=utf-8")
    );
}

#[test]
fn config_values() {
    assert_eq!(
        ErrorFormat::from_config("text/plain"),
        Some(ErrorFormat::Plain)
    );
    assert_eq!(
        ErrorFormat::from_config("application/json"),
        Some(ErrorFormat::Json)
    );
    assert_eq!(
        ErrorFormat::from_config("text/html"),
        Some(ErrorFormat::Html)
    );
    assert_eq!(
        ErrorFormat::from_config("application/xml"),
        Some(ErrorFormat::Xml)
    );
    assert_eq!(ErrorFormat::from_config("text/csv"), None);
}

#[test]
fn handler_format_fallback_chain() {
    let plain = ErrorFormat::Plain;
    assert_eq!(handler_format(None, None, plain), ErrorFormat::Plain);
    assert_eq!(
        handler_format(None, None, ErrorFormat::Html),
        ErrorFormat::Html
    );
    assert_eq!(
        handler_format(Some(b"application/xml"), Some(b"text/html"), plain),
        ErrorFormat::Xml
    );
    assert_eq!(
        handler_format(None, Some(b"text/html; charset=utf-8"), plain),
        ErrorFormat::Html
    );
    // An Accept header that names nothing Kong knows gives JSON, not the default type.
    assert_eq!(
        handler_format(Some(b"image/png"), None, plain),
        ErrorFormat::Json
    );
    assert_eq!(
        handler_format(None, Some(b"application/grpc+proto"), plain),
        ErrorFormat::MessageJson
    );
}

#[test]
fn response_for_each_accept_type() {
    for (accept, ct) in [
        (None, "text/plain; charset=utf-8"),
        (
            Some(&b"application/json"[..]),
            "application/json; charset=utf-8",
        ),
        (Some(b"text/html"), "text/html; charset=utf-8"),
        (Some(b"application/xml"), "application/xml; charset=utf-8"),
        (Some(b"text/plain"), "text/plain; charset=utf-8"),
        (Some(b"*/*"), "application/json; charset=utf-8"),
    ] {
        let mut out = b"prefix".to_vec();
        write_error_response(
            &mut out,
            503,
            None,
            RID,
            accept,
            ErrorFormat::Plain,
            &[],
            None,
        );
        let resp = &out[6..];
        let text = String::from_utf8(resp.to_vec()).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head end");
        assert!(head.starts_with("HTTP/1.1 503 Service Temporarily Unavailable\r\n"));
        assert!(head.contains(&format!("\r\nContent-Type: {ct}")), "{head}");
        assert!(head.contains(&format!("\r\nContent-Length: {}", body.len())));
        assert!(body.contains("The upstream server is currently unavailable"));
        assert!(body.contains(RID));
        assert_eq!(&out[..6], b"prefix", "appends, never clobbers");
    }
}

#[test]
fn full_response_bytes() {
    let mut out = Vec::new();
    write_error_response(
        &mut out,
        404,
        Some("no Route matched with those values"),
        RID,
        Some(b"application/json"),
        ErrorFormat::Json,
        &[("X-Kong-Request-Id", RID), ("Connection", "keep-alive")],
        Some("kong/3.9.1"),
    );
    let body = format!(
        "{{\n  \"message\":\"no Route matched with those values\",\n  \"request_id\":\"{RID}\"\n}}"
    );
    let want = format!(
        "HTTP/1.1 404 Not Found\r\nServer: kong/3.9.1\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nX-Kong-Request-Id: {RID}\r\nConnection: keep-alive\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(String::from_utf8(out).expect("utf-8"), want);
}

#[test]
fn grpc_response_has_no_content_type() {
    let mut out = Vec::new();
    write_error_response_as(&mut out, 400, ErrorFormat::Grpc, None, RID, &[], None);
    assert_eq!(
        out,
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
    );
}

#[test]
fn reason_phrases_are_nginx_s() {
    assert_eq!(reason_phrase(200), "OK");
    assert_eq!(reason_phrase(405), "Not Allowed");
    assert_eq!(reason_phrase(413), "Request Entity Too Large");
    assert_eq!(reason_phrase(503), "Service Temporarily Unavailable");
    assert_eq!(reason_phrase(504), "Gateway Time-out");
    assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
    assert_eq!(reason_phrase(494), "");
    let mut out = Vec::new();
    write_error_response_as(&mut out, 494, ErrorFormat::Grpc, None, RID, &[], None);
    assert!(out.starts_with(b"HTTP/1.1 494 \r\n"));
}

#[test]
fn write_u64_digits() {
    for n in [0u64, 7, 10, 12345, u64::MAX] {
        let mut out = Vec::new();
        write_u64(&mut out, n);
        assert_eq!(out, n.to_string().as_bytes());
    }
}

fn custom_body(format: ErrorFormat, template: &str, message: Option<&str>) -> String {
    let template = ErrorTemplate::parse(template.as_bytes()).expect("valid template");
    let mut out = Vec::new();
    write_error_body_from(&mut out, format, Some(&template), 404, message, RID);
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn an_operators_template_takes_the_message_then_the_request_id() {
    assert_eq!(
        custom_body(
            ErrorFormat::Html,
            "<h1>Oops</h1><p>%s</p><small>%s</small> 100%%\n",
            Some("a <b> tag"),
        ),
        format!("<h1>Oops</h1><p>a &lt;b&gt; tag</p><small>{RID}</small> 100%\n")
    );
    let json = custom_body(
        ErrorFormat::Json,
        "{\"error\":{\"text\":\"%s\",\"trace\":\"%s\"}}",
        Some("say \"hi\""),
    );
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("still JSON");
    assert_eq!(parsed["error"]["text"], "say \"hi\"");
    assert_eq!(parsed["error"]["trace"], RID);
    assert_eq!(
        custom_body(ErrorFormat::Plain, "failed: %s", None),
        "failed: Not found",
        "Kong's message for the status; no request id without a second %s"
    );
    assert_eq!(custom_body(ErrorFormat::Xml, "<e/>", Some("x")), "<e/>");
}

#[test]
fn templates_kong_would_fail_to_render_are_refused() {
    for (bad, says) in [
        ("%s %s %s", "more than two %s"),
        ("%d errors", "holds '%d'"),
        ("ends with %", "holds '%'"),
        ("%5s", "holds '%5'"),
    ] {
        let e = ErrorTemplate::parse(bad.as_bytes()).expect_err(bad);
        assert!(e.contains(says), "{bad}: {e}");
    }
}
