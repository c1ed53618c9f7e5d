//! The worker: one `run_next` step claims and runs one task; `run` loops it on several
//! workers until shutdown. Leases are renewed while a task runs, about every second, each
//! renewal also recording the rows written so far (gpdiag's `RowsDone`), so a crashed worker's
//! task is taken over, a canceled task stops within a second or so, and the API shows a running
//! export's progress.

use crate::csv_file::CsvEncoder;
use bytes::Bytes;
use chrono::Duration;
use gpdiag_core::export::object_key;
use gpdiag_core::{Clock, DownloadTask};
use gpdiag_objects::{Objects, ObjectsError};
use gpdiag_store::{Store, StoreError};
use std::sync::Arc;
use tokio::sync::{watch, Notify};

#[derive(Debug, Clone)]
pub struct ExportSettings {
    /// Tasks run at once by this process; 0 for a node that only answers the API.
    pub workers: usize,
    /// Attempts before a task that keeps being interrupted is failed.
    pub max_attempts: u32,
    /// How long a claim holds without renewal; a crashed worker's task waits this long.
    pub lease: Duration,
    /// How often a running task renews its lease and reports its progress (`RowsDone`): one
    /// small store write each time, checked between batches, never per row. Every second by
    /// default, so `DescribeDownloadRecords` (whose view refreshes every second) shows a running
    /// export's rows within about two seconds.
    pub heartbeat: std::time::Duration,
    /// How often an idle worker looks for work.
    pub poll: std::time::Duration,
    /// Bytes encoded before they are handed to the upload, which collects them into parts of
    /// `gpdiag_objects::PART_SIZE` itself (S3 needs at least 5 MiB per part). Small on
    /// purpose: 8 MiB buffers, freed on the upload's threads, left glibc holding tens of MiB
    /// more resident memory (5M rows: peak RSS 108 MiB at 8 MiB, 52 MiB at 1 MiB).
    pub part_size: usize,
    /// Records per batch read from the store.
    pub batch: usize,
    /// A pause after each batch, so an export goes easier on the store (and tests can make one
    /// last a while); none by default.
    pub batch_pause: Option<std::time::Duration>,
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            workers: 2,
            max_attempts: 3,
            lease: Duration::seconds(30),
            heartbeat: std::time::Duration::from_secs(1),
            poll: std::time::Duration::from_millis(500),
            part_size: 1024 * 1024,
            batch: 1000,
            batch_pause: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Nothing to do.
    Idle,
    Finished {
        id: i64,
        rows: u64,
    },
    Failed {
        id: i64,
    },
    /// The task stopped being ours (canceled, or taken over after a lost lease).
    Stopped {
        id: i64,
    },
}

pub struct Exporter {
    store: Arc<dyn Store>,
    objects: Objects,
    clock: Arc<dyn Clock>,
    worker_id: String,
    settings: ExportSettings,
    /// Signalled when a task is created here, so an idle worker starts at once, not at its
    /// next poll.
    wake: Arc<Notify>,
    /// Signalled when a task this process ran ended, so the API's view can refresh at once.
    ended: Arc<Notify>,
}

/// Why a task did not finish, as the user will read it: plain sentences, no internals.
enum Failure {
    /// Tell the user this.
    Say(String),
    /// The task is no longer ours; say nothing.
    Stopped,
}

impl Exporter {
    pub fn new(
        store: Arc<dyn Store>,
        objects: Objects,
        clock: Arc<dyn Clock>,
        worker_id: String,
        settings: ExportSettings,
    ) -> Self {
        Self {
            store,
            objects,
            clock,
            worker_id,
            settings,
            wake: Arc::new(Notify::new()),
            ended: Arc::new(Notify::new()),
        }
    }

    /// Notify this after creating a task, so an idle worker starts at once.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Notified whenever a task this process ran ended.
    pub fn ended(&self) -> Arc<Notify> {
        self.ended.clone()
    }

    /// Claims one task and runs it to its end.
    pub async fn run_next(&self) -> Result<RunOutcome, StoreError> {
        let outcome = self.claim_and_run().await;
        if matches!(outcome, Ok(ref o) if *o != RunOutcome::Idle) {
            self.ended.notify_one();
        }
        outcome
    }

    async fn claim_and_run(&self) -> Result<RunOutcome, StoreError> {
        let now = self.clock.now();
        let Some(task) = self
            .store
            .claim_task(&self.worker_id, now, self.settings.lease)
            .await?
        else {
            return Ok(RunOutcome::Idle);
        };
        let id = task.id;
        if task.attempts > self.settings.max_attempts {
            let message = format!(
                "The export was interrupted {} times while the file was being written, so it was abandoned. Start it again.",
                task.attempts - 1
            );
            self.store
                .fail_task(id, Some(&self.worker_id), &message, self.clock.now())
                .await?;
            tracing::warn!(task = id, attempts = task.attempts, "export abandoned");
            return Ok(RunOutcome::Failed { id });
        }
        tracing::info!(task = id, attempt = task.attempts, instance = %task.instance, "export started");
        match self.write_file(&task).await {
            Ok((key, rows, bytes)) => {
                let now = self.clock.now();
                if self
                    .store
                    .finish_task(id, &self.worker_id, &key, rows, bytes, now)
                    .await?
                {
                    tracing::info!(task = id, rows, bytes, "export finished");
                    Ok(RunOutcome::Finished { id, rows })
                } else {
                    // Canceled or taken over at the last moment: our file is nobody's.
                    let _ = self.objects.delete(&key).await;
                    Ok(RunOutcome::Stopped { id })
                }
            }
            Err(Failure::Stopped) => {
                tracing::info!(task = id, "export stopped: canceled or taken over");
                Ok(RunOutcome::Stopped { id })
            }
            Err(Failure::Say(message)) => {
                tracing::warn!(task = id, %message, "export failed");
                self.store
                    .fail_task(id, Some(&self.worker_id), &message, self.clock.now())
                    .await?;
                Ok(RunOutcome::Failed { id })
            }
        }
    }

    /// Streams the task's records into its object; returns the key, rows and bytes.
    async fn write_file(&self, task: &DownloadTask) -> Result<(String, u64, u64), Failure> {
        let key = object_key(task);
        let mut upload = self.objects.upload(&key).await.map_err(upload_failure)?;
        let result = self.fill(task, &mut upload).await;
        match result {
            Ok(rows) => {
                let bytes = upload.finish().await.map_err(upload_failure)?;
                Ok((key, rows, bytes))
            }
            Err(failure) => {
                let _ = upload.abort().await;
                Err(failure)
            }
        }
    }

    async fn fill(
        &self,
        task: &DownloadTask,
        upload: &mut gpdiag_objects::Upload,
    ) -> Result<u64, Failure> {
        let encoding = |e: std::io::Error| {
            tracing::error!(task = task.id, error = %e, "csv encoding failed");
            Failure::Say("The export file could not be written.".into())
        };
        let mut csv = CsvEncoder::new(task.spec.file).map_err(encoding)?;
        let mut batches =
            self.store
                .stream_records(&task.spec.filter, task.spec.order, self.settings.batch);
        let mut next_heartbeat = tokio::time::Instant::now() + self.settings.heartbeat;
        let unreadable = || {
            Failure::Say(
                "The query records could not be read from the store, so the export was stopped."
                    .into(),
            )
        };
        let mut complete = false;
        while let Some(batch) = batches.recv().await {
            let batch = batch.map_err(|e| {
                tracing::error!(task = task.id, error = %e, "reading records failed");
                unreadable()
            })?;
            if batch.is_empty() {
                complete = true;
                break;
            }
            for record in &batch {
                csv.write(record).map_err(encoding)?;
            }
            if csv.ready_len().map_err(encoding)? >= self.settings.part_size {
                let part = csv.take().map_err(encoding)?;
                upload
                    .write(Bytes::from(part))
                    .await
                    .map_err(upload_failure)?;
            }
            if tokio::time::Instant::now() >= next_heartbeat {
                self.renew(task, csv.rows()).await?;
                next_heartbeat = tokio::time::Instant::now() + self.settings.heartbeat;
            }
            if let Some(pause) = self.settings.batch_pause {
                tokio::time::sleep(pause).await;
            }
        }
        if !complete {
            // The reader stopped without saying it was done: never publish a truncated file.
            tracing::error!(task = task.id, "the record stream ended early");
            return Err(unreadable());
        }
        let rows = csv.rows();
        let last = csv.finish().map_err(encoding)?;
        if !last.is_empty() {
            upload
                .write(Bytes::from(last))
                .await
                .map_err(upload_failure)?;
        }
        // A cancel that arrived during the last stretch still wins over finishing.
        self.renew(task, rows).await?;
        Ok(rows)
    }

    async fn renew(&self, task: &DownloadTask, rows: u64) -> Result<(), Failure> {
        match self
            .store
            .renew_task(
                task.id,
                &self.worker_id,
                self.clock.now(),
                self.settings.lease,
                rows,
            )
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(Failure::Stopped),
            Err(e) => {
                tracing::error!(task = task.id, error = %e, "renewing the lease failed");
                Err(Failure::Say(
                    "The export lost contact with the store, so it was stopped.".into(),
                ))
            }
        }
    }

    /// Runs `settings.workers` loops (none on an API-only node) until `shutdown` turns true. A
    /// task in flight at shutdown is left to its lease: the next start takes it again.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        // A JoinSet aborts its tasks when dropped, so aborting this future stops every loop
        // (and drops any upload in flight, which then never becomes visible).
        let mut loops = tokio::task::JoinSet::new();
        for _ in 0..self.settings.workers {
            let me = self.clone();
            let mut shutdown = shutdown.clone();
            loops.spawn(async move {
                while !*shutdown.borrow() {
                    let idle = match me.run_next().await {
                        Ok(RunOutcome::Idle) => true,
                        Ok(_) => false,
                        Err(e) => {
                            tracing::warn!(error = %e, "the export worker cannot reach the store");
                            true
                        }
                    };
                    if idle {
                        tokio::select! {
                            _ = tokio::time::sleep(me.settings.poll) => {}
                            _ = me.wake.notified() => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                }
            });
        }
        while loops.join_next().await.is_some() {}
    }
}

fn upload_failure(e: ObjectsError) -> Failure {
    tracing::error!(error = %e, "object store failure");
    if e.is_unreachable() {
        Failure::Say("The object store could not be reached while the file was being uploaded, so no file was saved.".into())
    } else {
        Failure::Say("The object store refused the file, so no file was saved.".into())
    }
}
