//! Kong's DAO vocabulary, shared by the Admin API and the config stores: the entity kinds and
//! how the Admin API addresses them ([`Kind`]), and Kong's error object ([`DaoError`],
//! `kong/db/errors.lua`).

use serde_json::{Map, Value, json};

/// A foreign key of an entity kind: the field and the kind it references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Foreign {
    /// The field (`service` on routes).
    pub field: &'static str,
    /// The referenced kind's name (`services`).
    pub kind: &'static str,
}

/// An entity kind as Kong's schema describes it to the Admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// The schema (and DAO) name: `keyauth_credentials`.
    pub name: &'static str,
    /// The collection's path segment: `key-auths`.
    pub admin_name: &'static str,
    /// The path segment under a parent: `key-auth` (`/consumers/{c}/key-auth`).
    pub nested_name: &'static str,
    /// The field a non-UUID address is looked up by (`name`, `username`, ...); `None` means
    /// id only.
    pub endpoint_key: Option<&'static str>,
    /// Foreign keys, in schema order.
    pub foreign: &'static [Foreign],
    /// Rows expire (`ttl` on input, remaining seconds on output).
    pub ttl: bool,
    /// The kind has `updated_at`.
    pub updated_at: bool,
}

const fn kind(
    name: &'static str,
    admin_name: &'static str,
    endpoint_key: Option<&'static str>,
    foreign: &'static [Foreign],
) -> Kind {
    Kind {
        name,
        admin_name,
        nested_name: admin_name,
        endpoint_key,
        foreign,
        ttl: false,
        updated_at: true,
    }
}

const fn fk(field: &'static str, kind: &'static str) -> Foreign {
    Foreign { field, kind }
}

/// Every kind gangway stores, in the order Kong lists its DAOs.
pub const KINDS: &[Kind] = &[
    kind(
        "services",
        "services",
        Some("name"),
        &[fk("client_certificate", "certificates")],
    ),
    kind(
        "routes",
        "routes",
        Some("name"),
        &[fk("service", "services")],
    ),
    kind("consumers", "consumers", Some("username"), &[]),
    kind(
        "plugins",
        "plugins",
        Some("instance_name"),
        &[
            fk("route", "routes"),
            fk("service", "services"),
            fk("consumer", "consumers"),
        ],
    ),
    kind(
        "upstreams",
        "upstreams",
        Some("name"),
        &[fk("client_certificate", "certificates")],
    ),
    kind(
        "targets",
        "targets",
        Some("target"),
        &[fk("upstream", "upstreams")],
    ),
    kind("certificates", "certificates", None, &[]),
    kind(
        "snis",
        "snis",
        Some("name"),
        &[fk("certificate", "certificates")],
    ),
    kind("ca_certificates", "ca_certificates", None, &[]),
    Kind {
        nested_name: "key-auth",
        ttl: true,
        updated_at: false,
        ..kind(
            "keyauth_credentials",
            "key-auths",
            Some("key"),
            &[fk("consumer", "consumers")],
        )
    },
    Kind {
        updated_at: false,
        ..kind("acls", "acls", None, &[fk("consumer", "consumers")])
    },
];

/// The kind named `name` (schema name).
pub fn kind_named(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// The kind whose collection is `/{segment}`.
pub fn kind_by_admin_name(segment: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.admin_name == segment)
}

/// Kong's DAO error codes (`kong/db/errors.lua`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 1, HTTP 400.
    InvalidPrimaryKey = 1,
    /// 2, HTTP 400.
    SchemaViolation = 2,
    /// 3, HTTP 400.
    PrimaryKeyViolation = 3,
    /// 4, HTTP 400.
    ForeignKeyViolation = 4,
    /// 5, HTTP 409.
    UniqueViolation = 5,
    /// 6, HTTP 404.
    NotFound = 6,
    /// 7, HTTP 400.
    InvalidOffset = 7,
    /// 8, HTTP 500.
    DatabaseError = 8,
    /// 9, HTTP 400.
    InvalidSize = 9,
    /// 11, HTTP 400; its details are under `options`, not `fields`.
    InvalidOptions = 11,
    /// 12, HTTP 405.
    OperationUnsupported = 12,
    /// 13, HTTP 400.
    ForeignKeysUnresolved = 13,
    /// 14, HTTP 400.
    DeclarativeConfig = 14,
    /// 19, HTTP 400.
    ReferencedByOthers = 19,
    /// Kong's code 8 (database error) when the database cannot be reached at all: HTTP 503,
    /// so a client knows to retry rather than report a bug.
    Unavailable = 108,
}

impl ErrorCode {
    /// Kong's `name` for the code.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::InvalidPrimaryKey => "invalid primary key",
            ErrorCode::SchemaViolation => "schema violation",
            ErrorCode::PrimaryKeyViolation => "primary key violation",
            ErrorCode::ForeignKeyViolation => "foreign key violation",
            ErrorCode::UniqueViolation => "unique constraint violation",
            ErrorCode::NotFound => "not found",
            ErrorCode::InvalidOffset => "invalid offset",
            ErrorCode::DatabaseError => "database error",
            ErrorCode::InvalidSize => "invalid size",
            ErrorCode::InvalidOptions => "invalid options",
            ErrorCode::OperationUnsupported => "operation unsupported",
            ErrorCode::ForeignKeysUnresolved => "foreign keys unresolved",
            ErrorCode::DeclarativeConfig => "invalid declarative configuration",
            ErrorCode::ReferencedByOthers => "referenced by others",
            ErrorCode::Unavailable => "database error",
        }
    }

    /// Kong's number for the code.
    pub fn number(self) -> u8 {
        match self {
            ErrorCode::Unavailable => ErrorCode::DatabaseError as u8,
            code => code as u8,
        }
    }

    /// The HTTP status the Admin API answers with (`kong/api/endpoints.lua`).
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::UniqueViolation => 409,
            ErrorCode::NotFound => 404,
            ErrorCode::DatabaseError => 500,
            ErrorCode::Unavailable => 503,
            ErrorCode::OperationUnsupported => 405,
            _ => 400,
        }
    }
}

/// Kong's DAO error object: `{"code", "name", "message", "fields"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct DaoError {
    /// The code.
    pub code: ErrorCode,
    /// The message.
    pub message: String,
    /// Details (`fields`, or `options` for code 11); `None` omits them.
    pub fields: Option<Value>,
}

impl DaoError {
    /// An error with no details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> DaoError {
        DaoError {
            code,
            message: message.into(),
            fields: None,
        }
    }

    /// `cannot <verb> '<kind>' entities when not using a database` (code 12): DB-less writes.
    pub fn unsupported_without_database(verb: &str, kind: &str) -> DaoError {
        DaoError::new(
            ErrorCode::OperationUnsupported,
            format!("cannot {verb} '{kind}' entities when not using a database"),
        )
    }

    /// Code 6 for an entity addressed by primary key: `could not find the entity with
    /// primary key '{id="<id>"}'`.
    pub fn not_found_by_id(id: &str) -> DaoError {
        DaoError {
            code: ErrorCode::NotFound,
            message: format!("could not find the entity with primary key '{{id=\"{id}\"}}'"),
            fields: Some(json!({ "id": id })),
        }
    }

    /// Code 6 for an entity addressed by a field: `could not find the entity with
    /// '{<field>="<value>"}'`.
    pub fn not_found_by_field(field: &str, value: &str) -> DaoError {
        DaoError {
            code: ErrorCode::NotFound,
            message: format!("could not find the entity with '{{{field}=\"{value}\"}}'"),
            fields: Some(json!({ field: value })),
        }
    }

    /// Code 5: `UNIQUE violation detected on '{<field>="<value>"}'` (409).
    pub fn unique_violation(field: &str, value: &str) -> DaoError {
        DaoError {
            code: ErrorCode::UniqueViolation,
            message: format!("UNIQUE violation detected on '{{{field}=\"{value}\"}}'"),
            fields: Some(json!({ field: value })),
        }
    }

    /// Code 1 for an address that is no UUID on a kind reached by id only: `invalid primary
    /// key: '{id="<value>"}'`.
    pub fn invalid_primary_key(value: &str) -> DaoError {
        DaoError {
            code: ErrorCode::InvalidPrimaryKey,
            message: format!("invalid primary key: '{{id=\"{value}\"}}'"),
            fields: Some(json!({ "id": "expected a valid UUID" })),
        }
    }

    /// Code 3: `primary key violation on key '{id="<id>"}'`.
    pub fn primary_key_violation(id: &str) -> DaoError {
        DaoError {
            code: ErrorCode::PrimaryKeyViolation,
            message: format!("primary key violation on key '{{id=\"{id}\"}}'"),
            fields: Some(json!({ "id": id })),
        }
    }

    /// Code 4 on insert: `the foreign key '{id="<id>"}' does not reference an existing
    /// '<kind>' entity.`
    pub fn foreign_key_missing(field: &str, id: &str, kind: &str) -> DaoError {
        DaoError {
            code: ErrorCode::ForeignKeyViolation,
            message: format!(
                "the foreign key '{{id=\"{id}\"}}' does not reference an existing '{kind}' entity."
            ),
            fields: Some(json!({ field: { "id": id } })),
        }
    }

    /// Code 19: `ca certificate <id> is still referenced by <kind> (id = <id>)`, a delete
    /// refused because an entity lists the CA certificate (not a foreign key in the schema).
    pub fn ca_still_referenced(ca: &str, kind: &str, by: &str) -> DaoError {
        DaoError {
            code: ErrorCode::ReferencedByOthers,
            message: format!("ca certificate {ca} is still referenced by {kind} (id = {by})"),
            fields: None,
        }
    }

    /// Code 4 on delete: `an existing '<child>' entity references this '<parent>' entity`.
    pub fn still_referenced(child: &str, parent: &str) -> DaoError {
        DaoError {
            code: ErrorCode::ForeignKeyViolation,
            message: format!("an existing '{child}' entity references this '{parent}' entity"),
            fields: Some(json!({ "@referenced_by": child })),
        }
    }

    /// Code 13: `foreign key unresolved (<field>.<key>: the foreign key cannot be resolved
    /// with '{<key>="<value>"}' for an existing '<kind>' entity)`.
    pub fn foreign_key_unresolved(field: &str, key: &str, value: &str, kind: &str) -> DaoError {
        let why = format!(
            "the foreign key cannot be resolved with '{{{key}=\"{value}\"}}' for an existing '{kind}' entity"
        );
        DaoError {
            code: ErrorCode::ForeignKeysUnresolved,
            message: format!("foreign key unresolved ({field}.{key}: {why})"),
            fields: Some(json!({ field: { key: why } })),
        }
    }

    /// The database cannot be reached: 503 with a message that says so.
    pub fn unavailable(cause: &dyn std::fmt::Display) -> DaoError {
        DaoError::new(
            ErrorCode::Unavailable,
            format!("database unavailable: {cause}"),
        )
    }

    /// Code 9: `size must be an integer between 1 and 1000` and friends.
    pub fn invalid_size(message: impl Into<String>) -> DaoError {
        DaoError::new(ErrorCode::InvalidSize, message)
    }

    /// Code 7: `'<offset>' is not a valid offset: <why>`.
    pub fn invalid_offset(offset: &str, why: &str) -> DaoError {
        DaoError::new(
            ErrorCode::InvalidOffset,
            format!("'{offset}' is not a valid offset: {why}"),
        )
    }

    /// Code 11 with one option's problem: `invalid option (<option>: <problem>)`.
    pub fn invalid_option(option: &str, problem: &str) -> DaoError {
        DaoError {
            code: ErrorCode::InvalidOptions,
            message: format!("invalid option ({option}: {problem})"),
            fields: Some(json!({ option: problem })),
        }
    }

    /// Code 2 from `(field, message)` pairs: `schema violation (<f>: <e>)` or
    /// `N schema violations (<f1>: <e1>; ...)`, with the pairs under `fields` (dotted paths
    /// nest as records, entity checks go under `@entity`).
    pub fn schema_violation(problems: &[(String, String)]) -> DaoError {
        let mut fields = Map::new();
        for (path, message) in problems {
            insert_path(&mut fields, path, message);
        }
        let listed: Vec<String> = problems
            .iter()
            .map(|(path, message)| {
                if path.is_empty() || path == "@entity" {
                    message.clone()
                } else {
                    format!("{path}: {message}")
                }
            })
            .collect();
        let message = match listed.as_slice() {
            [one] => format!("schema violation ({one})"),
            many => format!("{} schema violations ({})", many.len(), many.join("; ")),
        };
        DaoError {
            code: ErrorCode::SchemaViolation,
            message,
            fields: Some(Value::Object(fields)),
        }
    }

    /// Kong's schema violation for problems the loader found in one entity: paths lose
    /// `prefix` (the entity's place in its document, `services[0]`) and name array elements
    /// Kong's way (`config.key_names[0]` is `config.key_names.1`).
    pub fn from_config_errors(prefix: &str, problems: &crate::ConfigErrors) -> DaoError {
        let pairs: Vec<(String, String)> = problems
            .0
            .iter()
            .map(|e| {
                let path = e.path.strip_prefix(prefix).unwrap_or(&e.path);
                (kong_path(path), e.message.clone())
            })
            .collect();
        DaoError::schema_violation(&pairs)
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The JSON body Kong sends.
    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        body.insert("code".into(), json!(self.code.number()));
        body.insert("name".into(), json!(self.code.name()));
        body.insert("message".into(), json!(self.message));
        if let Some(fields) = &self.fields {
            let key = if self.code == ErrorCode::InvalidOptions {
                "options"
            } else {
                "fields"
            };
            body.insert(key.into(), fields.clone());
        }
        Value::Object(body)
    }
}

impl std::fmt::Display for DaoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DaoError {}

/// `.config.key_names[0]` as Kong names it in errors: `config.key_names.1`.
fn kong_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path.trim_start_matches('.');
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else { break };
        match after[..close].parse::<usize>() {
            Ok(i) => out.push_str(&format!(".{}", i + 1)),
            Err(_) => out.push_str(&format!(".{}", &after[..close])),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Puts `message` at dotted `path` in `fields`: `service.protocol` nests as records; an
/// empty path or `@entity` collects entity-level messages in an array, as Kong does.
fn insert_path(fields: &mut Map<String, Value>, path: &str, message: &str) {
    if path.is_empty() || path == "@entity" {
        let list = fields
            .entry("@entity")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(items) = list {
            items.push(json!(message));
        }
        return;
    }
    match path.split_once('.') {
        Some((head, rest)) => {
            let child = fields
                .entry(head)
                .or_insert_with(|| Value::Object(Map::new()));
            if !child.is_object() {
                *child = Value::Object(Map::new());
            }
            if let Value::Object(child) = child {
                insert_path(child, rest, message);
            }
        }
        None => {
            fields.insert(path.to_owned(), json!(message));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn error_bodies_follow_kong() {
        let e = DaoError::unsupported_without_database("create", "services");
        assert_eq!(e.status(), 405);
        assert_eq!(
            e.to_json(),
            json!({"code": 12, "name": "operation unsupported",
                   "message": "cannot create 'services' entities when not using a database"})
        );
        let e = DaoError::invalid_option("tags", "cannot be null");
        assert_eq!(
            e.to_json(),
            json!({"code": 11, "name": "invalid options",
                   "message": "invalid option (tags: cannot be null)",
                   "options": {"tags": "cannot be null"}})
        );
    }

    #[test]
    fn schema_violations_nest_fields_and_count() {
        let one = DaoError::schema_violation(&[("name".into(), "required field missing".into())]);
        assert_eq!(
            one.to_json(),
            json!({"code": 2, "name": "schema violation",
                   "message": "schema violation (name: required field missing)",
                   "fields": {"name": "required field missing"}})
        );
        let two = DaoError::schema_violation(&[
            ("service.protocol".into(), "expected one of: http".into()),
            (String::new(), "must set one of 'methods'".into()),
        ]);
        assert_eq!(
            two.message,
            "2 schema violations (service.protocol: expected one of: http; must set one of 'methods')"
        );
        assert_eq!(
            two.fields,
            Some(json!({"service": {"protocol": "expected one of: http"},
                        "@entity": ["must set one of 'methods'"]}))
        );
    }

    #[test]
    fn error_paths_use_kongs_one_based_dots() {
        assert_eq!(kong_path("config.key_names[0]"), "config.key_names.1");
        assert_eq!(kong_path("config.minute"), "config.minute");
        assert_eq!(kong_path("protocols[2]"), "protocols.3");
        assert_eq!(kong_path(".name"), "name");
    }

    #[test]
    fn kinds_are_addressed_as_kong_does() {
        let creds = kind_by_admin_name("key-auths").expect("key-auths");
        assert_eq!(
            (creds.name, creds.nested_name, creds.endpoint_key),
            ("keyauth_credentials", "key-auth", Some("key"))
        );
        assert!(creds.ttl && !creds.updated_at);
        assert_eq!(
            kind_named("consumers").and_then(|k| k.endpoint_key),
            Some("username")
        );
        assert_eq!(kind_named("acls").and_then(|k| k.endpoint_key), None);
    }
}
