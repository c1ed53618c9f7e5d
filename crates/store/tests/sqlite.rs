//! The SQLite store against the conformance suite, plus what is specific to a file.

mod conformance;

use gpdiag_store::{SqliteStore, Store};

#[tokio::test]
async fn sqlite_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("c.db").to_str().unwrap())
        .await
        .unwrap();
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn sqlite_state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/g.db");
    let path = path.to_str().unwrap();
    {
        let store = SqliteStore::open(path).await.unwrap();
        store.ensure_account("alice").await.unwrap();
    }
    let store = SqliteStore::open(path).await.unwrap();
    store.ensure_account("alice").await.unwrap();
    assert!(store.list_keys().await.unwrap().is_empty());
}
