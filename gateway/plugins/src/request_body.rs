//! Request bodies as plugins read them: form-urlencoded, JSON or multipart arguments (Kong's
//! `kong.request.get_body`), and re-encoding after a change.

pub mod multipart;

use std::borrow::Cow;

use serde_json::{Map, Value};

pub use multipart::Multipart;

/// The parsed arguments of a request body.
#[derive(Debug, Default)]
pub enum BodyArgs {
    /// No body, or a media type plugins do not parse.
    #[default]
    None,
    /// `application/x-www-form-urlencoded` pairs, in order.
    Form(Vec<(String, String)>),
    /// A JSON object.
    Json(Map<String, Value>),
    /// `multipart/form-data` parts.
    Multipart(Multipart),
}

/// The body does not parse as its Content-Type says (Kong: 400 `Cannot process request
/// body`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnparsableBody;

/// Which parser a Content-Type selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// `application/x-www-form-urlencoded`.
    Form,
    /// `application/json` or `application/*+json`.
    Json,
    /// `multipart/form-data`.
    Multipart,
    /// Anything else.
    Other,
}

/// Classifies a Content-Type value (parameters ignored, case-insensitive).
pub fn media_type(content_type: Option<&[u8]>) -> MediaType {
    let Some(ct) = content_type else {
        return MediaType::Other;
    };
    let essence = ct.split(|&b| b == b';').next().unwrap_or_default();
    let essence = String::from_utf8_lossy(essence).trim().to_ascii_lowercase();
    if essence == "application/x-www-form-urlencoded" {
        MediaType::Form
    } else if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        MediaType::Json
    } else if essence == "multipart/form-data" {
        MediaType::Multipart
    } else {
        MediaType::Other
    }
}

/// Parses `body` by its Content-Type. An empty body has no arguments; a JSON body that is
/// not an object (or not JSON) is an error, as in Kong. A form's arguments are read as
/// `ngx.req.get_post_args` reads them: the first `max_form_args` pieces
/// (`lua_max_post_args`), empty names left out, a name without `=` as an empty value.
pub fn parse(
    content_type: Option<&[u8]>,
    body: &[u8],
    max_form_args: u16,
) -> Result<BodyArgs, UnparsableBody> {
    if body.is_empty() {
        return Ok(BodyArgs::None);
    }
    match media_type(content_type) {
        MediaType::Form => Ok(BodyArgs::Form(
            gangway_pipeline::edits::uri_args(body, max_form_args)
                .map(|(k, v)| (k.into_owned(), v.map(Cow::into_owned).unwrap_or_default()))
                .collect(),
        )),
        MediaType::Json => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(BodyArgs::Json(map)),
            _ => Err(UnparsableBody),
        },
        MediaType::Multipart => {
            let boundary = content_type
                .and_then(multipart::boundary)
                .ok_or(UnparsableBody)?;
            multipart::parse(&boundary, body).map(BodyArgs::Multipart)
        }
        MediaType::Other => Ok(BodyArgs::None),
    }
}

/// Encodes form pairs.
pub fn encode_form(pairs: &[(String, String)]) -> Vec<u8> {
    let mut enc = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        enc.append_pair(k, v);
    }
    enc.finish().into_bytes()
}

/// Kong's `append_value` on a decoded JSON object: a string becomes `[old, new]`, an array
/// grows, anything else (absent included) becomes `[new]`.
pub fn append_json(map: &mut Map<String, Value>, name: &str, v: Value) {
    match map.get_mut(name) {
        Some(Value::Array(items)) => items.push(v),
        Some(old @ Value::String(_)) => {
            let prev = std::mem::take(old);
            *old = Value::Array(vec![prev, v]);
        }
        Some(other) => *other = Value::Array(vec![v]),
        None => {
            map.insert(name.to_owned(), Value::Array(vec![v]));
        }
    }
}

impl BodyArgs {
    /// The argument `name`: a string, or an array when a form repeats it.
    pub fn get(&self, name: &str) -> Option<Value> {
        match self {
            BodyArgs::None => None,
            BodyArgs::Form(pairs) => {
                let mut values = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
                let first = values.next()?;
                match values.next() {
                    None => Some(Value::String(first.clone())),
                    Some(second) => {
                        let mut all =
                            vec![Value::String(first.clone()), Value::String(second.clone())];
                        all.extend(values.map(|v| Value::String(v.clone())));
                        Some(Value::Array(all))
                    }
                }
            }
            BodyArgs::Json(map) => map.get(name).cloned(),
            BodyArgs::Multipart(m) => {
                let mut values: Vec<Value> = m
                    .values(name)
                    .map(|v| Value::String(String::from_utf8_lossy(v).into_owned()))
                    .collect();
                match values.len() {
                    0 => None,
                    1 => values.pop(),
                    _ => Some(Value::Array(values)),
                }
            }
        }
    }

    /// Every argument as a JSON object (repeated names become arrays): what
    /// `kong.request.get_body()` returns. `None` without arguments.
    pub fn to_object(&self) -> Option<Map<String, Value>> {
        let names: Vec<&str> = match self {
            BodyArgs::None => return None,
            BodyArgs::Json(map) => return Some(map.clone()),
            BodyArgs::Form(pairs) => pairs.iter().map(|(k, _)| k.as_str()).collect(),
            BodyArgs::Multipart(m) => m.parts.iter().map(|p| p.name.as_str()).collect(),
        };
        let mut object = Map::new();
        for name in names {
            if !object.contains_key(name) {
                if let Some(v) = self.get(name) {
                    object.insert(name.to_owned(), v);
                }
            }
        }
        Some(object)
    }

    /// The body re-encoded without `name`; `None` when there is nothing to change.
    pub fn without(&self, name: &str) -> Option<Vec<u8>> {
        match self {
            BodyArgs::None => None,
            BodyArgs::Form(pairs) => {
                let kept: Vec<(String, String)> =
                    pairs.iter().filter(|(k, _)| k != name).cloned().collect();
                Some(encode_form(&kept))
            }
            BodyArgs::Json(map) => {
                let mut map = map.clone();
                map.remove(name)?;
                serde_json::to_vec(&map).ok()
            }
            BodyArgs::Multipart(m) => m.without(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: &[u8] = b"application/x-www-form-urlencoded";

    #[test]
    fn parses_form_and_json_by_media_type() {
        let form = parse(
            Some(b"application/x-www-form-urlencoded; charset=utf-8"),
            b"a=1&b=%202&a=3",
            100,
        )
        .expect("form");
        assert_eq!(form.get("b"), Some(Value::String(" 2".into())));
        assert_eq!(form.get("a"), Some(serde_json::json!(["1", "3"])));
        assert_eq!(form.without("a"), Some(b"b=+2".to_vec()));
        let json = parse(
            Some(b"application/vnd.api+json"),
            br#"{"k":"v","n":1}"#,
            100,
        )
        .expect("json");
        assert_eq!(json.get("k"), Some(Value::String("v".into())));
        assert_eq!(json.without("k"), Some(br#"{"n":1}"#.to_vec()));
        assert!(parse(Some(b"application/json"), b"[1]", 100).is_err());
        assert!(matches!(
            parse(Some(b"text/plain"), b"x", 100),
            Ok(BodyArgs::None)
        ));
    }

    #[test]
    fn a_form_is_read_as_get_post_args_reads_it() {
        let form = b"=skipped&a=1&&flag&b=2&c=3";
        let Ok(BodyArgs::Form(pairs)) = parse(Some(FORM), form, 5) else {
            panic!("a form");
        };
        // Five pieces counted, the empty ones too; the one without a name is left out.
        let want = [("a", "1"), ("flag", ""), ("b", "2")];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(pairs, want);
        let Ok(BodyArgs::Form(all)) = parse(Some(FORM), form, 100) else {
            panic!("a form");
        };
        assert_eq!(all.len(), 4, "{all:?}");
    }
}
