//! `Mutation`: every change to the control plane, as data.
//!
//! A mutation carries every value it needs (ids, hashes, timestamps, sealed secrets) so that applying it is
//! deterministic: the same mutation applied on any node yields the same rows. That is what lets Raft replicate
//! the log of mutations later without features noticing.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Largest piece of a blob one `PutBlobChunk` carries (its entry, base64 and all, stays under 1 MiB).
pub const CHUNK_BYTES: usize = 512 * 1024;
/// Largest blob (`total` × `CHUNK_BYTES`), checked when a chunk is applied.
pub const MAX_BLOB_BYTES: usize = 64 << 20;
/// Most bytes of unfinished uploads one tenant may have pending.
pub const MAX_PENDING_BYTES: usize = 64 << 20;

use crate::admin::Scope;
use crate::email::smtp::SmtpRecord;
use crate::oidc::clients::Client;
use crate::oidc::keys::SigningAlg;
use crate::plugins::records::PluginSettings;
use crate::tenants::{TenantSettings, TenantSlug, TenantStatus};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Mutation {
    /// Records the master-key check value of a new data dir.
    InitKeyCheck {
        value: String,
    },
    /// `home_node` is the proposing node (it keeps the file); `incarnation` a fresh UUIDv7 made by the proposer,
    /// stamped into the tenant's file by the home node's listener.
    CreateTenant {
        slug: TenantSlug,
        name: String,
        settings: TenantSettings,
        at: i64,
        #[serde(default)]
        home_node: Option<u64>,
        #[serde(default)]
        incarnation: Option<String>,
    },
    /// Makes `node` the home of every tenant that has none (tenants made before nodes had ids).
    AdoptTenants {
        node: u64,
    },
    /// Changes name and/or settings; `None` leaves a field as it is. The settings change is the caller's patch,
    /// merged into the settings `apply` finds (intent, not a snapshot: two patches of different keys both land).
    UpdateTenant {
        slug: TenantSlug,
        name: Option<String>,
        settings_patch: Option<serde_json::Value>,
        at: i64,
    },
    SetTenantStatus {
        slug: TenantSlug,
        status: TenantStatus,
        at: i64,
    },
    /// Removes the tenant and records where its file is archived; `incarnation` is the one the proposer saw, so
    /// the home node's listener moves that tenant's file and never a newer tenant's of the same slug.
    ArchiveTenant {
        slug: TenantSlug,
        file: String,
        at: i64,
        #[serde(default)]
        incarnation: Option<String>,
    },
    /// Replaces a tenant's file by one a live restore staged (`restore/{slug}-{incarnation}.db`): the tenant's
    /// incarnation becomes `incarnation` (the restored file replicates into a new root, its history having
    /// diverged), and the home node's listener moves the file it replaces to `archive`. `previous` is the
    /// incarnation the proposer saw: a tenant re-created or restored meanwhile refuses the entry.
    RestoreTenant {
        slug: TenantSlug,
        incarnation: String,
        previous: Option<String>,
        archive: String,
        at: i64,
    },
    CreateOperator {
        id: String,
        email: String,
        password_hash: String,
        scope: Scope,
        at: i64,
    },
    /// Removes an admin account (a tenant admin) and its sessions.
    DeleteOperator {
        id: String,
    },
    CreateApiToken {
        id: String,
        name: String,
        token_hash: String,
        scope: Scope,
        created_by: Option<String>,
        at: i64,
        expires_at: Option<i64>,
    },
    /// Installs (or replaces) the token given by `GATEHOUSE_BOOTSTRAP_TOKEN`.
    SetBootstrapToken {
        token_hash: String,
        at: i64,
    },
    DeleteApiToken {
        id: String,
    },
    CreateAdminSession {
        id_hash: String,
        operator_id: String,
        csrf_token: String,
        at: i64,
        expires_at: i64,
    },
    DeleteAdminSession {
        id_hash: String,
    },
    PurgeExpiredSessions {
        now: i64,
    },
    /// Sets (or with `None` removes) a tenant's SMTP transport; the password inside is already sealed.
    SetTenantSmtp {
        slug: TenantSlug,
        smtp: Option<SmtpRecord>,
    },
    /// Sets (or with `None` removes) one of a tenant's integrations (`stripe`, `carrier`); its secrets are
    /// already sealed.
    SetTenantIntegration {
        slug: TenantSlug,
        kind: String,
        integration: Option<Integration>,
    },
    /// Creates or replaces an OAuth client (its secret hash included).
    PutOAuthClient {
        slug: TenantSlug,
        client: Client,
    },
    DeleteOAuthClient {
        slug: TenantSlug,
        client_id: String,
    },
    /// Adds a signing key as the tenant's active one; the keys active until now stay published until
    /// `retire_previous_at`. `replaces` is the active key the proposer saw (`null`: none): if another key became
    /// active meanwhile, or the tenant's settings now ask for another algorithm, the entry is refused
    /// (`conflict`), so owners racing never leave two new keys or an outdated algorithm. (Absent in entries
    /// written before it existed: unconditional.)
    AddSigningKey {
        slug: TenantSlug,
        kid: String,
        alg: SigningAlg,
        public_jwk: String,
        private_sealed: String,
        at: i64,
        retire_previous_at: i64,
        #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::control::double_option")]
        replaces: Option<Option<String>>,
    },
    /// Deletes signing keys whose tokens have all expired.
    PurgeSigningKeys {
        now: i64,
    },
    /// Creates a plugin or changes its settings (its world never changes).
    PutPlugin {
        slug: TenantSlug,
        plugin: PluginSettings,
        at: i64,
    },
    /// One piece (at most `CHUNK_BYTES`) of an upload `upload` (a UUID the proposer made) by tenant `slug` of a
    /// blob named by the SHA-256 of the whole; `total` pieces make it. Large payloads (plugin components) travel
    /// as these, so no entry exceeds 1 MiB.
    PutBlobChunk {
        slug: TenantSlug,
        upload: String,
        sha256: String,
        seq: u32,
        total: u32,
        #[serde(with = "crate::plugins::records::base64_bytes")]
        data: Vec<u8>,
        at: i64,
    },
    /// Drops chunks of blobs that were never completed (a proposer that stopped half-way) older than `before`.
    PurgeBlobChunks {
        before: i64,
    },
    /// Adds the uploaded, validated component whose chunks are in (upload `upload`, checked against `sha256`)
    /// as the plugin's next version, inactive; the version number is assigned here, one above the highest, and
    /// is the outcome.
    AddPluginVersion {
        slug: TenantSlug,
        name: String,
        upload: String,
        sha256: String,
        at: i64,
    },
    /// Activates a version (`Some`, also the rollback) or deactivates the plugin (`None`).
    SetPluginActive {
        slug: TenantSlug,
        name: String,
        version: Option<u32>,
        at: i64,
    },
    DeletePlugin {
        slug: TenantSlug,
        name: String,
    },
}

/// What applying an entry came to, the same on every node: applied (with a value `apply` assigned, such as a
/// plugin version number), or refused for a business reason with nothing changed. A refused entry still counts
/// as applied for `last_applied`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Applied {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assigned: Option<u64>,
    },
    Refused {
        code: String,
        message: String,
    },
}

/// A tenant's integration with an outside service, as the control plane keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Integration {
    /// What may be shown again (a publishable key).
    pub config: serde_json::Value,
    /// The secrets as one JSON object, sealed with the context `integration:{kind}:{slug}`.
    pub secrets_sealed: String,
    pub updated_at: i64,
}

impl Mutation {
    /// The tenant whose cached control-plane record this mutation changes, if any.
    pub fn touched_tenant(&self) -> Option<&TenantSlug> {
        match self {
            Mutation::CreateTenant { slug, .. }
            | Mutation::UpdateTenant { slug, .. }
            | Mutation::SetTenantStatus { slug, .. }
            | Mutation::ArchiveTenant { slug, .. }
            | Mutation::RestoreTenant { slug, .. }
            | Mutation::SetTenantSmtp { slug, .. } => Some(slug),
            _ => None,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Mutation::InitKeyCheck { .. } => "init_key_check",
            Mutation::CreateTenant { .. } => "create_tenant",
            Mutation::AdoptTenants { .. } => "adopt_tenants",
            Mutation::PutBlobChunk { .. } => "put_blob_chunk",
            Mutation::PurgeBlobChunks { .. } => "purge_blob_chunks",
            Mutation::UpdateTenant { .. } => "update_tenant",
            Mutation::SetTenantStatus { .. } => "set_tenant_status",
            Mutation::ArchiveTenant { .. } => "archive_tenant",
            Mutation::RestoreTenant { .. } => "restore_tenant",
            Mutation::CreateOperator { .. } => "create_operator",
            Mutation::DeleteOperator { .. } => "delete_operator",
            Mutation::CreateApiToken { .. } => "create_api_token",
            Mutation::SetBootstrapToken { .. } => "set_bootstrap_token",
            Mutation::DeleteApiToken { .. } => "delete_api_token",
            Mutation::CreateAdminSession { .. } => "create_admin_session",
            Mutation::DeleteAdminSession { .. } => "delete_admin_session",
            Mutation::PurgeExpiredSessions { .. } => "purge_expired_sessions",
            Mutation::SetTenantSmtp { .. } => "set_tenant_smtp",
            Mutation::SetTenantIntegration { .. } => "set_tenant_integration",
            Mutation::PutOAuthClient { .. } => "put_oauth_client",
            Mutation::DeleteOAuthClient { .. } => "delete_oauth_client",
            Mutation::AddSigningKey { .. } => "add_signing_key",
            Mutation::PurgeSigningKeys { .. } => "purge_signing_keys",
            Mutation::PutPlugin { .. } => "put_plugin",
            Mutation::AddPluginVersion { .. } => "add_plugin_version",
            Mutation::SetPluginActive { .. } => "set_plugin_active",
            Mutation::DeletePlugin { .. } => "delete_plugin",
        }
    }
}

/// Sorts an error met while applying an entry: a business refusal (the same on every node: an outcome; its code
/// and the error the proposer gets) or this node failing (storage, a bug: `Err`). Only the refusals `apply` can
/// decide from the state are listed; a constraint violation is the state refusing too.
pub(super) fn refusal(err: Error) -> std::result::Result<(&'static str, Error), Error> {
    match err {
        Error::Sqlite(rusqlite::Error::SqliteFailure(e, ref message))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            let what = message.clone().unwrap_or_else(|| "a constraint".into());
            Ok(("conflict", Error::Conflict(format!("refused by the control plane: {what}"))))
        }
        refused @ (Error::BadRequest(_)
        | Error::Validation(_)
        | Error::NotFound(_)
        | Error::TenantNotFound
        | Error::Conflict(_)) => Ok((refused.status_and_code().1, refused)),
        failure => Err(failure),
    }
}
