//! The generic entity endpoints, as `kong/api/endpoints.lua` generates them for every kind:
//! collections, entities, an entity's foreign entity, and a parent's children.

use axum::http::Method;
use axum::response::Response;
use gangway_config::dao::{DaoError, Foreign, Kind, kind_named};
use gangway_config::store::{Address, ConfigStore, Page, PageQuery, TagFilter};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::paths::Endpoint;
use crate::reply;

/// The query arguments of a list request.
#[derive(Debug, Default)]
pub struct ListArgs {
    /// `size`, as given.
    pub size: Option<String>,
    /// `offset`.
    pub offset: Option<String>,
    /// `tags`, as given.
    pub tags: Option<String>,
    /// `custom_id` (consumers only).
    pub custom_id: Option<String>,
}

impl ListArgs {
    /// Reads the arguments from a raw query string; later repeats win, as Kong's first value
    /// of a repeated argument would be an array it then reads the first of.
    pub fn parse(query: Option<&str>) -> ListArgs {
        let mut args = ListArgs::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match &*k {
                "size" => &mut args.size,
                "offset" => &mut args.offset,
                "tags" => &mut args.tags,
                "custom_id" => &mut args.custom_id,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v.into_owned());
            }
        }
        args
    }

    /// Kong's page options, or the DAO error for a bad size or tag filter.
    pub(crate) fn query(&self) -> Result<PageQuery, DaoError> {
        let size = match &self.size {
            None => 100,
            Some(text) => {
                let n: f64 = text
                    .trim()
                    .parse()
                    .map_err(|_| DaoError::invalid_size("size must be a number"))?;
                if n.fract() != 0.0 || !(1.0..=1000.0).contains(&n) {
                    return Err(DaoError::invalid_size(
                        "size must be an integer between 1 and 1000",
                    ));
                }
                n as usize
            }
        };
        Ok(PageQuery {
            size,
            offset: self.offset.clone(),
            tags: self.tags.as_deref().map(tag_filter).transpose()?,
            ..PageQuery::default()
        })
    }
}

/// Kong's tag filter syntax: `a,b` (all) or `a/b` (any), at most 5 tags of printable ASCII
/// but `,` and `/`, or UTF-8.
fn tag_filter(text: &str) -> Result<TagFilter, DaoError> {
    if text.is_empty() {
        return Err(DaoError::invalid_option("tags", "cannot be null"));
    }
    let tag_char =
        |c: char| !c.is_ascii() || (c.is_ascii_graphic() || c == ' ') && c != ',' && c != '/';
    let split = |sep: char| -> Option<Vec<String>> {
        let parts: Vec<&str> = text.strip_suffix(sep).unwrap_or(text).split(sep).collect();
        parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(tag_char))
            .then(|| parts.iter().map(|p| (*p).to_owned()).collect())
    };
    let filter = if let Some(all) = split(',') {
        TagFilter::All(all)
    } else if let Some(any) = split('/') {
        TagFilter::Any(any)
    } else {
        return Err(DaoError::invalid_option("tags", "invalid filter syntax"));
    };
    let count = match &filter {
        TagFilter::All(t) | TagFilter::Any(t) => t.len(),
    };
    if count > 5 {
        return Err(DaoError::invalid_option(
            "tags",
            "cannot query more than 5 tags",
        ));
    }
    Ok(filter)
}

/// What a request to an entity endpoint carries.
pub struct Call<'a> {
    /// The method (HEAD is answered as GET).
    pub method: &'a Method,
    /// List arguments (GET on collections).
    pub args: ListArgs,
    /// The decoded body (POST, PUT, PATCH); `{}` when there was none.
    pub body: Value,
}

/// Runs an entity endpoint against `store`.
pub async fn handle(store: &dyn ConfigStore, endpoint: &Endpoint, call: Call<'_>) -> Response {
    let result = match endpoint {
        Endpoint::Collection(kind) => collection(store, kind, call).await,
        Endpoint::Entity(kind, key) => entity(store, kind, &Address::parse(key), call).await,
        Endpoint::Foreign(kind, key, fk) => foreign(store, kind, key, fk, call).await,
        Endpoint::Children {
            parent,
            key,
            child,
            fk,
        } => children(store, parent, key, child, fk, call).await,
        Endpoint::Child {
            parent,
            key,
            child,
            fk,
            child_key,
        } => one_child(store, parent, key, child, fk, child_key, call).await,
        _ => return reply::not_found(),
    };
    result.unwrap_or_else(|e| reply::dao_error(&e))
}

type Answer = Result<Response, DaoError>;

/// `GET /tags[/{tag}]`.
pub async fn tags(store: &dyn ConfigStore, tag: Option<&str>, query: Option<&str>) -> Response {
    let args = ListArgs::parse(query);
    let result = async {
        let mut page_query = args.query()?;
        page_query.tags = None;
        let page = store.tags(tag, &page_query).await?;
        let next = page.offset.as_ref().map(|offset| match tag {
            Some(t) => format!("/tags/{}?offset={}", escape(t), escape(offset)),
            None => format!("/tags?offset={}", escape(offset)),
        });
        Ok::<_, DaoError>(reply::json(200, &list_body(page, next)))
    };
    result.await.unwrap_or_else(|e| reply::dao_error(&e))
}

/// Kong's `{"data": [...], "next": ..., "offset": ...}` for a page.
pub(crate) fn list_body(page: Page, next: Option<String>) -> Value {
    let mut body = json!({ "data": page.data, "next": next });
    if let Some(offset) = page.offset {
        body["offset"] = json!(offset);
    }
    body
}

/// `text` escaped for a query string.
pub(crate) fn escape(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn collection(store: &dyn ConfigStore, kind: &'static Kind, call: Call<'_>) -> Answer {
    if *call.method == Method::POST {
        let created = store.insert(kind, call.body).await?;
        return Ok(reply::json(201, &created));
    }
    if kind.name == "consumers" {
        if let Some(custom_id) = &call.args.custom_id {
            // Kong's `/consumers?custom_id=`: a lookup, not a page.
            if custom_id.is_empty() {
                return Ok(reply::message(400, "custom_id must be an unempty string"));
            }
            let query = PageQuery {
                size: 1,
                custom_id: Some(custom_id.clone()),
                ..PageQuery::default()
            };
            let page = store.page(kind, &query).await?;
            return Ok(reply::json(200, &json!({"data": page.data, "next": null})));
        }
    }
    let query = call.args.query()?;
    let page = store.page(kind, &query).await?;
    let next = page
        .offset
        .as_ref()
        .map(|offset| next_link(&format!("/{}", kind.admin_name), offset, &call.args));
    Ok(reply::json(200, &list_body(page, next)))
}

/// The `next` of a page of `path`: the offset, and the `tags` and `size` the request gave.
fn next_link(path: &str, offset: &str, args: &ListArgs) -> String {
    let mut next = format!("{path}?offset={}", escape(offset));
    if let Some(tags) = &args.tags {
        next.push_str(&format!("&tags={}", escape(tags)));
    }
    if let Some(size) = &args.size {
        next.push_str(&format!("&size={}", escape(size)));
    }
    next
}

async fn entity(
    store: &dyn ConfigStore,
    kind: &'static Kind,
    at: &Address,
    call: Call<'_>,
) -> Answer {
    // Kinds without an endpoint key are reached by id only (certificates also by SNI).
    if let Address::Key(key) = at {
        if kind.endpoint_key.is_none() && kind.name != "certificates" {
            return Err(DaoError::invalid_primary_key(key));
        }
    }
    match *call.method {
        Method::PUT => Ok(reply::json(200, &store.upsert(kind, at, call.body).await?)),
        Method::PATCH => match store.update(kind, at, call.body).await? {
            Some(updated) => Ok(reply::json(200, &updated)),
            None => Ok(reply::not_found()),
        },
        Method::DELETE => {
            store.delete(kind, at).await?;
            Ok(reply::empty(204))
        }
        _ => match store.select(kind, at).await? {
            Some(found) => Ok(reply::json(200, &found)),
            None => Ok(reply::not_found()),
        },
    }
}

/// The id in a rendered foreign key (`{"id": "<uuid>"}`), if set.
fn foreign_id(entity: &Value, field: &str) -> Option<Uuid> {
    entity[field]["id"].as_str().and_then(|s| s.parse().ok())
}

fn entity_id(entity: &Value) -> Option<Uuid> {
    entity["id"].as_str().and_then(|s| s.parse().ok())
}

/// `/{kind}/{key}/{field}`: acts on the entity the foreign key points at.
async fn foreign(
    store: &dyn ConfigStore,
    kind: &'static Kind,
    key: &str,
    fk: &'static Foreign,
    call: Call<'_>,
) -> Answer {
    let Some(parent_kind) = kind_named(fk.kind) else {
        return Ok(reply::not_found());
    };
    let Some(owner) = store.select(kind, &Address::parse(key)).await? else {
        return Ok(reply::not_found());
    };
    let target = foreign_id(&owner, fk.field);
    match (call.method, target) {
        (&Method::PUT, None) => {
            // Kong creates the parent and links the owner to it.
            let id = Address::Id(Uuid::new_v4());
            let parent = store.upsert(parent_kind, &id, call.body).await?;
            let owner_at = Address::parse(key);
            let link = json!({ fk.field: {"id": parent["id"]} });
            store.update(kind, &owner_at, link).await?;
            Ok(reply::json(200, &parent))
        }
        (_, None) => Ok(reply::not_found()),
        (&Method::DELETE, Some(_)) => Ok(reply::method_not_allowed()),
        (_, Some(id)) => entity(store, parent_kind, &Address::Id(id), call).await,
    }
}

/// The id of the parent at `key`, if there is one.
async fn owner_id(
    store: &dyn ConfigStore,
    parent: &'static Kind,
    key: &str,
) -> Result<Option<Uuid>, DaoError> {
    let owner = store.select(parent, &Address::parse(key)).await?;
    Ok(owner.as_ref().and_then(entity_id))
}

/// `/{parent}/{key}/{child}`: the children of one parent.
async fn children(
    store: &dyn ConfigStore,
    parent: &'static Kind,
    key: &str,
    child: &'static Kind,
    fk: &'static Foreign,
    call: Call<'_>,
) -> Answer {
    let Some(owner_id) = owner_id(store, parent, key).await? else {
        return Ok(reply::not_found());
    };
    if *call.method == Method::POST {
        let mut body = call.body;
        if let Value::Object(fields) = &mut body {
            fields.insert(fk.field.to_owned(), json!({ "id": owner_id }));
        }
        let created = store.insert(child, body).await?;
        return Ok(reply::json(201, &created));
    }
    let mut query = call.args.query()?;
    query.parent = Some((fk.field, owner_id));
    let page = store.page(child, &query).await?;
    // The parent's key as a path segment: percent-escaped, a space as %20 (not '+').
    let segment = percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC);
    let path = format!("/{}/{segment}/{}", parent.admin_name, child.nested_name);
    let next = page
        .offset
        .as_ref()
        .map(|offset| next_link(&path, offset, &call.args));
    Ok(reply::json(200, &list_body(page, next)))
}

/// The field a child is named by in a nested path: its endpoint key, or for an ACL
/// membership its group (Kong's acl API).
fn child_key_field(child: &Kind) -> Option<&'static str> {
    match child.name {
        "acls" => Some("group"),
        _ => child.endpoint_key,
    }
}

/// `/{parent}/{key}/{child}/{child_key}`: one child, which must belong to the parent.
async fn one_child(
    store: &dyn ConfigStore,
    parent: &'static Kind,
    key: &str,
    child: &'static Kind,
    fk: &'static Foreign,
    child_key: &str,
    mut call: Call<'_>,
) -> Answer {
    if child.name == "targets" {
        // Kong's `/targets/all` lists them all, as `/targets` does here (gangway keeps no
        // replaced targets to add); a target PUT updates, as PATCH, and creates nothing.
        if child_key == "all" && *call.method == Method::GET {
            return children(store, parent, key, child, fk, call).await;
        }
        if *call.method == Method::PUT {
            call.method = &Method::PATCH;
        }
    }
    let Some(owner_id) = owner_id(store, parent, key).await? else {
        return Ok(reply::not_found());
    };
    // A PUT by key replaces the child with that key, as Kong's `upsert_by_<key>`: a body
    // without it used to replace the key (a key-auth got a random one) or drop the name.
    let url_key = match (Address::parse(child_key), child_key_field(child)) {
        (Address::Key(key), Some(field)) if *call.method == Method::PUT => Some((field, key)),
        _ => None,
    };
    if let (Some((field, key)), Value::Object(fields)) = (&url_key, &mut call.body) {
        fields.insert((*field).into(), json!(key));
    }
    let at = match find_child(store, child, fk, owner_id, child_key).await? {
        Some(found) => match entity_id(&found) {
            Some(id) => Address::Id(id),
            None => return Ok(reply::not_found()),
        },
        // PUT may create the child under this parent; an ACL membership named by its group
        // (Kong's acl API), a key unique only under a parent, gets a new id and that key.
        None if *call.method == Method::PUT => match Address::parse(child_key) {
            Address::Key(_) if child.name == "acls" => Address::Id(Uuid::new_v4()),
            // Another parent's child (a key or id it holds) moves here: Kong's nested PUT
            // upserts with the URL's parent as its foreign key.
            at => at,
        },
        None => return Ok(reply::not_found()),
    };
    if matches!(*call.method, Method::PUT | Method::PATCH) {
        if let Value::Object(fields) = &mut call.body {
            fields.insert(fk.field.to_owned(), json!({ "id": owner_id }));
        }
    }
    entity(store, child, &at, call).await
}

/// The child at `child_key` if it belongs to `owner_id`. Keys unique only under their
/// parent are looked up among the parent's children: ACL memberships by group name
/// (`/consumers/{c}/acls/{group}`, Kong's acl API) and targets by `host:port`, which two
/// upstreams may share.
async fn find_child(
    store: &dyn ConfigStore,
    child: &'static Kind,
    fk: &'static Foreign,
    owner_id: Uuid,
    child_key: &str,
) -> Result<Option<Value>, DaoError> {
    let at = Address::parse(child_key);
    let field_under_parent = match child.name {
        "acls" => Some("group"),
        "targets" => Some("target"),
        _ => None,
    };
    if let (Some(field), Address::Key(_)) = (field_under_parent, &at) {
        let mut query = PageQuery {
            size: 1000,
            parent: Some((fk.field, owner_id)),
            ..PageQuery::default()
        };
        loop {
            let page = store.page(child, &query).await?;
            if let Some(found) = page.data.into_iter().find(|c| c[field] == child_key) {
                return Ok(Some(found));
            }
            match page.offset {
                Some(next) => query.offset = Some(next),
                None => return Ok(None),
            }
        }
    }
    let found = store.select(child, &at).await?;
    Ok(found.filter(|c| foreign_id(c, fk.field) == Some(owner_id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_tags_are_checked_as_kong_does() {
        let args = |q: &str| ListArgs::parse(Some(q)).query();
        assert_eq!(args("").map(|q| q.size), Ok(100));
        assert_eq!(args("size=1000").map(|q| q.size), Ok(1000));
        assert_eq!(
            args("size=abc").map(|q| q.size),
            Err(DaoError::invalid_size("size must be a number"))
        );
        for bad in ["size=0", "size=1001", "size=1.5"] {
            assert_eq!(
                args(bad).map(|q| q.size),
                Err(DaoError::invalid_size(
                    "size must be an integer between 1 and 1000"
                )),
                "{bad}"
            );
        }
        assert_eq!(
            args("tags=a,b").map(|q| q.tags),
            Ok(Some(TagFilter::All(vec!["a".into(), "b".into()])))
        );
        assert_eq!(
            args("tags=a/b").map(|q| q.tags),
            Ok(Some(TagFilter::Any(vec!["a".into(), "b".into()])))
        );
        assert_eq!(
            args("tags=").map(|q| q.tags),
            Err(DaoError::invalid_option("tags", "cannot be null"))
        );
        assert_eq!(
            args("tags=a,b/c").map(|q| q.tags),
            Err(DaoError::invalid_option("tags", "invalid filter syntax"))
        );
        assert_eq!(
            args("tags=1,2,3,4,5,6").map(|q| q.tags),
            Err(DaoError::invalid_option(
                "tags",
                "cannot query more than 5 tags"
            ))
        );
    }
}
