//! The bucket side: uploading spooled LTX files with the `litestream-timestamp` metadata Litestream's restore
//! reads, and finding the newest TXID under a replica root (a root taken up again without a local position).

use std::time::Duration;

use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
use aws_sdk_s3::primitives::ByteStream;

use crate::backup::{BackupConfig, ltx};
use crate::error::{Error, Result};

/// An LTX file in the bucket, as its key and the listing describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteFile {
    pub level: u8,
    pub min_txid: u64,
    pub max_txid: u64,
    pub size: u64,
    /// The object's LastModified (uploaded at or after its header's timestamp).
    pub modified_ms: i64,
}

impl RemoteFile {
    /// `0001/00000000000000a1-00000000000000b0.ltx` (the key below a replica root).
    pub fn parse(rel: &str) -> Option<RemoteFile> {
        let (level, name) = rel.split_once('/')?;
        let (min, max) = name.strip_suffix(".ltx")?.split_once('-')?;
        fn hex16(s: &str) -> Option<u64> {
            let lower = s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            lower.then(|| u64::from_str_radix(s, 16).ok()).flatten()
        }
        Some(RemoteFile {
            level: (level.len() == 4 && level.bytes().all(|b| b.is_ascii_digit()))
                .then(|| level.parse::<u8>().ok())
                .flatten()
                .filter(|l| *l <= 9)?,
            min_txid: hex16(min)?,
            max_txid: hex16(max)?,
            ..RemoteFile::default()
        })
    }
}

pub struct Remote {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// The URL's path without leading or trailing slashes ("" for the bucket's root).
    prefix: String,
}

fn s3_error(what: &str, e: impl std::error::Error) -> Error {
    Error::Internal(format!("S3 {what}: {}", crate::error::with_causes(e.to_string(), &e)))
}

impl Remote {
    /// A client for `config`'s bucket: credentials from the standard AWS chain (environment, profile, web
    /// identity, instance metadata), the endpoint and region when given.
    pub async fn new(config: &BackupConfig) -> Remote {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(10))
                .operation_timeout(Duration::from_secs(30))
                .build(),
        );
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        } else if config.endpoint.is_some() {
            loader = loader.region(Region::new("us-east-1"));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared);
        if let Some(endpoint) = &config.endpoint {
            // Third-party S3s (MinIO, R2, B2, moto) differ in the newer checksum headers; send them only when an
            // operation requires them, as Litestream does for custom endpoints.
            builder = builder
                .endpoint_url(endpoint)
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        builder = builder.force_path_style(config.path_style.unwrap_or(config.endpoint.is_some()));
        Remote {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
        }
    }

    pub fn object_key(&self, key: &str) -> String {
        if self.prefix.is_empty() { key.to_owned() } else { format!("{}/{key}", self.prefix) }
    }

    /// `s3://bucket/prefix/{root}` for log lines and Litestream commands.
    pub fn url(&self, root: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.object_key(root))
    }

    /// Uploads one LTX file whose header says it was written at `timestamp_ms`.
    pub async fn put(&self, key: &str, body: Vec<u8>, timestamp_ms: i64) -> Result<()> {
        let stamp = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(timestamp_ms) * 1_000_000)
            .map_err(Error::internal)?
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(Error::internal)?;
        let length = body.len() as i64;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .content_length(length)
            .metadata("litestream-timestamp", stamp)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| s3_error("upload", e))?;
        Ok(())
    }

    /// Deletes one object (retention).
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .send()
            .await
            .map_err(|e| s3_error("delete", e))?;
        Ok(())
    }

    /// The key prefix of every object under `root` ("" names the URL's path itself), ending in `/`.
    fn root_prefix(&self, root: &str) -> String {
        match (self.prefix.is_empty(), root.is_empty()) {
            (true, true) => String::new(),
            (false, true) => format!("{}/", self.prefix),
            _ => format!("{}/", self.object_key(root)),
        }
    }

    /// The key of `file` under `root`.
    pub fn file_key(&self, root: &str, file: &RemoteFile) -> String {
        format!("{}{:04x}/{}", self.root_prefix(root), file.level, ltx::file_name(file.min_txid, file.max_txid))
    }

    /// Every page of the listing under `prefix` (with `delimiter`, grouped into common prefixes).
    async fn listing(&self, prefix: &str, delimiter: Option<&str>) -> Result<Vec<ListObjectsV2Output>> {
        let mut pages = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_delimiter(delimiter.map(str::to_owned))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| s3_error("list", e))?;
            let next = page.next_continuation_token().filter(|_| page.is_truncated() == Some(true)).map(str::to_owned);
            pages.push(page);
            match next {
                Some(next) => token = Some(next),
                None => return Ok(pages),
            }
        }
    }

    /// Every LTX file under `root` (`<level %04x>/<min>-<max>.ltx`; other keys are skipped, as Litestream does),
    /// in level then TXID order.
    pub async fn list(&self, root: &str) -> Result<Vec<RemoteFile>> {
        let prefix = self.root_prefix(root);
        let mut files = Vec::new();
        for page in self.listing(&prefix, None).await? {
            for object in page.contents() {
                let Some(rel) = object.key().and_then(|k| k.strip_prefix(prefix.as_str())) else { continue };
                if let Some(mut file) = RemoteFile::parse(rel) {
                    file.size = object.size().unwrap_or(0).max(0) as u64;
                    file.modified_ms = object.last_modified().map_or(0, |t| t.to_millis().unwrap_or(0));
                    files.push(file);
                }
            }
        }
        files.sort_by_key(|f| (f.level, f.min_txid, f.max_txid));
        Ok(files)
    }

    /// The names one level below `root` (`tenants/acme/` → its incarnations), sorted.
    pub async fn children(&self, root: &str) -> Result<Vec<String>> {
        let prefix = self.root_prefix(root);
        let mut names = Vec::new();
        for page in self.listing(&prefix, Some("/")).await? {
            for common in page.common_prefixes() {
                if let Some(name) = common.prefix().and_then(|p| p.strip_prefix(prefix.as_str())) {
                    names.push(name.trim_end_matches('/').to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// The highest TXID any LTX file under `root` reaches (0: none).
    pub async fn max_txid(&self, root: &str) -> Result<u64> {
        Ok(self.list(root).await?.iter().map(|f| f.max_txid).max().unwrap_or(0))
    }

    /// The header of the LTX file at `key` (a ranged read of its first 100 bytes).
    pub async fn header(&self, key: &str) -> Result<ltx::Header> {
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes=0-{}", ltx::HEADER_SIZE - 1))
            .send()
            .await
            .map_err(|e| s3_error(&format!("read of {key}"), e))?;
        let bytes = object.body.collect().await.map_err(|e| s3_error(&format!("read of {key}"), e))?.into_bytes();
        ltx::decode_header(&bytes).map_err(|e| Error::Internal(format!("{key}: {e}")))
    }

    /// Downloads the object at `key` into the file `to` (streamed), fsynced: its size.
    pub async fn download(&self, key: &str, to: &std::path::Path) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_error(&format!("download of {key}"), e))?;
        // A new file only: never through a link someone planted.
        let mut out =
            tokio::fs::OpenOptions::new().write(true).create_new(true).open(to).await.map_err(Error::internal)?;
        let mut body = object.body;
        let mut size = 0u64;
        while let Some(chunk) = body.try_next().await.map_err(|e| s3_error(&format!("download of {key}"), e))? {
            size += chunk.len() as u64;
            out.write_all(&chunk).await.map_err(Error::internal)?;
        }
        out.sync_all().await.map_err(Error::internal)?;
        Ok(size)
    }

    /// Whether the bucket answers (start-up check, logged only).
    pub async fn probe(&self) -> Result<()> {
        self.client.head_bucket().bucket(&self.bucket).send().await.map_err(|e| s3_error("bucket check", e))?;
        Ok(())
    }
}
