//! A stand-in for AWS Lambda's Invoke API (`POST /2015-03-31/functions/<name>/invocations`),
//! strict about the contract: every request's SigV4 signature is recomputed with the
//! `aws-sigv4` crate, and every API Gateway event is parsed with the `aws_lambda_events`
//! crate's published types. A request that fails either is refused (403 or 400) and noted in
//! [`Invoke::problems`], so a test that only looks at the client's answer still fails.
//!
//! The function name picks the behaviour (those of Kong's own Lambda test double):
//! - `echo`: answers `{"event": <payload>, "invocation": {...}}`;
//! - `apigw-v1` / `apigw-v2`: parses the payload as an API Gateway REST (1.0) or HTTP API (2.0)
//!   event and answers a proxy-integration response whose body is the event;
//! - `unhandled`: a function error (`X-Amz-Function-Error: Unhandled`);
//! - `bad-json`: a payload that is not JSON;
//! - `base64`: a proxy-integration response with a base64 body;
//! - `multi-value`: a proxy-integration response with `multiValueHeaders` (two cookies);
//! - `chunked`: the answer framed with `Transfer-Encoding: chunked`;
//! - `te-header`: a proxy-integration response whose headers try to set the framing
//!   (`Transfer-Encoding`, `Content-Length`);
//! - `no-response`: an empty payload;
//! - `sleep-<ms>`: waits that long, then echoes;
//! - `missing`: the API's 404 `ResourceNotFoundException`.
//!
//! `X-Amz-Invocation-Type: Event` answers 202 and `DryRun` 204, with no payload, as Lambda does;
//! `X-Amz-Log-Type: Tail` adds `X-Amz-Log-Result`.
//!
//! It also answers STS at `/` (where `aws_sts_endpoint_url` or `AWS_ENDPOINT_URL_STS` points
//! the SDK): `AssumeRole` and `AssumeRoleWithWebIdentity`, with temporary credentials it then
//! accepts for invocations.

use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayV2httpRequest};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4::SigningParams;
use serde_json::{Value, json};

use gangway_test_support::http1::{Req, read_request};

/// The access key id tests sign with.
pub const ACCESS_KEY: &str = "AKIDGANGWAYTEST";
/// Its secret.
pub const SECRET_KEY: &str = "gangway/test/secret/key";
/// The region tests use.
pub const REGION: &str = "us-east-1";
/// The temporary access key id STS AssumeRole hands out (accepted for invocations).
pub const ASSUMED_KEY: &str = "ASIAGANGWAYASSUMED";
/// Its secret.
const ASSUMED_SECRET: &str = "gangway/assumed/secret";
/// The OIDC token `AssumeRoleWithWebIdentity` accepts (an EKS service account's, say).
pub const WEB_IDENTITY_TOKEN: &str = "gangway-web-identity-token";

/// One invocation as the double received it.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The function name from the path (percent-decoded).
    pub function: String,
    /// `?Qualifier=`.
    pub qualifier: Option<String>,
    /// `X-Amz-Invocation-Type` (absent means RequestResponse).
    pub invocation_type: Option<String>,
    /// The payload, parsed as JSON (`null` when it was not JSON).
    pub payload: Value,
    /// The access key id the request was signed with.
    pub access_key: String,
    /// The request came through a proxy: its target was absolute (`http://host/...`).
    pub via_proxy: bool,
}

/// One STS AssumeRole call as the double received it.
#[derive(Debug, Clone)]
pub struct AssumedRole {
    /// `RoleArn`.
    pub role_arn: String,
    /// `RoleSessionName`.
    pub session_name: String,
    /// The access key id the call was signed with (empty for the unsigned
    /// `AssumeRoleWithWebIdentity`).
    pub access_key: String,
    /// The call came through a proxy: its target was absolute (`http://host/`).
    pub via_proxy: bool,
}

/// What the double has seen.
#[derive(Default)]
struct Seen {
    invocations: Mutex<Vec<Invocation>>,
    roles: Mutex<Vec<AssumedRole>>,
    problems: Mutex<Vec<String>>,
}

/// The running double (which also answers STS AssumeRole at `/`); stops accepting on drop.
pub struct Invoke {
    /// Its address.
    pub addr: SocketAddr,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
}

/// The secrets the double accepts, by access key id.
type Keys = Arc<Vec<(String, String)>>;

impl Invoke {
    /// Starts on a free loopback port, accepting [`ACCESS_KEY`] and `more` keys.
    pub fn start(more: &[(&str, &str)]) -> Invoke {
        Invoke::start_on(0, more)
    }

    /// Starts on loopback port `port` (0: a free one), accepting [`ACCESS_KEY`] and `more`
    /// keys.
    pub fn start_on(port: u16, more: &[(&str, &str)]) -> Invoke {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind invoke double");
        let addr = listener.local_addr().expect("addr");
        let mut keys = vec![
            (ACCESS_KEY.to_owned(), SECRET_KEY.to_owned()),
            (ASSUMED_KEY.to_owned(), ASSUMED_SECRET.to_owned()),
        ];
        keys.extend(more.iter().map(|(k, s)| ((*k).to_owned(), (*s).to_owned())));
        let keys: Keys = Arc::new(keys);
        let seen = Arc::new(Seen::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (w, s) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (w, k) = (w.clone(), keys.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &k, &w);
                });
            }
        });
        Invoke { addr, seen, stop }
    }

    /// Invocations so far.
    pub fn invocations(&self) -> Vec<Invocation> {
        self.seen.invocations.lock().expect("lock").clone()
    }

    /// STS AssumeRole calls so far.
    pub fn assumed_roles(&self) -> Vec<AssumedRole> {
        self.seen.roles.lock().expect("lock").clone()
    }

    /// Contract violations so far (bad signatures, events that do not parse).
    pub fn problems(&self) -> Vec<String> {
        self.seen.problems.lock().expect("lock").clone()
    }

    /// Panics when any request broke the contract.
    pub fn assert_clean(&self) {
        let problems = self.problems();
        assert!(
            problems.is_empty(),
            "the Invoke API double refused: {problems:#?}"
        );
    }
}

impl Drop for Invoke {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// An answer to write.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunked: bool,
}

impl Answer {
    fn json(status: u16, body: &Value) -> Answer {
        Answer {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::to_vec(body).expect("JSON"),
            chunked: false,
        }
    }
}

fn serve(stream: TcpStream, keys: &Keys, seen: &Seen) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    while let Some(req) = read_request(&mut reader)? {
        let handled = if origin_form(&req.target) == "/" {
            assume_role(&req, keys, seen)
        } else {
            handle(&req, keys, &seen.invocations)
        };
        let answer = match handled {
            Ok(answer) => answer,
            Err((status, problem)) => {
                seen.problems.lock().expect("lock").push(problem.clone());
                Answer::json(status, &json!({ "message": problem }))
            }
        };
        write_answer(&mut out, answer)?;
    }
    Ok(())
}

fn write_answer(out: &mut TcpStream, answer: Answer) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} X\r\n", answer.status);
    head.push_str("x-amzn-RequestId: 6b4b7ff1-0000-4000-8000-gangwaytest0\r\n");
    for (n, v) in &answer.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if answer.chunked {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
        out.write_all(head.as_bytes())?;
        for piece in answer.body.chunks(7) {
            out.write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
            out.write_all(piece)?;
            out.write_all(b"\r\n")?;
        }
        out.write_all(b"0\r\n\r\n")
    } else {
        head.push_str(&format!("Content-Length: {}\r\n\r\n", answer.body.len()));
        out.write_all(head.as_bytes())?;
        out.write_all(&answer.body)
    }
}

/// Serves one request; `Err` is a contract violation with the status to refuse it with.
fn handle(
    req: &Req,
    keys: &Keys,
    invocations: &Mutex<Vec<Invocation>>,
) -> Result<Answer, (u16, String)> {
    let access_key = verify_signature(req, keys, "lambda").map_err(|p| (403, p))?;
    let target = origin_form(&req.target);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let function = path
        .strip_prefix("/2015-03-31/functions/")
        .and_then(|rest| rest.strip_suffix("/invocations"))
        .ok_or_else(|| (404, format!("not an Invoke path: {} {}", req.method, path)))?;
    if req.method != "POST" {
        return Err((405, format!("Invoke takes POST, not {}", req.method)));
    }
    let function = percent_decode(function);
    let qualifier = query
        .split('&')
        .find_map(|p| p.strip_prefix("Qualifier="))
        .map(percent_decode);
    let invocation_type = req.header("x-amz-invocation-type").map(str::to_owned);
    let payload: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    invocations.lock().expect("lock").push(Invocation {
        function: function.clone(),
        qualifier: qualifier.clone(),
        invocation_type: invocation_type.clone(),
        payload: payload.clone(),
        access_key,
        via_proxy: target != req.target,
    });
    let mut answer = match invocation_type.as_deref() {
        Some("Event") => Answer {
            status: 202,
            headers: Vec::new(),
            body: Vec::new(),
            chunked: false,
        },
        Some("DryRun") => Answer {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
            chunked: false,
        },
        _ => run(&function, &req.body, &payload)?,
    };
    answer
        .headers
        .push(("X-Amz-Executed-Version".into(), "$LATEST".into()));
    if req.header("x-amz-log-type") == Some("Tail") {
        answer
            .headers
            .push(("X-Amz-Log-Result".into(), "bG9nIGxpbmU=".into()));
    }
    Ok(answer)
}

/// STS at `/`: `AssumeRole` (a form POST signed for `sts`) or `AssumeRoleWithWebIdentity`
/// (unsigned, carrying [`WEB_IDENTITY_TOKEN`]); either answers temporary credentials
/// ([`ASSUMED_KEY`]) for an hour.
fn assume_role(req: &Req, keys: &Keys, seen: &Seen) -> Result<Answer, (u16, String)> {
    let form: Vec<(String, String)> = String::from_utf8_lossy(&req.body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(&v.replace('+', " "))))
        .collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| (400, format!("STS call without {name}")))
    };
    let action = field("Action")?;
    let access_key = match action.as_str() {
        "AssumeRole" => verify_signature(req, keys, "sts").map_err(|p| (403, p))?,
        "AssumeRoleWithWebIdentity" => {
            let token = field("WebIdentityToken")?;
            if token.trim() != WEB_IDENTITY_TOKEN {
                return Err((403, format!("unknown web identity token {token:?}")));
            }
            String::new()
        }
        other => return Err((400, format!("not an STS action the double knows: {other}"))),
    };
    let role_arn = field("RoleArn")?;
    let session_name = field("RoleSessionName")?;
    seen.roles.lock().expect("lock").push(AssumedRole {
        role_arn: role_arn.clone(),
        session_name: session_name.clone(),
        access_key,
        via_proxy: origin_form(&req.target) != req.target,
    });
    let expiration = rfc3339(SystemTime::now() + Duration::from_secs(3600));
    let xml = format!(
        r#"<{action}Response xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><{action}Result><Credentials><AccessKeyId>{ASSUMED_KEY}</AccessKeyId><SecretAccessKey>{ASSUMED_SECRET}</SecretAccessKey><SessionToken>gangway-session-token</SessionToken><Expiration>{expiration}</Expiration></Credentials><AssumedRoleUser><Arn>{role_arn}/{session_name}</Arn><AssumedRoleId>AROAGANGWAY:{session_name}</AssumedRoleId></AssumedRoleUser></{action}Result><ResponseMetadata><RequestId>4a8b3f2c-0000-4000-8000-000000000001</RequestId></ResponseMetadata></{action}Response>"#
    );
    Ok(Answer {
        status: 200,
        headers: vec![("Content-Type".into(), "text/xml".into())],
        body: xml.into_bytes(),
        chunked: false,
    })
}

/// A time as `2026-12-03T16:34:53Z`.
pub fn rfc3339(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // The civil date of a day count (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// What the function answers.
fn run(function: &str, raw: &[u8], payload: &Value) -> Result<Answer, (u16, String)> {
    let proxy = |body: Value| Answer::json(200, &body);
    Ok(match function {
        "apigw-v1" => {
            let event: ApiGatewayProxyRequest = serde_json::from_slice(raw)
                .map_err(|e| (400, format!("not an API Gateway REST event: {e}")))?;
            let _ = event;
            proxy(json!({
                "statusCode": 200,
                "headers": {"Content-Type": "application/json"},
                "body": serde_json::to_string(payload).expect("JSON"),
            }))
        }
        "apigw-v2" => {
            let event: ApiGatewayV2httpRequest = serde_json::from_slice(raw)
                .map_err(|e| (400, format!("not an API Gateway HTTP API event: {e}")))?;
            let _ = event;
            proxy(json!({
                "statusCode": 200,
                "headers": {"Content-Type": "application/json"},
                "cookies": ["v2a=1", "v2b=2"],
                "body": serde_json::to_string(payload).expect("JSON"),
            }))
        }
        "unhandled" => {
            let mut a = Answer::json(
                200,
                &json!({"errorMessage": "boom", "errorType": "Error", "stackTrace": []}),
            );
            a.headers
                .push(("X-Amz-Function-Error".into(), "Unhandled".into()));
            a
        }
        "bad-json" => Answer {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: b"{not json".to_vec(),
            chunked: false,
        },
        "base64" => proxy(json!({
            "statusCode": 201,
            "headers": {"Content-Type": "text/plain", "X-From-Function": "yes"},
            "body": "aGVsbG8gZnJvbSBiYXNlNjQ=",
            "isBase64Encoded": true,
        })),
        "multi-value" => proxy(json!({
            "statusCode": "200",
            "headers": {"Content-Type": "text/plain", "X-Single": "one"},
            "multiValueHeaders": {"Set-Cookie": ["a=1; Path=/", "b=2; Path=/"]},
            "body": "cookies",
        })),
        // A function cannot frame the proxy's answer (Kong's
        // functionWithTransferEncodingHeader).
        "te-header" => proxy(json!({
            "statusCode": 200,
            "headers": {"Transfer-Encoding": "chunked", "transfer-encoding": "chunked", "Content-Length": "999"},
            "body": "framed by the proxy",
        })),
        // An empty payload (Kong's functionWithNoResponse).
        "no-response" => Answer {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
            chunked: false,
        },
        "chunked" => {
            let mut a = Answer::json(200, &json!({"framed": "chunked", "event": payload}));
            a.chunked = true;
            a
        }
        "missing" => {
            let mut a = Answer::json(
                404,
                &json!({"Message": "Function not found: arn:aws:lambda:us-east-1:123456789012:function:missing", "Type": "User"}),
            );
            a.headers.push((
                "x-amzn-ErrorType".into(),
                "ResourceNotFoundException".into(),
            ));
            a
        }
        other => {
            if let Some(ms) = other
                .strip_prefix("sleep-")
                .and_then(|ms| ms.parse::<u64>().ok())
            {
                std::thread::sleep(Duration::from_millis(ms));
            }
            Answer::json(200, &json!({"event": payload, "function": other}))
        }
    })
}

/// Recomputes the request's SigV4 signature from its method, target, signed headers and
/// body; returns the access key id it was signed with.
fn verify_signature(req: &Req, keys: &Keys, service_name: &str) -> Result<String, String> {
    let auth = req
        .header("authorization")
        .ok_or("no Authorization header")?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| format!("not a SigV4 Authorization: {auth}"))?;
    let field = |name: &str| {
        rest.split(", ")
            .find_map(|f| f.strip_prefix(name))
            .map(str::to_owned)
            .ok_or_else(|| format!("Authorization without {name}: {auth}"))
    };
    let credential = field("Credential=")?;
    let signed_headers = field("SignedHeaders=")?;
    let signature = field("Signature=")?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key, _date, region, service, "aws4_request"] = parts[..] else {
        return Err(format!("bad credential scope: {credential}"));
    };
    if region != REGION || service != service_name {
        return Err(format!(
            "signed for {region}/{service}, not {REGION}/{service_name}"
        ));
    }
    let secret = keys
        .iter()
        .find(|(k, _)| k == access_key)
        .map(|(_, s)| s.clone())
        .ok_or_else(|| format!("unknown access key {access_key}"))?;
    let amz_date = req.header("x-amz-date").ok_or("no X-Amz-Date")?;
    let time = parse_amz_date(amz_date).ok_or_else(|| format!("bad X-Amz-Date {amz_date}"))?;
    let token = req.header("x-amz-security-token").map(str::to_owned);
    let identity = Credentials::new(access_key, secret, token, None, "invoke-double").into();
    let params = SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name(service_name)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let signed: Vec<&str> = signed_headers.split(';').collect();
    let headers: Vec<(&str, &str)> = req
        .headers
        .iter()
        .filter(|(n, _)| signed.iter().any(|s| n.eq_ignore_ascii_case(s)))
        .filter(|(n, _)| !n.eq_ignore_ascii_case("x-amz-security-token"))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let uri = format!(
        "http://{}{}",
        req.header("host").unwrap_or("localhost"),
        origin_form(&req.target)
    );
    let signable = SignableRequest::new(
        &req.method,
        uri,
        headers.into_iter(),
        SignableBody::Bytes(&req.body),
    )
    .map_err(|e| e.to_string())?;
    let expected = sign(signable, &params).map_err(|e| e.to_string())?;
    if expected.signature() != signature {
        return Err(format!(
            "signature mismatch for {} {} (signed headers {signed_headers})",
            req.method, req.target
        ));
    }
    Ok(access_key.to_owned())
}

/// A request target without the scheme and authority a client sends to a proxy.
fn origin_form(target: &str) -> &str {
    match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    }
}

/// `20261203T163453Z` as a time.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    if s.len() != 16 || !s.ends_with('Z') || s.as_bytes()[8] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}
