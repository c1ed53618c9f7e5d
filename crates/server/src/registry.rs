//! The in-memory view of keys, instances and download tasks that every request reads, kept in
//! step with the store: requests never touch the database on the hot path.

use gpdiag_core::{AccessKey, DownloadTask, DownloadTaskType, Instance, Secret, TaskStatus};
use gpdiag_store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub account: Arc<str>,
    pub secret: Secret,
    pub enabled: bool,
}

/// One view of everything; its three parts are shared, so a refresh of one copies no other.
#[derive(Debug, Default, Clone)]
struct Snapshot {
    keys: Arc<Keys>,
    instances: Arc<Instances>,
    tasks: Arc<Tasks>,
}

#[derive(Debug, Default)]
struct Keys {
    by_id: HashMap<String, KeyEntry>,
    generation: i64,
}

#[derive(Debug, Default)]
struct Instances {
    by_id: HashMap<String, Arc<Instance>>,
    /// Each account's instances sorted by ID, for listings.
    by_account: HashMap<Arc<str>, Vec<Arc<Instance>>>,
}

#[derive(Debug)]
struct Tasks {
    /// Each instance's download tasks, newest first.
    by_instance: HashMap<String, Vec<Arc<DownloadTask>>>,
    generation: i64,
}

impl Default for Tasks {
    /// Generation -1, so the first refresh always loads.
    fn default() -> Tasks {
        Tasks {
            by_instance: HashMap::new(),
            generation: -1,
        }
    }
}

/// Readers clone an `Arc` under a short read lock; reloads build a new snapshot and swap it in.
#[derive(Default)]
pub struct Registry {
    snapshot: RwLock<Arc<Snapshot>>,
}

impl Registry {
    fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the snapshot with what `f` makes of it, unless `f` says `None`.
    fn swap(&self, f: impl FnOnce(&Snapshot) -> Option<Snapshot>) {
        let mut guard = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
        if let Some(next) = f(&guard) {
            *guard = Arc::new(next);
        }
    }

    pub fn key(&self, id: &str) -> Option<KeyEntry> {
        self.current().keys.by_id.get(id).cloned()
    }

    /// The instance if it exists *and* belongs to `account`: another account's instance is
    /// indistinguishable from a missing one.
    pub fn owned_instance(&self, account: &str, id: &str) -> Option<Arc<Instance>> {
        self.current()
            .instances
            .by_id
            .get(id)
            .filter(|i| i.account == account)
            .cloned()
    }

    pub fn instances_of(&self, account: &str) -> Vec<Arc<Instance>> {
        self.current()
            .instances
            .by_account
            .get(account)
            .cloned()
            .unwrap_or_default()
    }

    /// The instance's tasks of one type, newest first.
    pub fn tasks_of(&self, instance: &str, task_type: DownloadTaskType) -> Vec<Arc<DownloadTask>> {
        self.current()
            .tasks
            .by_instance
            .get(instance)
            .map(|tasks| {
                tasks
                    .iter()
                    .filter(|t| t.task_type == task_type)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many tasks of every instance are in each status.
    pub fn task_counts(&self) -> [(TaskStatus, usize); 3] {
        let mut counts = [
            (TaskStatus::Running, 0),
            (TaskStatus::Finished, 0),
            (TaskStatus::Failed, 0),
        ];
        for task in self.current().tasks.by_instance.values().flatten() {
            if let Some(slot) = counts.iter_mut().find(|(status, _)| *status == task.status) {
                slot.1 += 1;
            }
        }
        counts
    }

    /// Reloads everything from the store.
    pub async fn load(&self, store: &dyn Store) -> Result<(), StoreError> {
        let generation = store.keys_generation().await?;
        let keys = store.list_keys().await?;
        let instances = store.list_instances().await?;
        self.swap(|old| {
            Some(Snapshot {
                keys: Arc::new(index_keys(keys, generation)),
                instances: Arc::new(index_instances(instances)),
                tasks: old.tasks.clone(),
            })
        });
        self.refresh_tasks(store).await?;
        Ok(())
    }

    /// Reloads the tasks if any changed (here or in another process); returns whether it did.
    pub async fn refresh_tasks(&self, store: &dyn Store) -> Result<bool, StoreError> {
        let generation = store.tasks_generation().await?;
        if generation == self.current().tasks.generation {
            return Ok(false);
        }
        let mut tasks: HashMap<String, Vec<Arc<DownloadTask>>> = HashMap::new();
        // `list_tasks` is newest first, and so is each instance's list.
        for task in store.list_tasks().await? {
            tasks
                .entry(task.instance.clone())
                .or_default()
                .push(Arc::new(task));
        }
        // Two refreshes may race (the background loop, an action after its own change): one
        // that read an older generation must not replace what a newer one installed.
        self.swap(|old| {
            (generation > old.tasks.generation).then(|| Snapshot {
                tasks: Arc::new(Tasks {
                    by_instance: tasks,
                    generation,
                }),
                ..old.clone()
            })
        });
        Ok(true)
    }

    /// Brings the running tasks' `rows_done` up to date without reloading every task: workers
    /// report progress with each lease renewal (about every second), which leaves the tasks
    /// generation alone. Returns whether anything changed. Progress read at a generation other
    /// than the view's is dropped: the view is behind, and the next `refresh_tasks` brings the
    /// truth, or a newer refresh has already installed it.
    pub async fn refresh_progress(&self, store: &dyn Store) -> Result<bool, StoreError> {
        let progress = store.running_progress().await?;
        if progress.tasks.is_empty() {
            return Ok(false);
        }
        let rows: HashMap<i64, u64> = progress.tasks.into_iter().collect();
        // Within one generation a task's rows only grow (a claim resets them, and bumps the
        // generation), so a smaller number is a read that an overlapping refresh overtook.
        let newer = |t: &DownloadTask| {
            rows.get(&t.id)
                .copied()
                .filter(|&n| t.status == TaskStatus::Running && n > t.rows_done)
        };
        let mut changed = false;
        self.swap(|old| {
            if old.tasks.generation != progress.generation
                || !old
                    .tasks
                    .by_instance
                    .values()
                    .flatten()
                    .any(|t| newer(t).is_some())
            {
                return None;
            }
            let mut tasks = old.tasks.by_instance.clone();
            for task in tasks.values_mut().flatten() {
                if let Some(n) = newer(task) {
                    // Only the changed tasks are copied; the rest stay shared.
                    Arc::make_mut(task).rows_done = n;
                }
            }
            changed = true;
            Some(Snapshot {
                tasks: Arc::new(Tasks {
                    by_instance: tasks,
                    generation: old.tasks.generation,
                }),
                ..old.clone()
            })
        });
        Ok(changed)
    }

    /// Reloads the keys if another process changed them; returns whether it did.
    pub async fn refresh_keys(&self, store: &dyn Store) -> Result<bool, StoreError> {
        let generation = store.keys_generation().await?;
        if generation == self.current().keys.generation {
            return Ok(false);
        }
        let keys = store.list_keys().await?;
        self.swap(|old| {
            (generation > old.keys.generation).then(|| Snapshot {
                keys: Arc::new(index_keys(keys, generation)),
                ..old.clone()
            })
        });
        Ok(true)
    }
}

fn index_keys(keys: Vec<AccessKey>, generation: i64) -> Keys {
    let by_id = keys
        .into_iter()
        .map(|k| {
            (
                k.id,
                KeyEntry {
                    account: k.account.into(),
                    secret: k.secret,
                    enabled: k.enabled,
                },
            )
        })
        .collect();
    Keys { by_id, generation }
}

fn index_instances(instances: Vec<Instance>) -> Instances {
    let mut by_account: HashMap<Arc<str>, Vec<Arc<Instance>>> = HashMap::new();
    let mut by_id = HashMap::new();
    for instance in instances {
        let instance = Arc::new(instance);
        by_account
            .entry(instance.account.as_str().into())
            .or_default()
            .push(instance.clone());
        by_id.insert(instance.id.clone(), instance);
    }
    for list in by_account.values_mut() {
        list.sort_by(|a, b| a.id.cmp(&b.id));
    }
    Instances { by_id, by_account }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use gpdiag_core::{
        DownloadTaskType, ExportSpec, FileOptions, Lang, NewTask, RecordFilter, RecordOrder,
        TimeWindow,
    };
    use gpdiag_store::SqliteStore;

    fn new_task() -> NewTask {
        let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        NewTask {
            account: "a".into(),
            instance: "gp-1".into(),
            task_type: DownloadTaskType::SqlDiagnose,
            spec: ExportSpec {
                filter: RecordFilter {
                    instance: "gp-1".into(),
                    database: Some("db".into()),
                    window: TimeWindow::new(start, start + chrono::Duration::hours(1)).unwrap(),
                    user: None,
                    keyword: None,
                    condition: None,
                },
                order: RecordOrder::default(),
                file: FileOptions {
                    lang: Lang::En,
                    bom: false,
                    gzip: false,
                },
            },
            created_at: start,
        }
    }

    /// Two refreshes can race; whichever installs last, the registry never goes back to an
    /// older generation of the tasks (an older store stands in for the slower refresh).
    #[tokio::test]
    async fn a_refresh_from_an_older_generation_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let newer = SqliteStore::open(dir.path().join("a.db").to_str().unwrap())
            .await
            .unwrap();
        let older = SqliteStore::open(dir.path().join("b.db").to_str().unwrap())
            .await
            .unwrap();
        for _ in 0..3 {
            newer.create_task(&new_task(), 10).await.unwrap();
        }
        older.create_task(&new_task(), 10).await.unwrap();
        assert!(newer.tasks_generation().await.unwrap() > older.tasks_generation().await.unwrap());

        let registry = Registry::default();
        assert!(registry.refresh_tasks(&newer).await.unwrap());
        assert_eq!(
            registry
                .tasks_of("gp-1", DownloadTaskType::SqlDiagnose)
                .len(),
            3
        );
        registry.refresh_tasks(&older).await.unwrap();
        assert_eq!(
            registry
                .tasks_of("gp-1", DownloadTaskType::SqlDiagnose)
                .len(),
            3,
            "an older view replaced a newer one"
        );
    }

    /// Renewals leave the generation alone, so `refresh_tasks` skips them; `refresh_progress`
    /// copies the new `rows_done` into the view, copying only the tasks that changed, and only
    /// onto a view of the generation it read.
    #[tokio::test]
    async fn progress_reaches_the_view_without_a_reload_and_only_at_its_generation() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("p.db").to_str().unwrap())
            .await
            .unwrap();
        let lease = chrono::Duration::minutes(5);
        let now = Utc::now();
        let mut ids = Vec::new();
        for _ in 0..2 {
            store.create_task(&new_task(), 10).await.unwrap();
            ids.push(store.claim_task("w", now, lease).await.unwrap().unwrap().id);
        }
        let registry = Registry::default();
        assert!(registry.refresh_tasks(&store).await.unwrap());
        let view = || registry.tasks_of("gp-1", DownloadTaskType::SqlDiagnose);
        let rows = |id: i64| view().iter().find(|t| t.id == id).unwrap().rows_done;
        let before = view();
        assert!(!registry.refresh_progress(&store).await.unwrap());

        assert!(store
            .renew_task(ids[0], "w", now, lease, 700)
            .await
            .unwrap());
        assert!(!registry.refresh_tasks(&store).await.unwrap());
        assert_eq!(rows(ids[0]), 0);
        assert!(registry.refresh_progress(&store).await.unwrap());
        assert_eq!((rows(ids[0]), rows(ids[1])), (700, 0));
        let after = view();
        let same = |id: i64| {
            let find = |v: &[Arc<DownloadTask>]| v.iter().find(|t| t.id == id).unwrap().clone();
            Arc::ptr_eq(&find(&before), &find(&after))
        };
        assert!(
            !same(ids[0]) && same(ids[1]),
            "only the changed task is copied"
        );
        assert!(!registry.refresh_progress(&store).await.unwrap());

        // The store moves to a newer generation: its progress waits for the reload.
        assert!(store
            .fail_task(ids[0], None, "canceled", now)
            .await
            .unwrap());
        assert!(store.renew_task(ids[1], "w", now, lease, 50).await.unwrap());
        assert!(!registry.refresh_progress(&store).await.unwrap());
        assert_eq!(rows(ids[1]), 0);
        assert!(registry.refresh_tasks(&store).await.unwrap());
        assert_eq!((rows(ids[0]), rows(ids[1])), (700, 50));

        // An older store stands in for progress read before the view's generation.
        let older = SqliteStore::open(dir.path().join("o.db").to_str().unwrap())
            .await
            .unwrap();
        for _ in 0..2 {
            older.create_task(&new_task(), 10).await.unwrap();
            older.claim_task("w", now, lease).await.unwrap().unwrap();
        }
        assert!(older
            .renew_task(ids[1], "w", now, lease, 9999)
            .await
            .unwrap());
        assert!(older.tasks_generation().await.unwrap() < store.tasks_generation().await.unwrap());
        assert!(!registry.refresh_progress(&older).await.unwrap());
        assert_eq!(rows(ids[1]), 50, "older progress replaced a newer view");
    }
}
