//! The bucket side: uploading spooled LTX files with the `litestream-timestamp` metadata Litestream's restore
//! reads, and finding the newest TXID under a replica root (a root taken up again without a local position).

use std::time::Duration;

use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::primitives::ByteStream;

use crate::backup::BackupConfig;
use crate::error::{Error, Result};

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

    /// The highest TXID any LTX file under `root` reaches (0: none).
    pub async fn max_txid(&self, root: &str) -> Result<u64> {
        let mut highest = 0;
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(format!("{}/", self.object_key(root)))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| s3_error("list", e))?;
            for object in page.contents() {
                let name = object.key().and_then(|k| k.rsplit('/').next()).unwrap_or("");
                if let Some((_, max)) = name.strip_suffix(".ltx").and_then(|n| n.split_once('-'))
                    && let Ok(max) = u64::from_str_radix(max, 16)
                {
                    highest = highest.max(max);
                }
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => return Ok(highest),
            }
        }
    }

    /// Whether the bucket answers (start-up check, logged only).
    pub async fn probe(&self) -> Result<()> {
        self.client.head_bucket().bucket(&self.bucket).send().await.map_err(|e| s3_error("bucket check", e))?;
        Ok(())
    }
}
