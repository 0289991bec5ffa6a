//! Plugin configuration schemas in Kong's schema model (`kong/db/schema/init.lua`).
//!
//! A plugin declares its `config` as a tree of [`Field`]s plus cross-field [`EntityCheck`]s.
//! [`Schema::validate`] fills defaults and reports every problem with Kong's message text at a
//! flat path (`plugins[2].config.key_names[0]`); [`Schema::to_kong_json`] renders the body of
//! Kong's `GET /schemas/plugins/{name}`.
//!
//! Kong semantics kept on purpose:
//! - an absent field gets its default, else null unless it is required; an absent required
//!   record is expanded to its own defaults; an explicit null stays null (an error when required);
//! - records reached from `config` through records only are required unless declared otherwise
//!   (Kong's `make_records_required`), so they always come back filled;
//! - strings must be non-empty unless `len_min` says otherwise; set elements are deduplicated;
//!   nothing is coerced (a lone string is not an array, `"5"` is not an integer);
//! - one message per field: the first failing rule, in Kong's validator order; a map reports
//!   its first bad entry at the map's own path, as Kong does.

mod check;
pub mod entities;
mod render;
mod validate;

#[cfg(test)]
mod tests;

pub use check::{EntityCheck, Match};

use regex::Regex;
use serde_json::{Map, Value};

use crate::ConfigErrors;

/// The protocols of the `http` subsystem, sorted: the default of Kong's `protocols_http`.
pub const HTTP_PROTOCOLS: &[&str] = &["grpc", "grpcs", "http", "https"];

/// Every protocol Kong knows (`constants.PROTOCOLS`), sorted.
pub const ALL_PROTOCOLS: &[&str] = &[
    "grpc",
    "grpcs",
    "http",
    "https",
    "tcp",
    "tls",
    "tls_passthrough",
    "udp",
];

/// A field-level custom check; `Err` carries the message text to report.
pub type Validator = fn(&Value) -> Result<(), String>;

/// A field's type, as Kong spells it in schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// A non-empty UTF-8 string (unless `len_min` allows empty).
    String,
    /// A JSON number without a fractional part.
    Integer,
    /// Any JSON number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// An ordered list of `elements`.
    Array,
    /// A list of `elements` whose duplicates are dropped.
    Set,
    /// An object from `keys` to `values`.
    Map,
    /// An object with the declared `fields`.
    Record,
    /// A reference to another entity (`{"id": "<uuid>"}`).
    Foreign,
}

impl FieldType {
    /// Kong's name for the type (`"string"`, `"record"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Array => "array",
            Self::Set => "set",
            Self::Map => "map",
            Self::Record => "record",
            Self::Foreign => "foreign",
        }
    }

    /// Kong's type error, such as `expected a string`.
    pub fn expected(self) -> &'static str {
        match self {
            Self::String => "expected a string",
            Self::Integer => "expected an integer",
            Self::Number => "expected a number",
            Self::Boolean => "expected a boolean",
            Self::Array => "expected an array",
            Self::Set => "expected a set",
            Self::Map => "expected a map",
            Self::Record | Self::Foreign => "expected a record",
        }
    }
}

/// A compiled regular expression that keeps its source for rendering.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The regex source, rendered as Kong's `match`/`not_match`.
    pub source: &'static str,
    /// The compiled form.
    pub regex: Regex,
}

impl Pattern {
    /// Compiles `source` once per process (schemas are rebuilt, their patterns are not);
    /// schemas are static data, so a bad pattern is a programming error.
    pub fn new(source: &'static str) -> Self {
        static COMPILED: std::sync::Mutex<Vec<(&'static str, Regex)>> =
            std::sync::Mutex::new(Vec::new());
        let mut compiled = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, regex)) = compiled.iter().find(|(s, _)| *s == source) {
            return Self {
                source,
                regex: regex.clone(),
            };
        }
        let regex = Regex::new(source).expect("invariant: schema patterns are valid regexes");
        compiled.push((source, regex.clone()));
        Self { source, regex }
    }
}

/// The value rules of a field or of a [`Match`], run in Kong's `validators_order`; all unset
/// by default.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// `eq`: the value must equal this (`Some(Null)`: must be null).
    pub eq: Option<Value>,
    /// `ne`: the value must differ from this (`Some(Null)`: must not be null).
    pub ne: Option<Value>,
    /// `not_one_of`: forbidden values.
    pub not_one_of: Option<Vec<Value>>,
    /// `one_of`: allowed values.
    pub one_of: Option<Vec<Value>>,
    /// `gt`: numbers must be greater.
    pub gt: Option<f64>,
    /// `uuid`: strings must be UUIDs.
    pub uuid: bool,
    /// `between`: numbers must lie in this closed range.
    pub between: Option<(f64, f64)>,
    /// `len_eq`: exact length of a string (bytes), array, set or map.
    pub len_eq: Option<usize>,
    /// `len_min`: minimum length; strings default to 1.
    pub len_min: Option<usize>,
    /// `len_max`: maximum length.
    pub len_max: Option<usize>,
    /// `starts_with`: required string prefix.
    pub starts_with: Option<&'static str>,
    /// `not_match`: strings must not match.
    pub not_match: Option<Pattern>,
    /// `match`: strings must match.
    pub matches: Option<Pattern>,
    /// `contains`: arrays must hold this value.
    pub contains: Option<Value>,
    /// `custom_validator`: runs last; never rendered.
    pub custom_validator: Option<Validator>,
}

/// One schema field: a type, presence rules, a default, value rules and, for aggregates, the
/// schema of what they hold.
#[derive(Debug, Clone)]
pub struct Field {
    /// The type.
    pub kind: FieldType,
    /// `Some(true)` required, `Some(false)` explicitly optional, `None` undeclared (optional,
    /// except records under `config`, see the module docs).
    pub required: Option<bool>,
    /// Filled in when the field is absent; default none.
    pub default: Option<Value>,
    /// Value rules.
    pub rules: Rules,
    /// Element schema of arrays and sets.
    pub elements: Option<Box<Field>>,
    /// Key schema of maps.
    pub keys: Option<Box<Field>>,
    /// Value schema of maps.
    pub values: Option<Box<Field>>,
    /// Fields of records, in declaration order.
    pub fields: Vec<(&'static str, Field)>,
    /// Cross-field checks of records; names may be dotted (`redis.host`).
    pub entity_checks: Vec<EntityCheck>,
    /// The entity a foreign field points at (`consumers`).
    pub reference: Option<&'static str>,
    /// Accepts a `{vault://...}` reference in place of the value; default false.
    pub referenceable: bool,
    /// Stored encrypted by Kong (keyring); default false.
    pub encrypted: bool,
    /// Kong's `description`; default none.
    pub description: Option<&'static str>,
    /// Kong's `err`: replaces the message of any failing value rule; default none.
    pub err: Option<&'static str>,
    /// Deprecated names of records' fields (Kong's `shorthand_fields`); default none.
    pub shorthands: Vec<Shorthand>,
}

/// A deprecated field name that Kong still accepts and moves to its new place (Kong's
/// `shorthand_fields` with `deprecation.replaced_with`): `redis_host` becomes `redis.host`.
/// When both are given, the new field wins, and different values are an error.
#[derive(Debug, Clone)]
pub struct Shorthand {
    /// The deprecated name.
    pub name: &'static str,
    /// Its type and rules.
    pub field: Field,
    /// Where its value goes: a dotted path in the same record.
    pub target: &'static str,
}

impl Field {
    /// Adds each deprecated shorthand of this record to `record` with the value at its new
    /// place, as Kong's DAO does on every read (`redis_host` beside `redis.host`); a
    /// shorthand whose place is absent is left out.
    pub fn echo_shorthands(&self, record: &mut Value) {
        let Some(map) = record.as_object_mut() else {
            return;
        };
        for shorthand in &self.shorthands {
            let mut at = Some(&*map);
            let mut found = None;
            let mut steps = shorthand.target.split('.').peekable();
            while let (Some(step), Some(here)) = (steps.next(), at) {
                let value = here.get(step);
                if steps.peek().is_none() {
                    found = value.cloned();
                }
                at = value.and_then(Value::as_object);
            }
            if let Some(value) = found {
                map.insert(shorthand.name.to_owned(), value);
            }
        }
    }

    fn of(kind: FieldType) -> Self {
        Self {
            kind,
            required: None,
            default: None,
            rules: Rules::default(),
            elements: None,
            keys: None,
            values: None,
            fields: Vec::new(),
            entity_checks: Vec::new(),
            reference: None,
            referenceable: false,
            encrypted: false,
            description: None,
            err: None,
            shorthands: Vec::new(),
        }
    }

    /// A string field.
    pub fn string() -> Self {
        Self::of(FieldType::String)
    }

    /// An integer field.
    pub fn integer() -> Self {
        Self::of(FieldType::Integer)
    }

    /// A number field.
    pub fn number() -> Self {
        Self::of(FieldType::Number)
    }

    /// A boolean field.
    pub fn boolean() -> Self {
        Self::of(FieldType::Boolean)
    }

    /// An array of `elements`.
    pub fn array(elements: Field) -> Self {
        Self {
            elements: Some(Box::new(elements)),
            ..Self::of(FieldType::Array)
        }
    }

    /// A set of `elements` (duplicates dropped).
    pub fn set(elements: Field) -> Self {
        Self {
            elements: Some(Box::new(elements)),
            ..Self::of(FieldType::Set)
        }
    }

    /// A map from `keys` to `values`.
    pub fn map(keys: Field, values: Field) -> Self {
        Self {
            keys: Some(Box::new(keys)),
            values: Some(Box::new(values)),
            ..Self::of(FieldType::Map)
        }
    }

    /// A record of `fields`.
    pub fn record(fields: Vec<(&'static str, Field)>) -> Self {
        Self {
            fields,
            ..Self::of(FieldType::Record)
        }
    }

    /// A foreign key to the `reference` entity (`consumers`).
    pub fn foreign(reference: &'static str) -> Self {
        Self {
            reference: Some(reference),
            ..Self::of(FieldType::Foreign)
        }
    }

    /// Marks the field required.
    pub fn required(mut self) -> Self {
        self.required = Some(true);
        self
    }

    /// Marks the field explicitly optional (`"required": false`; keeps a record null when absent).
    pub fn optional(mut self) -> Self {
        self.required = Some(false);
        self
    }

    /// Sets the default.
    pub fn default(mut self, value: Value) -> Self {
        self.default = Some(value);
        self
    }

    /// Allows only these strings.
    pub fn one_of(mut self, options: &[&str]) -> Self {
        self.rules.one_of = Some(strings(options));
        self
    }

    /// Allows only these values (numbers, booleans, ...).
    pub fn one_of_values(mut self, options: Vec<Value>) -> Self {
        self.rules.one_of = Some(options);
        self
    }

    /// Forbids these strings.
    pub fn not_one_of(mut self, options: &[&str]) -> Self {
        self.rules.not_one_of = Some(strings(options));
        self
    }

    /// Requires this exact value (`Value::Null`: must be null).
    pub fn eq(mut self, value: Value) -> Self {
        self.rules.eq = Some(value);
        self
    }

    /// Forbids this value (`Value::Null`: must not be null).
    pub fn ne(mut self, value: Value) -> Self {
        self.rules.ne = Some(value);
        self
    }

    /// Requires a number greater than `limit`.
    pub fn gt(mut self, limit: impl Into<f64>) -> Self {
        self.rules.gt = Some(limit.into());
        self
    }

    /// Requires a number in `min..=max`.
    pub fn between(mut self, min: impl Into<f64>, max: impl Into<f64>) -> Self {
        self.rules.between = Some((min.into(), max.into()));
        self
    }

    /// Requires a UUID string.
    pub fn uuid(mut self) -> Self {
        self.rules.uuid = true;
        self
    }

    /// Requires exactly `n` bytes, elements or entries.
    pub fn len_eq(mut self, n: usize) -> Self {
        self.rules.len_eq = Some(n);
        self
    }

    /// Requires at least `n` bytes, elements or entries (`0` allows an empty string).
    pub fn len_min(mut self, n: usize) -> Self {
        self.rules.len_min = Some(n);
        self
    }

    /// Allows at most `n` bytes, elements or entries.
    pub fn len_max(mut self, n: usize) -> Self {
        self.rules.len_max = Some(n);
        self
    }

    /// Requires a string prefix.
    pub fn starts_with(mut self, prefix: &'static str) -> Self {
        self.rules.starts_with = Some(prefix);
        self
    }

    /// Requires strings to match a Rust regex (unanchored unless the pattern anchors).
    pub fn matches(mut self, regex: &'static str) -> Self {
        self.rules.matches = Some(Pattern::new(regex));
        self
    }

    /// Requires strings not to match a Rust regex.
    pub fn not_matches(mut self, regex: &'static str) -> Self {
        self.rules.not_match = Some(Pattern::new(regex));
        self
    }

    /// Requires arrays to contain `value`.
    pub fn contains(mut self, value: Value) -> Self {
        self.rules.contains = Some(value);
        self
    }

    /// Adds a custom check run after the built-in rules.
    pub fn custom_validator(mut self, check: Validator) -> Self {
        self.rules.custom_validator = Some(check);
        self
    }

    /// Accepts vault references (`{vault://env/x}`) without running the value rules.
    pub fn referenceable(mut self) -> Self {
        self.referenceable = true;
        self
    }

    /// Marks the field as stored encrypted.
    pub fn encrypted(mut self) -> Self {
        self.encrypted = true;
        self
    }

    /// Sets the description.
    pub fn describe(mut self, text: &'static str) -> Self {
        self.description = Some(text);
        self
    }

    /// Replaces the message of any failing value rule.
    pub fn err(mut self, message: &'static str) -> Self {
        self.err = Some(message);
        self
    }

    /// Adds a record-level check.
    pub fn with_check(mut self, check: EntityCheck) -> Self {
        self.entity_checks.push(check);
        self
    }

    /// Accepts the deprecated field `name` of this record and moves it to `target` (dotted).
    pub fn shorthand(mut self, name: &'static str, field: Field, target: &'static str) -> Self {
        self.shorthands.push(Shorthand {
            name,
            field,
            target,
        });
        self
    }

    /// Whether the field must be present and non-null. `in_config_chain` is true for fields
    /// reached from `config` through records only, where undeclared records are required.
    pub(crate) fn is_required(&self, in_config_chain: bool) -> bool {
        self.required
            .unwrap_or(in_config_chain && self.kind == FieldType::Record)
    }

    /// The field named by a dotted path (`redis.host`) inside this record.
    pub(crate) fn find(&self, dotted: &str) -> Option<&Field> {
        let (head, rest) = match dotted.split_once('.') {
            Some((h, r)) => (h, Some(r)),
            None => (dotted, None),
        };
        let field = self
            .fields
            .iter()
            .find(|(n, _)| *n == head)
            .map(|(_, f)| f)?;
        match rest {
            Some(rest) => field.find(rest),
            None => Some(field),
        }
    }
}

fn strings(options: &[&str]) -> Vec<Value> {
    options.iter().map(|s| Value::from(*s)).collect()
}

/// A plugin's schema: its `config` record, scope restrictions, protocols and plugin-level checks.
#[derive(Debug, Clone)]
pub struct Schema {
    /// Plugin name (`key-auth`).
    pub name: &'static str,
    /// The `config` record; required by default.
    pub config: Field,
    /// Default of the plugin's `protocols`; default [`HTTP_PROTOCOLS`].
    pub protocols_default: &'static [&'static str],
    /// Protocols the plugin accepts; default [`HTTP_PROTOCOLS`] (Kong's `protocols_http`).
    pub protocols_allowed: &'static [&'static str],
    /// The plugin cannot be scoped to a consumer (`typedefs.no_consumer`); default false.
    pub consumer_forbidden: bool,
    /// The plugin cannot be scoped to a route; default false.
    pub route_forbidden: bool,
    /// The plugin cannot be scoped to a service; default false.
    pub service_forbidden: bool,
    /// Plugin-level checks over `{"config": ...}`; names are dotted (`config.allow`).
    pub entity_checks: Vec<EntityCheck>,
}

impl Schema {
    /// A schema for plugin `name` with `config` (a record), HTTP protocols and no restrictions.
    pub fn new(name: &'static str, config: Field) -> Self {
        assert_eq!(
            config.kind,
            FieldType::Record,
            "invariant: a plugin config schema is a record"
        );
        Self {
            name,
            config,
            protocols_default: HTTP_PROTOCOLS,
            protocols_allowed: HTTP_PROTOCOLS,
            consumer_forbidden: false,
            route_forbidden: false,
            service_forbidden: false,
            entity_checks: Vec::new(),
        }
    }

    /// Sets the `protocols` default and the accepted protocols.
    pub fn protocols(
        mut self,
        default: &'static [&'static str],
        allowed: &'static [&'static str],
    ) -> Self {
        self.protocols_default = default;
        self.protocols_allowed = allowed;
        self
    }

    /// Forbids a consumer scope (`consumer: value must be null`).
    pub fn no_consumer(mut self) -> Self {
        self.consumer_forbidden = true;
        self
    }

    /// Forbids a route scope.
    pub fn no_route(mut self) -> Self {
        self.route_forbidden = true;
        self
    }

    /// Forbids a service scope.
    pub fn no_service(mut self) -> Self {
        self.service_forbidden = true;
        self
    }

    /// Adds a plugin-level check; its field names start with `config.`.
    pub fn with_check(mut self, check: EntityCheck) -> Self {
        self.entity_checks.push(check);
        self
    }

    /// Validates `config` (`None` = absent, treated as `{}`), fills defaults and reports every
    /// problem into `errors`. `path` is the config's own path (`plugins[2].config`): field errors
    /// land at `<path>.<field>`, errors of plugin-level checks at the parent (`plugins[2]`).
    /// Returns the filled config.
    pub fn validate(&self, config: Option<&Value>, path: &str, errors: &mut ConfigErrors) -> Value {
        validate::plugin_config(self, config, path, errors)
    }

    /// Validates the plugin's `protocols` (`None` = absent: the default) at `path`; returns the
    /// filled, deduplicated set.
    pub fn validate_protocols(
        &self,
        protocols: Option<&Value>,
        path: &str,
        errors: &mut ConfigErrors,
    ) -> Value {
        validate::standalone(&self.protocols_field(), protocols, path, errors)
    }

    /// Reports `value must be null` at `<path>.consumer` (`route`, `service`) for each scope
    /// the plugin forbids but `plugin` (the plugin entity object) sets.
    pub fn validate_scope(
        &self,
        plugin: &Map<String, Value>,
        path: &str,
        errors: &mut ConfigErrors,
    ) {
        let scopes = [
            ("consumer", self.consumer_forbidden),
            ("route", self.route_forbidden),
            ("service", self.service_forbidden),
        ];
        for (scope, forbidden) in scopes {
            if forbidden && plugin.get(scope).is_some_and(|v| !v.is_null()) {
                errors.push(validate::join(path, scope), "value must be null");
            }
        }
    }

    /// Kong's `GET /schemas/plugins/{name}` body: `{"fields": [...], "entity_checks": [...]}`.
    pub fn to_kong_json(&self) -> Value {
        render::plugin_schema(self)
    }

    /// The deprecated `GET /plugins/schema/{name}` body: the `config` record alone.
    pub fn config_to_kong_json(&self) -> Value {
        render::config_schema(self)
    }

    /// The `protocols` field: Kong's `typedefs.protocols_http` when only HTTP protocols are
    /// allowed, else `typedefs.protocols`.
    pub fn protocols_field(&self) -> Field {
        let element = Field::string().one_of(self.protocols_allowed);
        let (element, description) = if self.protocols_allowed == HTTP_PROTOCOLS {
            (element, "A set of strings representing HTTP protocols.")
        } else {
            (
                element.describe("A string representing a protocol, such as HTTP or HTTPS."),
                "A set of strings representing protocols.",
            )
        };
        Field::set(element)
            .required()
            .default(Value::Array(strings(self.protocols_default)))
            .describe(description)
    }
}
