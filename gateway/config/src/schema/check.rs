//! Cross-field checks (Kong's `entity_checkers`) and the partial field rules they match with.

use serde_json::{Map, Value};

use super::validate::{self, Errs, REQUIRED, join};
use super::{Field, Pattern, Rules};

/// A custom record check: `Err((Some(field), message))` reports at that field (relative to the
/// record), `Err((None, message))` at the record itself.
pub type CustomCheck = fn(&Map<String, Value>) -> Result<(), (Option<String>, String)>;

/// A cross-field check of a record (Kong's `entity_checks`). Field names are relative to the
/// record the check is declared on and may be dotted (`redis.host`; `config.allow` for
/// plugin-level checks). "Non-empty" means present and not null, `""`, `[]` or `{}`.
#[derive(Debug, Clone)]
pub enum EntityCheck {
    /// At least one of the fields is non-empty.
    AtLeastOneOf(Vec<&'static str>),
    /// Exactly one of the fields is non-empty.
    OnlyOneOf(Vec<&'static str>),
    /// The non-empty fields hold distinct values.
    Distinct(Vec<&'static str>),
    /// All of the fields are non-empty, or none.
    MutuallyRequired(Vec<&'static str>),
    /// At most one of the fields is non-empty.
    MutuallyExclusive(Vec<&'static str>),
    /// Fields of `set1` and fields of `set2` are not both non-empty.
    MutuallyExclusiveSets {
        /// The first group.
        set1: Vec<&'static str>,
        /// The second group.
        set2: Vec<&'static str>,
    },
    /// When `if_field` passes `if_match`, `then_field` must pass `then_match`.
    Conditional {
        /// The field tested.
        if_field: &'static str,
        /// The rules that trigger the check.
        if_match: Match,
        /// The field constrained.
        then_field: &'static str,
        /// The rules it must then pass.
        then_match: Match,
        /// Replaces the record-level message; `%s` is the `if_field` name. Default none.
        then_err: Option<&'static str>,
    },
    /// When `if_field` passes `if_match`, one of `then_at_least_one_of` must be non-empty;
    /// otherwise, when it passes `else_match`, one of `else_then_at_least_one_of` must be.
    ConditionalAtLeastOneOf {
        /// The field tested; the check is skipped while it is absent.
        if_field: &'static str,
        /// The rules that select the `then` branch.
        if_match: Match,
        /// Fields of which one must be non-empty in the `then` branch.
        then_at_least_one_of: Vec<&'static str>,
        /// Replaces the message; `%s` is the quoted field list. Default none.
        then_err: Option<&'static str>,
        /// The rules that select the `else` branch; none skips it.
        else_match: Option<Match>,
        /// Fields of which one must be non-empty in the `else` branch.
        else_then_at_least_one_of: Vec<&'static str>,
        /// Replaces the `else` message; `%s` is the quoted field list. Default none.
        else_then_err: Option<&'static str>,
    },
    /// Kong's `custom_entity_check`: runs over the whole record, only when all `fields` are
    /// present and valid.
    Custom {
        /// The fields the check reads (Kong's `field_sources`).
        fields: Vec<&'static str>,
        /// The check.
        check: CustomCheck,
    },
}

impl EntityCheck {
    /// A [`EntityCheck::Conditional`] without a custom message.
    pub fn conditional(
        if_field: &'static str,
        if_match: Match,
        then_field: &'static str,
        then_match: Match,
    ) -> Self {
        Self::Conditional {
            if_field,
            if_match,
            then_field,
            then_match,
            then_err: None,
        }
    }
}

/// The partial rules of a conditional check (`{ eq = "redis" }`, `{ required = true }`).
/// Like Kong, the matched field's type and `required` still apply.
#[derive(Debug, Clone, Default)]
pub struct Match {
    /// `required`: null fails; default false.
    pub required: bool,
    /// Value rules.
    pub rules: Rules,
}

impl Match {
    /// `{ required = true }`.
    pub fn required() -> Self {
        Self {
            required: true,
            ..Self::default()
        }
    }

    /// `{ eq = value }` (`Value::Null`: must be null).
    pub fn eq(value: Value) -> Self {
        Self::with(Rules {
            eq: Some(value),
            ..Rules::default()
        })
    }

    /// `{ ne = value }`.
    pub fn ne(value: Value) -> Self {
        Self::with(Rules {
            ne: Some(value),
            ..Rules::default()
        })
    }

    /// `{ one_of = { ... } }` over strings.
    pub fn one_of(options: &[&str]) -> Self {
        Self::one_of_values(options.iter().map(|s| Value::from(*s)).collect())
    }

    /// `{ one_of = { ... } }` over any values.
    pub fn one_of_values(options: Vec<Value>) -> Self {
        Self::with(Rules {
            one_of: Some(options),
            ..Rules::default()
        })
    }

    /// `{ not_one_of = { ... } }` over strings.
    pub fn not_one_of(options: &[&str]) -> Self {
        Self::with(Rules {
            not_one_of: Some(options.iter().map(|s| Value::from(*s)).collect()),
            ..Rules::default()
        })
    }

    /// `{ gt = limit }`.
    pub fn gt(limit: impl Into<f64>) -> Self {
        Self::with(Rules {
            gt: Some(limit.into()),
            ..Rules::default()
        })
    }

    /// `{ contains = value }`.
    pub fn contains(value: Value) -> Self {
        Self::with(Rules {
            contains: Some(value),
            ..Rules::default()
        })
    }

    /// `{ match = regex }`.
    pub fn matches(regex: &'static str) -> Self {
        Self::with(Rules {
            matches: Some(Pattern::new(regex)),
            ..Rules::default()
        })
    }

    /// Any rules.
    pub fn with(rules: Rules) -> Self {
        Self {
            required: false,
            rules,
        }
    }

    /// Also requires a non-null value.
    pub fn and_required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Kong's `validate_field` with these rules over a value of `field`.
    fn check(&self, value: &Value, field: Option<&Field>) -> Result<(), String> {
        if value.is_null() {
            let required = self.required || field.is_some_and(|f| f.required == Some(true));
            return match validate::null_error(&self.rules, None, required) {
                Some(message) => Err(message),
                None => Ok(()),
            };
        }
        if self.rules.eq.as_ref().is_some_and(Value::is_null) {
            return Err("value must be null".into());
        }
        let kind = field.map(|f| f.kind);
        if let Some(kind) = kind.filter(|&k| !validate::type_ok(k, value)) {
            return Err(kind.expected().into());
        }
        validate::check_rules(&self.rules, kind, value)
    }
}

/// Which fields a check reads and when Kong runs it (`run_with_missing_fields`,
/// `run_with_invalid_fields`, `required_fields`).
struct Plan<'a> {
    fields: Vec<&'static str>,
    required: &'a [&'static str],
    run_with_missing: bool,
    run_with_invalid: bool,
}

fn plan(check: &EntityCheck) -> Plan<'_> {
    use EntityCheck as C;
    let (fields, required, run_with_missing, run_with_invalid): (_, &[_], _, _) = match check {
        C::AtLeastOneOf(f) => (f.clone(), f, true, true),
        C::OnlyOneOf(f) | C::Distinct(f) => (f.clone(), f, false, true),
        C::MutuallyRequired(f) | C::MutuallyExclusive(f) => (f.clone(), f, true, false),
        C::MutuallyExclusiveSets { set1, set2 } => ([&set1[..], set2].concat(), &[], true, false),
        C::Conditional {
            if_field,
            then_field,
            ..
        } => (
            vec![*if_field, *then_field],
            std::slice::from_ref(if_field),
            false,
            true,
        ),
        C::ConditionalAtLeastOneOf {
            if_field,
            then_at_least_one_of,
            else_then_at_least_one_of,
            ..
        } => (
            [
                &[*if_field][..],
                then_at_least_one_of,
                else_then_at_least_one_of,
            ]
            .concat(),
            &[],
            true,
            true,
        ),
        C::Custom { fields, .. } => (fields.clone(), fields, false, false),
    };
    Plan {
        fields,
        required,
        run_with_missing,
        run_with_invalid,
    }
}

/// Runs `checks` over a filled `record` at relative path `prefix`, as Kong's
/// `run_entity_check` does: skipped when a field it needs is invalid (for most checks), when
/// all its fields are absent, or when a required one is absent (then reported).
pub(super) fn run_all<'f>(
    checks: &[EntityCheck],
    record: &Map<String, Value>,
    prefix: &str,
    lookup: &dyn Fn(&str) -> Option<&'f Field>,
    errs: &mut Errs,
) {
    for check in checks {
        let plan = plan(check);
        let mut missing = Vec::new();
        let mut all_absent = true;
        let mut all_valid = true;
        for name in &plan.fields {
            match get(record, name) {
                None if !plan.run_with_missing && plan.required.contains(name) => {
                    missing.push(*name);
                }
                None => {}
                Some(_) => all_absent = false,
            }
            if errs.has_under(&join(prefix, name)) {
                all_valid = false;
            }
        }
        // Kong cannot check what a vault reference resolves to at load time.
        let skip_ref = plan.fields.iter().any(|name| {
            let is_ref = get(record, name)
                .and_then(Value::as_str)
                .is_some_and(validate::is_reference);
            is_ref && lookup(name).is_some_and(|f| f.referenceable)
        });
        if skip_ref || (!all_valid && !plan.run_with_invalid) {
            continue;
        }
        if all_absent && !plan.run_with_missing {
            continue;
        }
        if !missing.is_empty() {
            for name in missing {
                errs.set(&join(prefix, name), "field required for entity check");
            }
            continue;
        }
        if let Err(message) = evaluate(check, record, prefix, lookup, errs) {
            errs.push(prefix, message);
        }
    }
}

/// The check itself; `Err` is the record-level message.
fn evaluate<'f>(
    check: &EntityCheck,
    record: &Map<String, Value>,
    prefix: &str,
    lookup: &dyn Fn(&str) -> Option<&'f Field>,
    errs: &mut Errs,
) -> Result<(), String> {
    let filled = |name: &&str| non_empty(get(record, name));
    let count = |names: &[&str]| names.iter().filter(|n| filled(n)).count();
    match check {
        EntityCheck::AtLeastOneOf(names) => (count(names) > 0)
            .then_some(())
            .ok_or_else(|| at_least_one_of(names, None)),
        EntityCheck::OnlyOneOf(names) => (count(names) == 1).then_some(()).ok_or_else(|| {
            format!(
                "exactly one of these fields must be non-empty: {}",
                quoted(names)
            )
        }),
        EntityCheck::Distinct(names) => {
            let values: Vec<&Value> = names
                .iter()
                .filter(|n| filled(n))
                .filter_map(|n| get(record, n))
                .filter(|v| !(v.is_array() || v.is_object()))
                .collect();
            let repeated = values
                .iter()
                .enumerate()
                .any(|(i, a)| values[..i].iter().any(|b| validate::lua_eq(a, b)));
            (!repeated).then_some(()).ok_or_else(|| {
                format!("values of these fields must be distinct: {}", quoted(names))
            })
        }
        EntityCheck::MutuallyRequired(names) => {
            let n = count(names);
            (n == 0 || n == names.len()).then_some(()).ok_or_else(|| {
                format!("all or none of these fields must be set: {}", quoted(names))
            })
        }
        EntityCheck::MutuallyExclusive(names) => {
            (count(names) <= 1).then_some(()).ok_or_else(|| {
                format!(
                    "only one or none of these fields must be set: {}",
                    quoted(names)
                )
            })
        }
        EntityCheck::MutuallyExclusiveSets { set1, set2 } => {
            let set: Vec<&str> = set1.iter().copied().filter(|n| filled(n)).collect();
            let other: Vec<&str> = set2.iter().copied().filter(|n| filled(n)).collect();
            if set.is_empty() || other.is_empty() {
                return Ok(());
            }
            Err(format!(
                "these sets are mutually exclusive: ({}), ({})",
                quoted(&set),
                quoted(&other)
            ))
        }
        EntityCheck::Conditional {
            if_field,
            if_match,
            then_field,
            then_match,
            then_err,
        } => {
            let if_value = get(record, if_field).unwrap_or(&Value::Null);
            if if_match.check(if_value, lookup(if_field)).is_err() {
                return Ok(());
            }
            let failed =
                || format!("failed conditional validation given value of field '{if_field}'");
            let then_value = get(record, then_field).unwrap_or(&Value::Null);
            let then_path = join(prefix, then_field);
            if then_match.required && then_value.is_null() {
                errs.set(&then_path, REQUIRED);
                return Err(failed());
            }
            match then_match.check(then_value, lookup(then_field)) {
                Ok(()) => Ok(()),
                Err(message) => {
                    errs.set(&then_path, message);
                    Err(then_err.map_or_else(failed, |e| e.replace("%s", if_field)))
                }
            }
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
            let Some(if_value) = get(record, if_field) else {
                return Ok(());
            };
            let field = lookup(if_field);
            let (names, err) = if if_match.check(if_value, field).is_ok() {
                (then_at_least_one_of, then_err)
            } else {
                match else_match {
                    Some(m) if m.check(if_value, field).is_ok() => {
                        (else_then_at_least_one_of, else_then_err)
                    }
                    _ => return Ok(()),
                }
            };
            (count(names) > 0)
                .then_some(())
                .ok_or_else(|| at_least_one_of(names, *err))
        }
        EntityCheck::Custom { check, .. } => match check(record) {
            Ok(()) => Ok(()),
            Err((Some(field), message)) => {
                errs.push(join(prefix, &field), message);
                Ok(())
            }
            Err((None, message)) => Err(message),
        },
    }
}

fn at_least_one_of(names: &[&str], err: Option<&str>) -> String {
    let list = quoted(names);
    match err {
        Some(err) => err.replace("%s", &list),
        None => format!("at least one of these fields must be non-empty: {list}"),
    }
}

/// Kong's `quoted_list`: `'a', 'b'`.
fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Kong's `is_nonempty`.
fn non_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

/// Kong's `get_field`: a dotted lookup; absent when any step is missing or not a record.
fn get<'v>(record: &'v Map<String, Value>, dotted: &str) -> Option<&'v Value> {
    let mut parts = dotted.split('.');
    let mut current = record.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}
