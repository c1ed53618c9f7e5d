//! `Objects`, the object store behind one cheap handle, and `Upload`, a multipart upload in
//! bounded memory whose object appears only when it completes.

use crate::error::{from_store, ObjectsError, ObjectsErrorKind, Redactor};
use crate::key::{validate_key, MAX_KEY_BYTES};
use crate::objects_url::ObjectsUrl;
use crate::settings::{ObjectsSettings, S3Settings, MAX_LINK_TTL};
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, MultipartUpload, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutPayload, PutPayloadMut, RetryConfig,
};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use url::Url;

/// Parts are 5 MiB, S3's minimum for all but the last part; with 10,000 parts at most, an
/// object can reach about 48 GiB, far above any export.
pub const PART_SIZE: usize = 5 * 1024 * 1024;

/// Parts uploading at once. With the part being filled, an upload holds at most
/// `(MAX_PARTS_IN_FLIGHT + 1) * PART_SIZE` bytes (15 MiB) whatever the object's size.
pub const MAX_PARTS_IN_FLIGHT: usize = 2;

/// How long the abort of an abandoned upload is retried while the store cannot be reached;
/// after that, the bucket's lifecycle rule for incomplete uploads has to remove its parts.
const ABORT_RETRY_FOR: Duration = Duration::from_secs(15 * 60);
const ABORT_RETRY_MAX_DELAY: Duration = Duration::from_secs(30);

/// Bytes read from the store, as they arrive.
pub type ByteStream = BoxStream<'static, Result<Bytes, ObjectsError>>;

/// An object being read: its bytes in `range`, and its whole size.
pub struct Download {
    pub stream: ByteStream,
    /// The bytes the stream yields: the requested range, its end cut to the object's size.
    pub range: Range<u64>,
    /// The size of the whole object.
    pub size: u64,
}

impl fmt::Debug for Download {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Download")
            .field("range", &self.range)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// The object store. Clones share one client and connection pool.
#[derive(Clone)]
pub struct Objects {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    /// `s3://` keys live under this prefix (validated, no trailing '/').
    prefix: Option<String>,
    /// How messages name the store: `file:///abs/dir` or `s3://bucket/prefix at HOST`.
    name: String,
    redactor: Redactor,
}

enum Backend {
    Local(LocalFileSystem),
    S3(AmazonS3),
}

impl fmt::Debug for Objects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Objects")
            .field("store", &self.inner.name)
            .finish()
    }
}

impl Objects {
    /// Opens the store the settings name; checks them first (see [`ObjectsSettings::validate`]).
    pub fn from_settings(
        settings: &ObjectsSettings,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Objects, ObjectsError> {
        settings.link_ttl()?;
        let s3 = settings.s3_settings(env)?;
        Objects::open(&settings.objects_url()?, s3.as_ref())
    }

    /// Opens a store. For `file://` the directory is created if needed (and `s3` must be None);
    /// for `s3://`, `s3` is required. Nothing is sent to an S3 store here: [`Objects::check`]
    /// does that.
    pub fn open(url: &ObjectsUrl, s3: Option<&S3Settings>) -> Result<Objects, ObjectsError> {
        match url {
            ObjectsUrl::File { path } => {
                if s3.is_some() {
                    return Err(ObjectsError::config(format!(
                        "S3 settings were given for {url}, which is not an s3:// url"
                    )));
                }
                std::fs::create_dir_all(path).map_err(|e| {
                    ObjectsError::config(format!(
                        "cannot create the objects directory {}: {e}",
                        path.display()
                    ))
                })?;
                // Canonical, so a later change of working directory cannot move the store.
                let local = LocalFileSystem::new_with_prefix(path)
                    .map_err(|e| {
                        ObjectsError::config(format!(
                            "cannot open the objects directory {}: {e}",
                            path.display()
                        ))
                    })?
                    // Deleting the last object of a directory removes the directory too, so
                    // per-account export folders do not pile up empty.
                    .with_automatic_cleanup(true);
                let name = match std::fs::canonicalize(path) {
                    Ok(abs) => format!("file://{}", abs.display()),
                    Err(_) => url.to_string(),
                };
                Ok(Objects::new(
                    Backend::Local(local),
                    None,
                    name,
                    Redactor::default(),
                ))
            }
            ObjectsUrl::S3 { bucket, prefix } => {
                let s3 = s3.ok_or_else(|| {
                    ObjectsError::config(format!(
                        "{url} needs objects.s3_access_key_id and objects.s3_secret_access_key"
                    ))
                })?;
                s3.check()?;
                let (builder, host) = s3_builder(bucket, s3)?;
                let store = builder.build().map_err(|e| {
                    ObjectsError::config(format!(
                        "cannot configure the S3 client for {url}: {}",
                        redactor_for(s3).clean(&e.to_string())
                    ))
                })?;
                Ok(Objects::new(
                    Backend::S3(store),
                    prefix.clone(),
                    format!("{url} at {host}"),
                    redactor_for(s3),
                ))
            }
        }
    }

    fn new(backend: Backend, prefix: Option<String>, name: String, redactor: Redactor) -> Self {
        Objects {
            inner: Arc::new(Inner {
                backend,
                prefix,
                name,
                redactor,
            }),
        }
    }

    fn store(&self) -> &dyn ObjectStore {
        match &self.inner.backend {
            Backend::Local(s) => s,
            Backend::S3(s) => s,
        }
    }

    /// How messages name this store (no credentials): `file:///abs/dir` or
    /// `s3://bucket/prefix at HOST`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// True when links are presigned by the store (`s3://`); false when the server must serve
    /// the bytes itself (`file://`).
    pub fn presigns(&self) -> bool {
        matches!(self.inner.backend, Backend::S3(_))
    }

    /// Reads a key that need not exist: succeeds when the store is reachable, the bucket
    /// exists and the credentials and region are accepted, so a wrong setting fails at start
    /// rather than at the first export.
    pub async fn check(&self) -> Result<(), ObjectsError> {
        let path = self.path(".gpdiag-check")?;
        match self.store().get_opts(&path, GetOptions::default()).await {
            Ok(_) => Ok(()),
            // A GET, not a HEAD: only a body tells a missing key from a missing bucket.
            Err(e @ object_store::Error::NotFound { .. }) => {
                if e.to_string().contains("NoSuchBucket") {
                    Err(ObjectsError::config(format!(
                        "checking {}: the bucket does not exist",
                        self.inner.name
                    )))
                } else {
                    Ok(())
                }
            }
            Err(e) => Err(self.fail(
                format_args!("checking access (endpoint, region, bucket, credentials)"),
                &e,
            )),
        }
    }

    /// The store's path for `key`: checked, and under the prefix.
    fn path(&self, key: &str) -> Result<Path, ObjectsError> {
        validate_key(key)?;
        let full = match &self.inner.prefix {
            Some(prefix) => format!("{prefix}/{key}"),
            None => key.to_owned(),
        };
        if full.len() > MAX_KEY_BYTES {
            return Err(ObjectsError::new(
                ObjectsErrorKind::InvalidKey,
                format!("object key {key:?} is longer than {MAX_KEY_BYTES} bytes with the prefix"),
            ));
        }
        Path::parse(&full).map_err(|e| {
            ObjectsError::new(
                ObjectsErrorKind::InvalidKey,
                format!("object key {key:?} is invalid: {e}"),
            )
        })
    }

    fn fail(&self, what: std::fmt::Arguments<'_>, e: &object_store::Error) -> ObjectsError {
        from_store(
            &self.inner.redactor,
            &format!("{what} in {}", self.inner.name),
            e,
        )
    }

    /// Starts a multipart upload to `key`. Nothing is visible at `key` until
    /// [`Upload::finish`] succeeds; an existing object there stays until then, and is replaced
    /// at once.
    pub async fn upload(&self, key: &str) -> Result<Upload, ObjectsError> {
        let path = self.path(key)?;
        let upload = self
            .store()
            .put_multipart_opts(&path, PutMultipartOptions::default())
            .await
            .map_err(|e| self.fail(format_args!("starting the upload of {key}"), &e))?;
        Ok(Upload {
            objects: self.clone(),
            key: key.to_owned(),
            path,
            writer: Some(Writer {
                upload,
                buffer: PutPayloadMut::new(),
                parts: JoinSet::new(),
            }),
            written: 0,
        })
    }

    /// Deletes `key`; a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), ObjectsError> {
        let path = self.path(key)?;
        match self.store().delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail(format_args!("deleting {key}"), &e)),
        }
    }

    /// Deletes every object under the folder `prefix` (a key without a trailing `/`), such as
    /// all of one export's files; returns how many it deleted.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, ObjectsError> {
        let path = self.path(prefix)?;
        let mut listing = self.store().list(Some(&path));
        let mut deleted = 0;
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.fail(format_args!("listing {prefix}"), &e))?;
            match self.store().delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                Err(e) => return Err(self.fail(format_args!("deleting under {prefix}"), &e)),
            }
        }
        if let Backend::Local(local) = &self.inner.backend {
            // The listing hides LocalFileSystem's staging files (`<key>#<n>`, left by uploads a
            // crash interrupted), so remove the folder whole.
            let dir = local
                .path_to_filesystem(&path)
                .map_err(|e| self.fail(format_args!("deleting under {prefix}"), &e))?;
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ObjectsError::new(
                        ObjectsErrorKind::Failed,
                        format!("deleting under {prefix} in {}: {e}", self.inner.name),
                    ))
                }
            }
        }
        Ok(deleted)
    }

    /// The size of the object at `key`, or None when there is none.
    pub async fn head(&self, key: &str) -> Result<Option<u64>, ObjectsError> {
        let path = self.path(key)?;
        match self.store().head(&path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail(format_args!("looking up {key}"), &e)),
        }
    }

    /// Reads `key`, all of it or `range` (its end is cut to the object's size, as HTTP range
    /// requests are). A range that starts at or past the end is an `InvalidRange` error.
    pub async fn get_range(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<Download, ObjectsError> {
        let path = self.path(key)?;
        let mut options = GetOptions::default();
        if let Some(r) = &range {
            if r.start >= r.end {
                return Err(ObjectsError::new(
                    ObjectsErrorKind::InvalidRange,
                    format!("byte range {}..{} of {key} is empty", r.start, r.end),
                ));
            }
            options.range = Some(GetRange::Bounded(r.clone()));
        }
        let result = match self.store().get_opts(&path, options).await {
            Ok(result) => result,
            Err(e) => {
                let error = self.fail(format_args!("reading {key}"), &e);
                // Each back end words "range not satisfiable" its own way; the size says it.
                if let (Some(r), ObjectsErrorKind::Failed) = (&range, error.kind()) {
                    if let Ok(Some(size)) = self.head(key).await {
                        if r.start >= size {
                            return Err(ObjectsError::new(
                                ObjectsErrorKind::InvalidRange,
                                format!(
                                    "byte range {}..{} is outside {key}, which has {size} bytes",
                                    r.start, r.end
                                ),
                            ));
                        }
                    }
                }
                return Err(error);
            }
        };
        let size = result.meta.size;
        let range = result.range.clone();
        let objects = self.clone();
        let key = key.to_owned();
        let stream = result
            .into_stream()
            .map(move |chunk| chunk.map_err(|e| objects.fail(format_args!("reading {key}"), &e)))
            .boxed();
        Ok(Download {
            stream,
            range,
            size,
        })
    }

    /// A presigned GET link to `key`, valid for `expires_in` (1 second to 7 days), for
    /// `s3://` stores; None for `file://`, whose bytes the server serves itself. Signing is
    /// local (no request to the store) and does not check that the object exists.
    pub async fn presigned_get(
        &self,
        key: &str,
        expires_in: Duration,
    ) -> Option<Result<Url, ObjectsError>> {
        let Backend::S3(s3) = &self.inner.backend else {
            return None;
        };
        Some(self.sign(s3, key, expires_in).await)
    }

    async fn sign(
        &self,
        s3: &AmazonS3,
        key: &str,
        expires_in: Duration,
    ) -> Result<Url, ObjectsError> {
        if expires_in < Duration::from_secs(1) || expires_in > MAX_LINK_TTL {
            return Err(ObjectsError::config(format!(
                "a presigned link must live between 1 second and 7 days, not {expires_in:?}"
            )));
        }
        let path = self.path(key)?;
        s3.signed_url(http::Method::GET, &path, expires_in)
            .await
            .map_err(|e| self.fail(format_args!("signing a link to {key}"), &e))
    }
}

/// The builder for an S3-compatible store, and the host messages may name.
fn s3_builder(bucket: &str, s3: &S3Settings) -> Result<(AmazonS3Builder, String), ObjectsError> {
    let t = s3.timeouts;
    let client = ClientOptions::new()
        .with_connect_timeout(t.connect)
        .with_timeout(t.request)
        .with_allow_http(s3.allow_http)
        // So a browser following a presigned link saves a CSV as one.
        .with_content_type_for_suffix("csv", "text/csv; charset=utf-8")
        .with_content_type_for_suffix("gz", "application/gzip")
        .with_content_type_for_suffix("zip", "application/zip");
    // AmazonS3Builder::new() reads no AWS_* variables (from_env would): only these settings.
    let mut builder = AmazonS3Builder::new()
        .with_client_options(client)
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: t.max_retries,
            retry_timeout: t.retry_timeout,
        })
        .with_bucket_name(bucket)
        .with_region(&s3.region)
        .with_access_key_id(&s3.access_key_id)
        .with_secret_access_key(s3.secret_access_key.expose())
        .with_allow_http(s3.allow_http)
        .with_virtual_hosted_style_request(!s3.path_style);
    let host = match &s3.endpoint {
        None if s3.path_style => format!("s3.{}.amazonaws.com", s3.region),
        None => format!("{bucket}.s3.{}.amazonaws.com", s3.region),
        Some(endpoint) => {
            let mut url = Url::parse(endpoint).map_err(|e| {
                ObjectsError::config(format!("objects.s3_endpoint is not a URL: {e}"))
            })?;
            if !s3.path_style {
                // object_store takes a custom endpoint as already naming the bucket when
                // requests are virtual-hosted, so the bucket goes into the host here:
                // https://s3.oss-cn-hangzhou.aliyuncs.com -> https://BUCKET.s3.oss-cn-hangzhou.aliyuncs.com
                // (OSS accepts only virtual-hosted requests).
                let host = url.host_str().unwrap_or_default().to_owned();
                url.set_host(Some(&format!("{bucket}.{host}")))
                    .map_err(|e| {
                        ObjectsError::config(format!(
                            "bucket {bucket} and endpoint host {host} make no valid host name: {e}"
                        ))
                    })?;
            }
            builder = builder.with_endpoint(url.as_str().trim_end_matches('/'));
            match url.port() {
                Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
                None => url.host_str().unwrap_or_default().to_owned(),
            }
        }
    };
    Ok((builder, host))
}

fn redactor_for(s3: &S3Settings) -> Redactor {
    Redactor::new([
        s3.access_key_id.clone(),
        s3.secret_access_key.expose().to_owned(),
    ])
}

/// A multipart upload under way. Bytes are buffered into [`PART_SIZE`] parts and uploaded
/// with at most [`MAX_PARTS_IN_FLIGHT`] at once: `write` waits while that many are
/// uploading, so a fast producer cannot outrun the store's bandwidth in memory.
///
/// Dropping an `Upload` without `finish` abandons it: nothing appears at the key, and the
/// store's partial upload is aborted in the background (best effort).
pub struct Upload {
    objects: Objects,
    key: String,
    path: Path,
    /// None once finished, aborted or failed.
    writer: Option<Writer>,
    written: u64,
}

/// The parts machinery. Like object_store's `WriteMultipart`, but every failure path aborts
/// the store's upload (`WriteMultipart::finish` returns early without aborting when a part
/// fails), so a failed upload never leaves parts behind on S3.
struct Writer {
    upload: Box<dyn MultipartUpload>,
    buffer: PutPayloadMut,
    parts: JoinSet<object_store::Result<()>>,
}

impl Writer {
    fn send_buffer(&mut self) {
        let part = std::mem::take(&mut self.buffer).freeze();
        self.parts.spawn(self.upload.put_part(part));
    }

    /// Waits until fewer than `max` parts are uploading (all of them for 0).
    async fn wait_for_parts(&mut self, max: usize) -> object_store::Result<()> {
        while !self.parts.is_empty() && self.parts.len() >= max {
            match self.parts.join_next().await {
                None => break,
                Some(Ok(result)) => result?,
                Some(Err(join)) => {
                    return Err(object_store::Error::JoinError { source: join });
                }
            }
        }
        Ok(())
    }

    async fn put(&mut self, mut bytes: Bytes) -> object_store::Result<()> {
        while !bytes.is_empty() {
            let room = PART_SIZE - self.buffer.content_length();
            self.buffer.push(bytes.split_to(room.min(bytes.len())));
            if self.buffer.content_length() == PART_SIZE {
                // A full part waits here until fewer than MAX_PARTS_IN_FLIGHT are uploading:
                // the bound on memory, and the producer's backpressure.
                self.wait_for_parts(MAX_PARTS_IN_FLIGHT).await?;
                self.send_buffer();
            }
        }
        Ok(())
    }

    async fn finish(&mut self) -> object_store::Result<()> {
        // The last part may be short. (Upload::finish writes an empty object without parts.)
        if self.buffer.content_length() > 0 {
            self.wait_for_parts(MAX_PARTS_IN_FLIGHT).await?;
            self.send_buffer();
        }
        self.wait_for_parts(0).await?;
        self.upload.complete().await.map(|_| ())
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.parts.shutdown().await;
        self.upload.abort().await
    }

    /// Aborts the store's upload now and, if the store does not answer (an outage is the
    /// usual reason an upload is abandoned), keeps trying in the background with backoff, so
    /// its parts are gone soon after the store is back.
    async fn abandon(mut self, objects: &Objects, key: &str) -> object_store::Result<()> {
        let result = self.abort().await;
        if result.is_err() {
            self.retry_abort(objects.clone(), key.to_owned());
        }
        result
    }

    fn retry_abort(mut self, objects: Objects, key: String) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let started = tokio::time::Instant::now();
            let mut delay = Duration::from_secs(1);
            loop {
                tokio::time::sleep(delay).await;
                match self.upload.abort().await {
                    Ok(()) => {
                        tracing::info!(%key, "aborted an abandoned upload once the object store answered");
                        return;
                    }
                    Err(_) if started.elapsed() + delay < ABORT_RETRY_FOR => {
                        delay = (delay * 2).min(ABORT_RETRY_MAX_DELAY);
                    }
                    Err(e) => {
                        let error = objects.fail(format_args!("aborting the upload of {key}"), &e);
                        tracing::warn!(
                            %error,
                            "gave up aborting an abandoned upload: the bucket's lifecycle rule \
                             for incomplete multipart uploads has to remove its parts"
                        );
                        return;
                    }
                }
            }
        });
    }
}

impl Upload {
    /// The key being written.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn closed(&self) -> ObjectsError {
        ObjectsError::new(
            ObjectsErrorKind::Closed,
            format!(
                "the upload of {} to {} was already finished, aborted or failed",
                self.key, self.objects.inner.name
            ),
        )
    }

    /// Adds bytes to the object. Waits while a full part cannot be sent because
    /// [`MAX_PARTS_IN_FLIGHT`] parts are uploading. On an error the upload is aborted; later
    /// calls fail with `Closed`. A `write` cancelled half-way leaves the content unknown: abort
    /// (or drop) the upload then.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), ObjectsError> {
        let len = bytes.len() as u64;
        let Some(writer) = self.writer.as_mut() else {
            return Err(self.closed());
        };
        if let Err(e) = writer.put(bytes).await {
            let error = self
                .objects
                .fail(format_args!("uploading {}", self.key), &e);
            if let Some(writer) = self.writer.take() {
                let _ = writer.abandon(&self.objects, &self.key).await;
            }
            return Err(error);
        }
        self.written += len;
        Ok(())
    }

    /// Uploads what is buffered and completes the upload: only now does the object appear at
    /// the key, whole. Returns its size. On an error the upload is aborted.
    pub async fn finish(mut self) -> Result<u64, ObjectsError> {
        let Some(mut writer) = self.writer.take() else {
            return Err(self.closed());
        };
        if self.written == 0 {
            // S3 needs at least one part, and Garage refuses an empty one: an empty object is
            // a plain PUT instead, as atomic as completing.
            let _ = writer.abandon(&self.objects, &self.key).await;
            return match self
                .objects
                .store()
                .put(&self.path, PutPayload::default())
                .await
            {
                Ok(_) => Ok(0),
                Err(e) => Err(self
                    .objects
                    .fail(format_args!("writing the empty object {}", self.key), &e)),
            };
        }
        match writer.finish().await {
            Ok(()) => Ok(self.written),
            Err(e) => {
                let error = self
                    .objects
                    .fail(format_args!("completing the upload of {}", self.key), &e);
                let _ = writer.abandon(&self.objects, &self.key).await;
                Err(error)
            }
        }
    }

    /// Abandons the upload: parts already sent are discarded and nothing appears at the key.
    /// If the store does not answer, the abort is retried in the background.
    pub async fn abort(mut self) -> Result<(), ObjectsError> {
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        writer.abandon(&self.objects, &self.key).await.map_err(|e| {
            self.objects
                .fail(format_args!("aborting the upload of {}", self.key), &e)
        })
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            // Without a runtime the parts are cancelled with the JoinSet and the store's
            // upload is left to its own expiry (a local staging file is removed by
            // LocalFileSystem's own Drop).
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let (objects, key) = (self.objects.clone(), self.key.clone());
                runtime.spawn(async move {
                    let _ = writer.abandon(&objects, &key).await;
                });
            }
        }
    }
}

impl fmt::Debug for Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload")
            .field("key", &self.key)
            .field("store", &self.objects.inner.name)
            .field("written", &self.written)
            .field("open", &self.writer.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::S3Timeouts;
    use gpdiag_core::Secret;
    use object_store::{PutResult, UploadPart};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// A multipart upload whose parts take a while, recording their sizes and how many were
    /// handed out and not yet done at any moment.
    #[derive(Debug, Default)]
    struct SlowUpload {
        sizes: Arc<Mutex<Vec<usize>>>,
        outstanding: Arc<AtomicUsize>,
        most_outstanding: Arc<AtomicUsize>,
        completed: Arc<AtomicUsize>,
    }

    #[async_trait::async_trait]
    impl MultipartUpload for SlowUpload {
        fn put_part(&mut self, data: PutPayload) -> UploadPart {
            self.sizes.lock().unwrap().push(data.content_length());
            let now = self.outstanding.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_outstanding.fetch_max(now, Ordering::SeqCst);
            let outstanding = Arc::clone(&self.outstanding);
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                outstanding.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            })
        }

        async fn complete(&mut self) -> object_store::Result<PutResult> {
            self.completed.fetch_add(1, Ordering::SeqCst);
            Ok(PutResult {
                e_tag: None,
                version: None,
            })
        }

        async fn abort(&mut self) -> object_store::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn parts_are_full_sized_and_few_are_in_flight() {
        let upload = SlowUpload::default();
        let sizes = Arc::clone(&upload.sizes);
        let most = Arc::clone(&upload.most_outstanding);
        let completed = Arc::clone(&upload.completed);
        let mut writer = Writer {
            upload: Box::new(upload),
            buffer: PutPayloadMut::new(),
            parts: JoinSet::new(),
        };
        // 41 MiB and a bit, in one huge write and many small ones: the huge one must not
        // start eight parts at once.
        writer
            .put(Bytes::from(vec![7u8; 30 * 1024 * 1024]))
            .await
            .unwrap();
        for _ in 0..11 {
            writer
                .put(Bytes::from(vec![1u8; 1024 * 1024]))
                .await
                .unwrap();
        }
        writer.put(Bytes::from_static(b"tail")).await.unwrap();
        writer.finish().await.unwrap();
        let sizes = sizes.lock().unwrap().clone();
        let total: usize = sizes.iter().sum();
        assert_eq!(total, 41 * 1024 * 1024 + 4);
        let (last, full) = sizes.split_last().unwrap();
        assert!(full.iter().all(|s| *s == PART_SIZE), "{sizes:?}");
        assert!(*last <= PART_SIZE && *last > 0);
        assert_eq!(
            most.load(Ordering::SeqCst),
            MAX_PARTS_IN_FLIGHT,
            "at most {MAX_PARTS_IN_FLIGHT} parts in flight, and the concurrency is used"
        );
        assert_eq!(completed.load(Ordering::SeqCst), 1);
    }

    /// A multipart upload whose abort fails (the store unreachable) `failures` times.
    struct UnreachableAbort {
        failures: usize,
        aborts: Arc<AtomicUsize>,
    }

    impl fmt::Debug for UnreachableAbort {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("UnreachableAbort")
        }
    }

    #[async_trait::async_trait]
    impl MultipartUpload for UnreachableAbort {
        fn put_part(&mut self, _: PutPayload) -> UploadPart {
            Box::pin(async { Ok(()) })
        }

        async fn complete(&mut self) -> object_store::Result<PutResult> {
            unreachable!("never completed")
        }

        async fn abort(&mut self) -> object_store::Result<()> {
            let n = self.aborts.fetch_add(1, Ordering::SeqCst);
            if n < self.failures {
                return Err(object_store::Error::Generic {
                    store: "test",
                    source: "connection refused".into(),
                });
            }
            Ok(())
        }
    }

    fn unreachable_abort(failures: usize) -> (Writer, Arc<AtomicUsize>) {
        let aborts = Arc::new(AtomicUsize::new(0));
        let upload = UnreachableAbort {
            failures,
            aborts: Arc::clone(&aborts),
        };
        let writer = Writer {
            upload: Box::new(upload),
            buffer: PutPayloadMut::new(),
            parts: JoinSet::new(),
        };
        (writer, aborts)
    }

    #[tokio::test(start_paused = true)]
    async fn an_abort_the_store_refuses_is_retried_until_it_answers() {
        let objects = Objects::open(&bucket(None), Some(&s3(None, false))).unwrap();
        let (writer, aborts) = unreachable_abort(5);
        assert!(writer.abandon(&objects, "a/b.csv").await.is_err());
        assert_eq!(
            aborts.load(Ordering::SeqCst),
            1,
            "the first attempt is inline"
        );
        // The clock is paused: sleeping lets the retries (1 s, 2 s, 4 s, … apart) run.
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(
            aborts.load(Ordering::SeqCst),
            6,
            "retried until the store answered, then no more"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retrying_an_abort_ends() {
        let objects = Objects::open(&bucket(None), Some(&s3(None, false))).unwrap();
        let (writer, aborts) = unreachable_abort(usize::MAX);
        assert!(writer.abandon(&objects, "a/b.csv").await.is_err());
        tokio::time::sleep(ABORT_RETRY_FOR + ABORT_RETRY_MAX_DELAY).await;
        let tried = aborts.load(Ordering::SeqCst);
        // 1, 2, 4, 8, 16, then every 30 s for the rest of the 15 minutes.
        assert!((25..=40).contains(&tried), "{tried} attempts");
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(aborts.load(Ordering::SeqCst), tried, "it gave up");
    }

    fn s3(endpoint: Option<&str>, path_style: bool) -> S3Settings {
        S3Settings {
            endpoint: endpoint.map(str::to_owned),
            region: "cn-hangzhou".into(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI"),
            path_style,
            allow_http: false,
            timeouts: S3Timeouts::default(),
        }
    }

    fn bucket(prefix: Option<&str>) -> ObjectsUrl {
        ObjectsUrl::S3 {
            bucket: "gpdiag-exports".into(),
            prefix: prefix.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn virtual_hosted_links_put_the_bucket_in_the_host() {
        let o = Objects::open(
            &bucket(Some("p/q")),
            Some(&s3(Some("https://s3.oss-cn-hangzhou.aliyuncs.com"), false)),
        )
        .unwrap();
        assert_eq!(
            o.name(),
            "s3://gpdiag-exports/p/q at gpdiag-exports.s3.oss-cn-hangzhou.aliyuncs.com"
        );
        let url = o
            .presigned_get("a/b.csv", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            url.host_str(),
            Some("gpdiag-exports.s3.oss-cn-hangzhou.aliyuncs.com")
        );
        assert_eq!(url.path(), "/p/q/a/b.csv");
        let query = url.query().unwrap();
        assert!(query.contains("X-Amz-Expires=60"), "{query}");
        assert!(
            query.contains("X-Amz-Credential=AKIDEXAMPLE%2F")
                && query.contains("%2Fcn-hangzhou%2Fs3%2Faws4_request"),
            "{query}"
        );
        assert!(!url.as_str().contains("wJalrXUtnFEMI"));
    }

    #[tokio::test]
    async fn path_style_links_put_the_bucket_in_the_path() {
        let o = Objects::open(
            &bucket(None),
            Some(&s3(Some("https://minio.example:9000"), true)),
        )
        .unwrap();
        let url = o
            .presigned_get("x.csv", Duration::from_secs(3600))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(url.host_str(), Some("minio.example"));
        assert_eq!(url.port(), Some(9000));
        assert_eq!(url.path(), "/gpdiag-exports/x.csv");
    }

    #[tokio::test]
    async fn links_are_bounded_and_keys_checked() {
        let o = Objects::open(&bucket(None), Some(&s3(None, false))).unwrap();
        assert_eq!(
            o.name(),
            "s3://gpdiag-exports at gpdiag-exports.s3.cn-hangzhou.amazonaws.com"
        );
        for ttl in [Duration::ZERO, MAX_LINK_TTL + Duration::from_secs(1)] {
            let e = o.presigned_get("k", ttl).await.unwrap().unwrap_err();
            assert_eq!(e.kind(), ObjectsErrorKind::Config);
        }
        let e = o
            .presigned_get("../k", Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind(), ObjectsErrorKind::InvalidKey);
    }

    #[test]
    fn s3_needs_its_settings_and_file_refuses_them() {
        assert_eq!(
            Objects::open(&bucket(None), None).unwrap_err().kind(),
            ObjectsErrorKind::Config
        );
        let dir = tempfile::tempdir().unwrap();
        let file = ObjectsUrl::File {
            path: dir.path().join("objects"),
        };
        assert_eq!(
            Objects::open(&file, Some(&s3(None, false)))
                .unwrap_err()
                .kind(),
            ObjectsErrorKind::Config
        );
        let mut plain = s3(Some("http://127.0.0.1:9"), true);
        assert_eq!(
            Objects::open(&bucket(None), Some(&plain))
                .unwrap_err()
                .kind(),
            ObjectsErrorKind::Config
        );
        plain.allow_http = true;
        Objects::open(&bucket(None), Some(&plain)).unwrap();
    }
}
