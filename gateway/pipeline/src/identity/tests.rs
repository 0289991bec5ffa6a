//! The index and writes on top of it.

use super::*;
use gangway_config::model::Acl;
use gangway_config::model::ForeignKey;

fn consumer(n: u128, name: &str) -> Consumer {
    Consumer {
        id: Id::from_u128(n),
        username: Some(name.into()),
        custom_id: None,
        tags: None,
        created_at: 0,
        updated_at: 0,
    }
}

fn cred(n: u128, owner: u128, key: &str, expires_at: Option<i64>) -> KeyauthCredential {
    KeyauthCredential {
        id: Id::from_u128(n),
        consumer: ForeignKey::from(Id::from_u128(owner)),
        key: key.into(),
        expires_at: expires_at.and_then(std::num::NonZeroI64::new),
        tags: None,
        created_at: 0,
    }
}

fn acl(n: u128, owner: u128, group: &str) -> Acl {
    Acl {
        id: Id::from_u128(n),
        consumer: ForeignKey::from(Id::from_u128(owner)),
        group: group.into(),
        tags: None,
        created_at: 0,
    }
}

#[test]
fn keys_consumers_and_groups_resolve() {
    let ids = Identities::build(
        vec![consumer(1, "alice"), consumer(2, "bob")],
        vec![cred(10, 2, "bobkey", None), cred(11, 1, "old", Some(100))],
        vec![acl(20, 2, "b1"), acl(21, 1, "a1"), acl(22, 2, "b2")],
    );
    assert_eq!(ids.find_key(b"bobkey", 50), KeyLookup::Found(0, 1));
    assert_eq!(ids.find_key(b"bobke", 50), KeyLookup::Unknown);
    assert_eq!(ids.find_key(b"old", 99), KeyLookup::Found(1, 0));
    assert_eq!(ids.find_key(b"old", 100), KeyLookup::Expired);
    assert_eq!(ids.consumer_by_username("alice"), Some(0));
    assert_eq!(
        ids.consumer_by_id_or_username(&Id::from_u128(2).to_string()),
        Some(1)
    );
    assert_eq!(ids.consumer_by_id_or_username("nobody"), None);
    assert_eq!(ids.groups(1).collect::<Vec<_>>(), vec!["b1", "b2"]);
    assert_eq!(ids.groups(0).collect::<Vec<_>>(), vec!["a1"]);
}

#[test]
fn writes_add_and_remove_keys_without_touching_the_index() {
    let before = Identities::build(
        vec![consumer(1, "alice")],
        vec![cred(10, 1, "alice-key", None)],
        vec![acl(20, 1, "a1")],
    );
    let after = before
        .with_consumer(consumer(2, "bob"))
        .and_then(|ids| ids.with_credential(cred(11, 2, "bob-key", None)))
        .and_then(|ids| ids.with_acl(acl(21, 2, "b1")))
        .and_then(|ids| ids.with_acl(acl(22, 1, "a2")))
        .expect("valid writes");
    assert!(
        Arc::ptr_eq(&before.base, &after.base),
        "the index is shared"
    );
    assert_eq!(after.pending_writes(), 4);
    assert_eq!(before.find_key(b"bob-key", 0), KeyLookup::Unknown);
    let KeyLookup::Found(cred_ref, bob) = after.find_key(b"bob-key", 0) else {
        panic!("bob's new key authenticates");
    };
    assert_eq!(after.consumer(bob).username.as_deref(), Some("bob"));
    assert_eq!(after.credential(cred_ref).id, Id::from_u128(11));
    assert_eq!(after.consumer_by_username("bob"), Some(bob));
    assert_eq!(after.groups(bob).collect::<Vec<_>>(), ["b1"]);
    assert_eq!(after.groups(0).collect::<Vec<_>>(), ["a1", "a2"]);

    let removed = after
        .without_credential(Id::from_u128(10))
        .expect("alice's key exists");
    assert_eq!(removed.find_key(b"alice-key", 0), KeyLookup::Unknown);
    assert!(matches!(
        after.find_key(b"alice-key", 0),
        KeyLookup::Found(..)
    ));
    // A removed key's value is free again.
    let reused = removed
        .with_credential(cred(12, 2, "alice-key", None))
        .expect("the value is free");
    assert!(matches!(reused.find_key(b"alice-key", 0), KeyLookup::Found(_, c) if c == bob));

    // Compaction gives the same answers from a fresh index.
    let compact = reused.compact();
    assert_eq!(compact.pending_writes(), 0);
    assert!(
        matches!(compact.find_key(b"alice-key", 0), KeyLookup::Found(_, c)
        if compact.consumer(c).username.as_deref() == Some("bob"))
    );
    assert!(matches!(
        compact.find_key(b"bob-key", 0),
        KeyLookup::Found(..)
    ));
    let alice = compact.consumer_by_username("alice").expect("alice");
    assert_eq!(compact.groups(alice).collect::<Vec<_>>(), ["a1", "a2"]);
}

#[test]
fn writes_are_refused_with_kongs_messages() {
    let ids = Identities::build(
        vec![consumer(1, "alice")],
        vec![cred(10, 1, "taken", Some(5))],
        vec![],
    );
    let err = ids
        .with_credential(cred(11, 1, "taken", None))
        .expect_err("an expired key still holds its value");
    assert_eq!(
        err.to_string(),
        "UNIQUE violation detected on '{key=\"taken\"}'"
    );
    let err = ids
        .with_credential(cred(11, 9, "fresh", None))
        .expect_err("no such consumer");
    assert_eq!(
        err.to_string(),
        format!(
            "the foreign key '{{id=\"{}\"}}' does not reference an existing 'consumers' entity.",
            Id::from_u128(9)
        )
    );
    assert!(matches!(
        ids.with_consumer(consumer(2, "alice")),
        Err(IdentityError::Unique {
            field: "username",
            ..
        })
    ));
    assert!(matches!(
        ids.without_credential(Id::from_u128(99)),
        Err(IdentityError::NotFound(_))
    ));
    assert!(matches!(
        ids.with_acl(Acl {
            id: Id::from_u128(30),
            consumer: ForeignKey::from(Id::from_u128(9)),
            group: "g".into(),
            tags: None,
            created_at: 0,
        }),
        Err(IdentityError::UnknownConsumer(_))
    ));
}

#[test]
fn a_key_added_then_removed_stops_authenticating() {
    // Regression: a removed key that had been added since the build was still found, since
    // only the index's keys were checked against the removals.
    let ids = Identities::build(vec![consumer(1, "alice")], Vec::new(), Vec::new())
        .with_credential(cred(10, 1, "added", None))
        .and_then(|ids| ids.without_credential(Id::from_u128(10)))
        .expect("valid writes");
    assert_eq!(ids.find_key(b"added", 0), KeyLookup::Unknown);
    assert_eq!(ids.credentials().count(), 0);
    // And the value can be taken again, by anyone.
    let again = ids
        .with_credential(cred(11, 1, "added", None))
        .expect("free");
    assert!(
        matches!(again.find_key(b"added", 0), KeyLookup::Found(r, 0) if again.credential(r).id == Id::from_u128(11))
    );
}

#[test]
fn a_consumer_changed_in_place_keeps_its_keys_and_groups() {
    let ids = Identities::build(
        vec![consumer(1, "alice"), consumer(2, "bob")],
        vec![cred(10, 1, "alice-key", None)],
        vec![acl(20, 1, "gold")],
    );
    let mut renamed = consumer(1, "alicia");
    renamed.custom_id = Some("c-1".into());
    let ids = ids.upsert_consumer(renamed).expect("rename");
    assert_eq!(
        ids.consumer_by_username("alice"),
        None,
        "the old name is gone"
    );
    let alicia = ids.consumer_by_username("alicia").expect("the new name");
    assert_eq!(ids.consumer(alicia).custom_id.as_deref(), Some("c-1"));
    assert_eq!(ids.find_key(b"alice-key", 0), KeyLookup::Found(0, alicia));
    assert_eq!(ids.groups(alicia).collect::<Vec<_>>(), ["gold"]);
    assert_eq!(
        ids.upsert_consumer(consumer(1, "bob")).err(),
        Some(IdentityError::Unique {
            field: "username",
            value: "bob".into()
        })
    );
    assert_eq!(ids.consumers().count(), 2);
}

#[test]
fn a_consumer_s_log_row_is_kept_until_a_write_replaces_the_consumer() {
    let ids = Identities::build(vec![consumer(1, "alice")], vec![], vec![]);
    let row = |c: &Consumer| {
        c.username
            .as_deref()
            .unwrap_or_default()
            .as_bytes()
            .to_vec()
    };
    let first = ids.consumer_log_row(0, row);
    assert_eq!(&*first, b"alice");
    let again = ids.consumer_log_row(0, |_| b"rebuilt".to_vec());
    assert!(std::sync::Arc::ptr_eq(&first, &again), "kept");
    let renamed = ids.upsert_consumer(consumer(1, "alicia")).expect("rename");
    assert_eq!(&*renamed.consumer_log_row(0, row), b"alicia");
    let added = ids.with_consumer(consumer(2, "bob")).expect("add");
    let bob = added.consumer_by_username("bob").expect("bob");
    assert_eq!(&*added.consumer_log_row(bob, row), b"bob");
}

#[test]
fn a_removed_consumer_loses_its_keys_and_a_removed_acl_its_group() {
    let ids = Identities::build(
        vec![consumer(1, "alice"), consumer(2, "bob")],
        vec![cred(10, 1, "alice-key", None)],
        vec![acl(20, 1, "gold"), acl(21, 1, "silver")],
    );
    let without_acl = ids.without_acl(Id::from_u128(20)).expect("acl exists");
    assert_eq!(without_acl.groups(0).collect::<Vec<_>>(), ["silver"]);
    assert_eq!(without_acl.acls().count(), 1);
    let replaced = without_acl
        .upsert_acl(acl(21, 1, "platinum"))
        .expect("replace");
    assert_eq!(replaced.groups(0).collect::<Vec<_>>(), ["platinum"]);

    let gone = ids
        .without_consumer(Id::from_u128(1))
        .expect("alice exists");
    assert_eq!(gone.consumer_by_id(Id::from_u128(1)), None);
    assert_eq!(gone.consumer_by_username("alice"), None);
    assert_eq!(gone.find_key(b"alice-key", 0), KeyLookup::Unknown);
    assert_eq!(gone.consumers().count(), 1);
    let compacted = gone.compact();
    assert_eq!(compacted.pending_writes(), 0);
    assert_eq!(compacted.consumers().count(), 1);
    assert_eq!(compacted.consumer_by_username("bob"), Some(0));
}
