//! Accounts, keys and instances.

use chrono::{TimeZone, Utc};
use gpdiag_core::{AccessKey, Instance, InstanceMode, Secret};
use gpdiag_store::{Store, StoreError};

fn key(id: &str, account: &str, secret: &str) -> AccessKey {
    AccessKey {
        id: id.into(),
        account: account.into(),
        secret: Secret::new(secret),
        enabled: true,
        created_at: Utc.timestamp_millis_opt(1_700_000_000_000).unwrap(),
    }
}

fn instance(id: &str, account: &str, description: &str) -> Instance {
    Instance {
        id: id.into(),
        account: account.into(),
        region: "cn-hangzhou".into(),
        engine_version: "6.0".into(),
        core_version_text: "mm.v6.3.10.1-202207141918".into(),
        core_version: "6.3.10.1".parse().unwrap(),
        mode: InstanceMode::StorageElastic,
        status: "Running".into(),
        description: description.into(),
        created_at: Utc::now(),
    }
}

pub async fn keys_round_trip(store: &dyn Store) {
    store.ensure_account("alice").await.unwrap();
    store.ensure_account("alice").await.unwrap();
    let g0 = store.keys_generation().await.unwrap();
    store.put_key(&key("K1", "alice", "s1")).await.unwrap();
    let g1 = store.keys_generation().await.unwrap();
    assert!(g1 > g0, "adding a key must change the generation");

    // Same key again: nothing changes. New secret: updated, still enabled.
    store.put_key(&key("K1", "alice", "s1")).await.unwrap();
    assert_eq!(store.keys_generation().await.unwrap(), g1);
    store.set_key_enabled("K1", false).await.unwrap();
    store.put_key(&key("K1", "alice", "s2")).await.unwrap();
    let keys = store.list_keys().await.unwrap();
    let k1: Vec<_> = keys.iter().filter(|k| k.id == "K1").collect();
    assert_eq!(k1.len(), 1);
    assert_eq!(k1[0].secret.expose(), "s2");
    assert!(!k1[0].enabled, "re-putting a key must not re-enable it");

    store.ensure_account("bob").await.unwrap();
    assert!(matches!(
        store.put_key(&key("K1", "bob", "x")).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.put_key(&key("K9", "nobody", "x")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.set_key_enabled("missing", true).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn instances_are_replaced_as_a_set(store: &dyn Store) {
    store.ensure_account("alice").await.unwrap();
    store
        .replace_instances(&[
            instance("gp-a", "alice", "one"),
            instance("gp-b", "alice", "two"),
        ])
        .await
        .unwrap();
    let first = store.list_instances().await.unwrap();
    assert_eq!(
        first.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["gp-a", "gp-b"]
    );

    let mut changed = instance("gp-b", "alice", "changed");
    changed.created_at = Utc::now() + chrono::Duration::days(1);
    store
        .replace_instances(&[changed.clone(), instance("gp-c", "alice", "three")])
        .await
        .unwrap();
    let second = store.list_instances().await.unwrap();
    assert_eq!(
        second.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["gp-b", "gp-c"]
    );
    assert_eq!(second[0].description, "changed");
    assert_eq!(
        second[0].created_at.timestamp_millis(),
        first[1].created_at.timestamp_millis(),
        "the first-seen time survives updates"
    );
    assert_eq!(second[0].core_version_text, "mm.v6.3.10.1-202207141918");
}
