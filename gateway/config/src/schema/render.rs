//! Renders schemas the way Kong's `api_helpers.schema_to_jsonable` does: `fields` as an ordered
//! array of single-key objects, functions dropped, foreign `schema`s stripped.

use serde_json::{Map, Value, json};

use super::{EntityCheck, Field, FieldType, Match, Rules, Schema};

/// `GET /schemas/plugins/{name}`: the plugin's own subschema fields, in the order Kong's bundled
/// plugins declare them (`consumer`, `service`, `route`, `protocols`, `config`).
pub(super) fn plugin_schema(schema: &Schema) -> Value {
    let scopes = [
        (
            "consumer",
            schema.consumer_forbidden,
            "consumers",
            "Custom type for representing a foreign key with a null value allowed.",
        ),
        (
            "service",
            schema.service_forbidden,
            "services",
            "A reference to the 'services' table with a null value allowed.",
        ),
        (
            "route",
            schema.route_forbidden,
            "routes",
            "A reference to the 'routes' table with a null value allowed.",
        ),
    ];
    let mut fields = Vec::new();
    for (name, forbidden, reference, description) in scopes {
        if forbidden {
            let no_scope = Field::foreign(reference)
                .eq(Value::Null)
                .describe(description);
            fields.push(single(name, field(&no_scope, false)));
        }
    }
    fields.push(single("protocols", field(&schema.protocols_field(), false)));
    fields.push(single("config", field(&schema.config, true)));
    json!({ "fields": fields, "entity_checks": checks(&schema.entity_checks) })
}

/// The deprecated `GET /plugins/schema/{name}`: the `config` record as a schema of its own.
pub(super) fn config_schema(schema: &Schema) -> Value {
    json!({
        "fields": record_fields(&schema.config.fields, true),
        "entity_checks": checks(&schema.config.entity_checks),
    })
}

fn single(name: &str, value: Value) -> Value {
    let mut m = Map::new();
    m.insert(name.to_string(), value);
    Value::Object(m)
}

fn record_fields(fields: &[(&'static str, Field)], chain: bool) -> Vec<Value> {
    fields
        .iter()
        .map(|(name, f)| single(name, field(f, chain)))
        .collect()
}

fn checks(list: &[EntityCheck]) -> Vec<Value> {
    list.iter().map(check).collect()
}

/// One field's attributes. `chain` marks fields reached from `config` through records only,
/// where Kong's `make_records_required` has set `required = true` on undeclared records.
fn field(f: &Field, chain: bool) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), f.kind.as_str().into());
    let required = f
        .required
        .or((chain && f.kind == FieldType::Record).then_some(true));
    if let Some(required) = required {
        m.insert("required".into(), required.into());
    }
    if let Some(default) = &f.default {
        m.insert("default".into(), default.clone());
    }
    if let Some(reference) = f.reference {
        m.insert("reference".into(), reference.into());
    }
    rules(&f.rules, &mut m);
    if let Some(el) = &f.elements {
        m.insert("elements".into(), field(el, false));
    }
    if let Some(keys) = &f.keys {
        m.insert("keys".into(), field(keys, false));
    }
    if let Some(values) = &f.values {
        m.insert("values".into(), field(values, false));
    }
    if f.kind == FieldType::Record {
        m.insert("fields".into(), record_fields(&f.fields, chain).into());
        if !f.entity_checks.is_empty() {
            m.insert("entity_checks".into(), checks(&f.entity_checks).into());
        }
    }
    if f.referenceable {
        m.insert("referenceable".into(), true.into());
    }
    if f.encrypted {
        m.insert("encrypted".into(), true.into());
    }
    if let Some(err) = f.err {
        m.insert("err".into(), err.into());
    }
    if let Some(description) = f.description {
        m.insert("description".into(), description.into());
    }
    Value::Object(m)
}

/// Rule attributes under Kong's names; `custom_validator` is a function and is dropped.
fn rules(r: &Rules, m: &mut Map<String, Value>) {
    if let Some(eq) = &r.eq {
        m.insert("eq".into(), eq.clone());
    }
    if let Some(ne) = &r.ne {
        m.insert("ne".into(), ne.clone());
    }
    if let Some(options) = &r.not_one_of {
        m.insert("not_one_of".into(), options.clone().into());
    }
    if let Some(options) = &r.one_of {
        m.insert("one_of".into(), options.clone().into());
    }
    if let Some(gt) = r.gt {
        m.insert("gt".into(), num(gt));
    }
    if r.uuid {
        m.insert("uuid".into(), true.into());
    }
    if let Some((min, max)) = r.between {
        m.insert("between".into(), json!([num(min), num(max)]));
    }
    let lengths = [
        ("len_eq", r.len_eq),
        ("len_min", r.len_min),
        ("len_max", r.len_max),
    ];
    for (name, len) in lengths {
        if let Some(n) = len {
            m.insert(name.into(), n.into());
        }
    }
    if let Some(prefix) = r.starts_with {
        m.insert("starts_with".into(), prefix.into());
    }
    if let Some(p) = &r.not_match {
        m.insert("not_match".into(), p.source.into());
    }
    if let Some(p) = &r.matches {
        m.insert("match".into(), p.source.into());
    }
    if let Some(wanted) = &r.contains {
        m.insert("contains".into(), wanted.clone());
    }
}

/// Integral limits render as integers (`[0, 100]`), like cjson does for Lua numbers.
fn num(f: f64) -> Value {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
        Value::from(f as i64)
    } else {
        Value::from(f)
    }
}

fn matcher(m: &Match) -> Value {
    let mut out = Map::new();
    if m.required {
        out.insert("required".into(), true.into());
    }
    rules(&m.rules, &mut out);
    Value::Object(out)
}

fn check(c: &EntityCheck) -> Value {
    let (name, arg) = match c {
        EntityCheck::AtLeastOneOf(f) => ("at_least_one_of", json!(f)),
        EntityCheck::OnlyOneOf(f) => ("only_one_of", json!(f)),
        EntityCheck::Distinct(f) => ("distinct", json!(f)),
        EntityCheck::MutuallyRequired(f) => ("mutually_required", json!(f)),
        EntityCheck::MutuallyExclusive(f) => ("mutually_exclusive", json!(f)),
        EntityCheck::MutuallyExclusiveSets { set1, set2 } => (
            "mutually_exclusive_sets",
            json!({ "set1": set1, "set2": set2 }),
        ),
        EntityCheck::Conditional {
            if_field,
            if_match,
            then_field,
            then_match,
            then_err,
        } => {
            let mut arg = json!({
                "if_field": if_field,
                "if_match": matcher(if_match),
                "then_field": then_field,
                "then_match": matcher(then_match),
            });
            if let Some(err) = then_err {
                arg["then_err"] = (*err).into();
            }
            ("conditional", arg)
        }
        EntityCheck::ConditionalAtLeastOneOf {
            if_field,
            if_match,
            then_at_least_one_of,
            then_err,
            else_match,
            else_then_at_least_one_of,
            else_then_err,
        } => {
            let mut arg = json!({
                "if_field": if_field,
                "if_match": matcher(if_match),
                "then_at_least_one_of": then_at_least_one_of,
            });
            if let Some(err) = then_err {
                arg["then_err"] = (*err).into();
            }
            if let Some(m) = else_match {
                arg["else_match"] = matcher(m);
            }
            if !else_then_at_least_one_of.is_empty() {
                arg["else_then_at_least_one_of"] = json!(else_then_at_least_one_of);
            }
            if let Some(err) = else_then_err {
                arg["else_then_err"] = (*err).into();
            }
            ("conditional_at_least_one_of", arg)
        }
        EntityCheck::Custom { fields, .. } => {
            ("custom_entity_check", json!({ "field_sources": fields }))
        }
    };
    single(name, arg)
}
