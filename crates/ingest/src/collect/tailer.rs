//! Following a server's log directory: which files to read, from where, and committing the
//! records they hold together with the positions that produced them.

use crate::logs::{LogFormat, LogReader, Parsed, StatementBuilder};
use gpdiag_core::QueryRecord;
use gpdiag_store::{CollectedBatch, LogFilePosition, Store, StoreError};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Bytes read from a file per step; each step's records are committed together.
const CHUNK: usize = 8 << 20;

/// How far behind the end of what was read a plan or execute may wait for its partner (and
/// hold the saved position back). One backend writes the two back to back, so they are never
/// far apart; a session that goes idle in between must not make every restart re-read
/// gigabytes.
const RESUME_WINDOW: u64 = 8 << 20;

/// What one pass over the directory did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TailStats {
    pub bytes: u64,
    pub records: u64,
    pub bad_records: u64,
    /// Bytes in the directory's files not yet read.
    pub lag_bytes: u64,
    pub files: u64,
}

/// A log file being followed.
struct Followed {
    identity: String,
    reader: LogReader,
    /// Tells this file's entries apart in the statement builder.
    source: u64,
    /// Where reading goes on in this process (the reader's own end of input).
    read_to: u64,
}

pub struct Tailer {
    instance: String,
    dir: PathBuf,
    format: LogFormat,
    max_record_bytes: usize,
    files: HashMap<String, Followed>,
    /// One for all files: the server may rotate between a plan and its statement. Taken
    /// while a step parses off the async threads.
    builder: Option<StatementBuilder>,
    next_source: u64,
    /// Positions as last committed, by file name (loaded from the store at the first pass).
    saved: Option<HashMap<String, LogFilePosition>>,
}

impl Tailer {
    pub fn new(instance: &str, dir: &Path, format: LogFormat, max_record_bytes: usize) -> Self {
        Self {
            instance: instance.to_owned(),
            dir: dir.to_owned(),
            format,
            max_record_bytes,
            files: HashMap::new(),
            builder: Some(StatementBuilder::new(instance, format)),
            next_source: 0,
            saved: None,
        }
    }

    /// Reads everything the directory holds now, committing as it goes.
    pub async fn pass(&mut self, store: &dyn Store) -> Result<TailStats, TailError> {
        if self.saved.is_none() {
            let saved = store.collector_files(&self.instance).await?;
            self.saved = Some(
                saved
                    .into_iter()
                    .map(|p| (p.file_name.clone(), p))
                    .collect(),
            );
        }
        let listing = self.list()?;
        let mut stats = TailStats {
            files: listing.len() as u64,
            ..TailStats::default()
        };
        let present: std::collections::HashSet<&str> =
            listing.iter().map(|f| f.name.as_str()).collect();
        let forgotten: Vec<String> = self
            .saved
            .as_ref()
            .into_iter()
            .flat_map(|s| s.keys())
            .filter(|name| !present.contains(name.as_str()))
            .cloned()
            .collect();
        self.files.retain(|name, _| present.contains(name.as_str()));
        for file in &listing {
            self.follow(store, file, &mut stats).await?;
        }
        // Forgotten last: a file renamed by an outside rotation took its position over above.
        if !forgotten.is_empty() {
            self.commit(store, Vec::new(), Vec::new(), forgotten)
                .await?;
        }
        Ok(stats)
    }

    /// The directory's log files of this format, oldest first.
    fn list(&self) -> Result<Vec<Listed>, TailError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| TailError::Directory {
            dir: self.dir.clone(),
            message: e.to_string(),
        })?;
        let extension = self.format.file_extension();
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(extension) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            out.push(Listed {
                name,
                identity: format!("{}:{}", meta.dev(), meta.ino()),
                size: meta.len(),
                modified: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            });
        }
        // Oldest first, so that a session's records are read in the order they were written.
        out.sort_by(|a, b| (a.modified, &a.name).cmp(&(b.modified, &b.name)));
        Ok(out)
    }

    /// Where a file is to be read from: its own saved position, or that of the same file
    /// under its former name (renamed by an outside rotation), or its start.
    fn resume_offset(&self, file: &Listed) -> u64 {
        let saved = self.saved.as_ref();
        let by_name = saved
            .and_then(|s| s.get(&file.name))
            .filter(|p| p.identity == file.identity);
        let by_identity = || saved.and_then(|s| s.values().find(|p| p.identity == file.identity));
        let offset = by_name.or_else(by_identity).map_or(0, |p| p.offset);
        // Truncated in place (copytruncate, log_truncate_on_rotation): start again.
        if offset > file.size {
            0
        } else {
            offset
        }
    }

    async fn follow(
        &mut self,
        store: &dyn Store,
        file: &Listed,
        stats: &mut TailStats,
    ) -> Result<(), TailError> {
        let fresh = match self.files.get(&file.name) {
            Some(f) => f.identity != file.identity || f.read_to > file.size,
            None => true,
        };
        if fresh {
            let offset = if self.files.contains_key(&file.name) {
                0 // replaced or truncated while we followed it
            } else {
                self.resume_offset(file)
            };
            self.files.insert(
                file.name.clone(),
                Followed {
                    identity: file.identity.clone(),
                    reader: LogReader::new(self.format, offset, self.max_record_bytes),
                    source: self.next_source,
                    read_to: offset,
                },
            );
            self.next_source += 1;
            // A position taken over from a renamed file, or reset by a truncation, is saved
            // under this name now, even when there is nothing new to read.
            let position = LogFilePosition {
                file_name: file.name.clone(),
                identity: file.identity.clone(),
                offset,
            };
            let saved = self.saved.as_ref().and_then(|s| s.get(&file.name));
            if saved != Some(&position) {
                self.commit(store, Vec::new(), vec![position], Vec::new())
                    .await?;
            }
        }
        let path = self.dir.join(&file.name);
        loop {
            let followed = &self.files[&file.name];
            if followed.read_to >= file.size {
                break;
            }
            let want = (file.size - followed.read_to).min(CHUNK as u64) as usize;
            // Reading and parsing a chunk is blocking work: it runs off the async threads,
            // taking the file's reader and statement builder along and bringing them back.
            let mut followed = self.files.remove(&file.name).expect("present");
            let Some(mut builder) = self.builder.take() else {
                unreachable!("the builder is put back after every step")
            };
            let read_path = path.clone();
            let step = tokio::task::spawn_blocking(move || {
                let result = read_at(&read_path, followed.read_to, want).map(|bytes| {
                    followed.read_to += bytes.len() as u64;
                    let mut step = Step {
                        bytes: bytes.len() as u64,
                        ..Step::default()
                    };
                    builder.set_source(followed.source);
                    let reader = &mut followed.reader;
                    reader.push(&bytes, &mut |parsed| match parsed {
                        Parsed::Entry(entry) => builder.accept(entry, &mut step.records),
                        Parsed::Bad {
                            offset_start,
                            reason,
                            ..
                        } => {
                            step.bad += 1;
                            step.first_bad
                                .get_or_insert_with(|| format!("at byte {offset_start}: {reason}"));
                        }
                    });
                    // A damaged file (zeros after a crash) can put U+0000 in a record, which
                    // no store can hold: it is skipped as unreadable, not retried forever.
                    step.records.retain(|r| {
                        let Some(field) = r.field_with_nul() else {
                            return true;
                        };
                        step.bad += 1;
                        step.first_bad
                            .get_or_insert_with(|| format!("{field} with a NUL character"));
                        false
                    });
                    let committed = reader.committed_offset();
                    builder.expire_before(committed.saturating_sub(RESUME_WINDOW));
                    step.pending = builder.oldest_pending_offset();
                    step
                });
                (followed, builder, result)
            })
            .await;
            let (followed, result) = match step {
                Ok((followed, builder, result)) => {
                    self.builder = Some(builder);
                    (followed, result)
                }
                Err(e) => {
                    self.start_over();
                    return Err(TailError::File {
                        path,
                        message: format!("reading stopped: {e}"),
                    });
                }
            };
            let step = match result {
                Ok(step) => step,
                Err(e) => {
                    self.start_over();
                    return Err(TailError::File {
                        path,
                        message: e.to_string(),
                    });
                }
            };
            let committed = followed.reader.committed_offset();
            self.files.insert(file.name.clone(), followed);
            if step.bytes == 0 {
                break; // shrank under us; the next pass sees the truncation
            }
            if let Some(reason) = &step.first_bad {
                tracing::warn!(
                    instance = %self.instance, file = %file.name, bad = step.bad,
                    "skipped unreadable log records, first {reason}"
                );
            }
            stats.bytes += step.bytes;
            stats.bad_records += step.bad;
            stats.records += step.records.len() as u64;
            // A restart re-reads from the oldest plan (or execute) of this file still waiting
            // for its partner, always a record's start; the records before it are written
            // again unchanged (their keys are deterministic).
            let offset = step.pending.map_or(committed, |p| p.min(committed));
            let position = LogFilePosition {
                file_name: file.name.clone(),
                identity: file.identity.clone(),
                offset,
            };
            if let Err(e) = self
                .commit(store, step.records, vec![position], Vec::new())
                .await
            {
                // What this step read is in memory only: start again from the saved positions.
                self.start_over();
                return Err(e);
            }
        }
        let followed = &self.files[&file.name];
        stats.lag_bytes += file.size.saturating_sub(followed.reader.committed_offset());
        Ok(())
    }

    /// Forgets everything read but not committed: the next pass goes on from the positions
    /// saved in the store.
    fn start_over(&mut self) {
        self.builder = Some(StatementBuilder::new(&self.instance, self.format));
        self.saved = None;
        self.files.clear();
    }

    async fn commit(
        &mut self,
        store: &dyn Store,
        records: Vec<QueryRecord>,
        positions: Vec<LogFilePosition>,
        forgotten: Vec<String>,
    ) -> Result<(), TailError> {
        let batch = CollectedBatch {
            instance: self.instance.clone(),
            records,
            positions,
            forgotten,
        };
        let (positions, forgotten) = (batch.positions.clone(), batch.forgotten.clone());
        store.commit_collected(batch).await?;
        let saved = self.saved.get_or_insert_with(HashMap::new);
        for name in forgotten {
            saved.remove(&name);
        }
        for p in positions {
            saved.insert(p.file_name.clone(), p);
        }
        Ok(())
    }
}

/// What one chunk gave.
#[derive(Default)]
struct Step {
    bytes: u64,
    records: Vec<QueryRecord>,
    bad: u64,
    first_bad: Option<String>,
    /// Where this file's oldest plan or execute waiting for its partner starts.
    pending: Option<u64>,
}

struct Listed {
    name: String,
    identity: String,
    size: u64,
    modified: i64,
}

fn read_at(path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::with_capacity(len);
    file.take(len as u64).read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("cannot list the log directory {}: {message}", dir.display())]
    Directory { dir: PathBuf, message: String },
    #[error("cannot read {}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}
