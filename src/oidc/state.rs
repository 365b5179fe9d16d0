//! The provider's in-memory state: per-tenant key rings (decrypted once), clients, CORS origins and the
//! discovery document, each cached in moka and invalidated by the control plane's apply listener; and the
//! lookups the machine endpoints start with: the active tenant of the path (`tenant_of`) and its open database
//! (`tenant_db`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use moka::sync::Cache;
use rusqlite::params;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::control::{Mutation, Tenant};
use crate::db::registry::TenantDb;
use crate::error::{Error, Result};
use crate::oidc::clients::{self, Client};
use crate::oidc::keys::{self, KeyRing, PublicKey, SigningAlg, SigningKey, VerifiedTokens};
use crate::oidc::settings::BUILT_IN_CLAIMS;
use crate::tenants::{TenantSlug, TenantStatus};

/// A cached response body with its entity tag.
pub struct Document {
    pub body: Bytes,
    pub etag: String,
}

impl Document {
    fn new(body: Vec<u8>) -> Document {
        let digest = Sha256::digest(&body);
        let etag = format!("\"{}\"", hex_prefix(&digest, 12));
        Document { body: Bytes::from(body), etag }
    }
}

fn hex_prefix(bytes: &[u8], n: usize) -> String {
    bytes.iter().take(n).map(|b| format!("{b:02x}")).collect()
}

pub struct Oidc {
    rings: Cache<TenantSlug, Arc<KeyRing>>,
    clients: Cache<(TenantSlug, String), Option<Arc<Client>>>,
    origins: Cache<TenantSlug, Arc<HashSet<String>>>,
    discovery: Cache<TenantSlug, Arc<Document>>,
    /// Access tokens verified recently (all tenants; see `VerifiedTokens`).
    pub verified: VerifiedTokens,
}

impl Default for Oidc {
    fn default() -> Self {
        // Entries also expire on a timer so that a write by another process (an offline CLI command) shows.
        let ttl = Duration::from_secs(300);
        Oidc {
            rings: Cache::builder().max_capacity(10_000).time_to_live(ttl).build(),
            clients: Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
            origins: Cache::builder().max_capacity(10_000).time_to_live(ttl).build(),
            discovery: Cache::builder().max_capacity(10_000).time_to_live(ttl).build(),
            verified: VerifiedTokens::new(16 << 20),
        }
    }
}

/// The issuer of a tenant: `{public_url}/t/{slug}`, no trailing slash.
pub fn issuer(app: &App, slug: &str) -> String {
    format!("{}/t/{slug}", app.config.public_url.trim_end_matches('/'))
}

/// The active tenant in the path, from the cache (no database file opened).
pub async fn tenant_of(app: &App, slug: &str) -> Result<Arc<Tenant>, Error> {
    let slug = TenantSlug::parse(slug).map_err(|_| Error::TenantNotFound)?;
    let tenant = app.control.tenant(&slug).await?.ok_or(Error::TenantNotFound)?;
    if tenant.status == TenantStatus::Suspended {
        return Err(Error::TenantSuspended);
    }
    Ok(tenant)
}

/// The tenant's open database (the blocking pool only when the pool must be opened).
pub async fn tenant_db(app: &App, slug: &TenantSlug) -> Result<TenantDb, Error> {
    app.tenants.load(slug).await
}

impl Oidc {
    /// Drops what `mutation` made stale.
    pub fn invalidate(&self, mutation: &Mutation) {
        match mutation {
            // A cached ring also stands for "this tenant is active" (`published_ring`), so status changes drop it.
            Mutation::UpdateTenant { slug, .. } | Mutation::SetTenantStatus { slug, .. } => {
                self.rings.invalidate(slug);
                self.discovery.invalidate(slug);
            }
            Mutation::ArchiveTenant { slug, .. } => {
                self.rings.invalidate(slug);
                self.discovery.invalidate(slug);
                self.origins.invalidate(slug);
                let slug = slug.clone();
                let _ = self.clients.invalidate_entries_if(move |(s, _), _| *s == slug);
            }
            Mutation::PutOAuthClient { slug, client } => {
                self.clients.invalidate(&(slug.clone(), client.client_id.clone()));
                self.origins.invalidate(slug);
            }
            Mutation::DeleteOAuthClient { slug, client_id } => {
                self.clients.invalidate(&(slug.clone(), client_id.clone()));
                self.origins.invalidate(slug);
            }
            Mutation::AddSigningKey { slug, .. } => self.rings.invalidate(slug),
            Mutation::PurgeSigningKeys { .. } => self.rings.invalidate_all(),
            _ => {}
        }
    }

    /// Drops everything (a snapshot replaced control.db as a whole).
    pub fn invalidate_all(&self) {
        self.rings.invalidate_all();
        self.discovery.invalidate_all();
        self.origins.invalidate_all();
        self.clients.invalidate_all();
    }

    /// The key ring of an active tenant, for the public documents: one cache lookup when warm. A cached ring is
    /// trusted only when it was built while its tenant was active; any change of the tenant (settings, status,
    /// archive) drops its ring.
    pub async fn published_ring(&self, app: &Arc<App>, slug: &TenantSlug) -> Result<Arc<KeyRing>> {
        if let Some(ring) = self.rings.get(slug)
            && ring.tenant_active
        {
            return Ok(ring);
        }
        let tenant = tenant_of(app, slug.as_str()).await?;
        self.keyring(app, &tenant).await
    }

    /// The tenant's key ring, built from its published keys on first use (a read: it never creates a key).
    pub async fn keyring(&self, app: &Arc<App>, tenant: &Arc<Tenant>) -> Result<Arc<KeyRing>> {
        if let Some(ring) = self.rings.get(&tenant.slug) {
            return Ok(ring);
        }
        let (app, tenant) = (app.clone(), tenant.clone());
        tokio::task::spawn_blocking(move || {
            app.oidc.rings.try_get_with_by_ref(&tenant.slug, || load_ring(&app, &tenant).map(Arc::new)).map_err(
                |e: Arc<Error>| match e.as_ref() {
                    // A tenant whose key is still to come is not ready, not broken.
                    Error::NotReady(why) => Error::NotReady(why.clone()),
                    _ => Error::internal(e),
                },
            )
        })
        .await?
    }

    /// A client of the tenant, or `None`.
    pub async fn client(&self, app: &App, slug: &TenantSlug, client_id: &str) -> Result<Option<Arc<Client>>> {
        if client_id.is_empty() || client_id.len() > 100 {
            return Ok(None);
        }
        let key = (slug.clone(), client_id.to_owned());
        if let Some(hit) = self.clients.get(&key) {
            return Ok(hit);
        }
        let (s, id) = key.clone();
        let found = app.control.read(move |conn| clients::get(conn, &s, &id)).await?.map(Arc::new);
        self.clients.insert(key, found.clone());
        Ok(found)
    }

    /// Every origin any client of the tenant allows (CORS).
    pub async fn origins(&self, app: &App, slug: &TenantSlug) -> Result<Arc<HashSet<String>>> {
        if let Some(hit) = self.origins.get(slug) {
            return Ok(hit);
        }
        let s = slug.clone();
        let all = app.control.read(move |conn| clients::list(conn, &s)).await?;
        let set: HashSet<String> = all.into_iter().flat_map(|c| c.allowed_cors_origins).collect();
        let set = Arc::new(set);
        self.origins.insert(slug.clone(), set.clone());
        Ok(set)
    }

    /// The discovery document of the tenant.
    pub fn discovery(&self, app: &App, tenant: &Tenant) -> Arc<Document> {
        if let Some(hit) = self.discovery.get(&tenant.slug) {
            return hit;
        }
        let doc = Arc::new(Document::new(discovery_json(app, tenant).to_string().into_bytes()));
        self.discovery.insert(tenant.slug.clone(), doc.clone());
        doc
    }
}

fn discovery_json(app: &App, tenant: &Tenant) -> Value {
    let iss = issuer(app, tenant.slug.as_str());
    let oidc = &tenant.settings.oidc;
    let mut claims: Vec<String> = BUILT_IN_CLAIMS.iter().map(|c| c.to_string()).collect();
    for scope in &oidc.custom_scopes {
        for claim in &scope.claims {
            if !claims.contains(claim) {
                claims.push(claim.clone());
            }
        }
    }
    json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/oauth2/authorize"),
        "token_endpoint": format!("{iss}/oauth2/token"),
        "userinfo_endpoint": format!("{iss}/oauth2/userinfo"),
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "revocation_endpoint": format!("{iss}/oauth2/revoke"),
        "introspection_endpoint": format!("{iss}/oauth2/introspect"),
        "end_session_endpoint": format!("{iss}/oauth2/logout"),
        "scopes_supported": oidc.all_scopes(),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [oidc.signing_alg.as_str()],
        "userinfo_signing_alg_values_supported": ["none"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": claims,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "prompt_values_supported": ["none", "login", "consent"],
        "authorization_response_iss_parameter_supported": true,
        "ui_locales_supported": [tenant.settings.locale],
    })
}

/// A stored key row.
struct KeyRow {
    kid: String,
    alg: SigningAlg,
    public_jwk: String,
    private_sealed: String,
    expires_at: Option<i64>,
}

fn published_keys(app: &App, slug: &TenantSlug, now: i64) -> Result<Vec<KeyRow>> {
    let slug = slug.clone();
    app.control.read_blocking(move |conn| {
        let mut stmt = conn.prepare_cached(
            "SELECT kid, alg, public_jwk, private_sealed, expires_at FROM signing_keys
             WHERE slug = ?1 AND (expires_at IS NULL OR expires_at > ?2)
             ORDER BY expires_at IS NOT NULL, created_at DESC, kid",
        )?;
        let rows = stmt.query_map(params![slug.as_str(), now], |r| {
            let alg: String = r.get(1)?;
            Ok(KeyRow {
                kid: r.get(0)?,
                alg: SigningAlg::parse(&alg).unwrap_or(SigningAlg::Rs256),
                public_jwk: r.get(2)?,
                private_sealed: r.get(3)?,
                expires_at: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    })
}

/// Keys of a tenant as the admin API lists them.
pub fn list_keys(app: &App, slug: &TenantSlug) -> Result<Vec<Value>> {
    let now = crate::now_unix();
    Ok(published_keys(app, slug, now)?
        .into_iter()
        .map(|k| {
            json!({
                "kid": k.kid,
                "alg": k.alg.as_str(),
                "status": if k.expires_at.is_none() { "active" } else { "retiring" },
                "retires_at": k.expires_at.map(crate::format_time),
                "public_jwk": serde_json::from_str::<Value>(&k.public_jwk).unwrap_or(Value::Null),
            })
        })
        .collect())
}

/// Builds the key ring from the published keys. A read never writes: a tenant without an active key (one created
/// before keys were made with the tenant, until the keeper has run) answers 503 `not_ready` here rather than
/// creating a key on whichever node took the request.
fn load_ring(app: &App, tenant: &Tenant) -> Result<KeyRing> {
    let now = crate::now_unix();
    let rows = published_keys(app, &tenant.slug, now)?;
    let active = rows
        .iter()
        .find(|r| r.expires_at.is_none())
        .ok_or_else(|| Error::NotReady(format!("tenant {} has no signing key yet", tenant.slug)))?;
    let pkcs8 = app.master_key.open(&active.private_sealed, &seal_context(&tenant.slug, &active.kid))?;
    let signing = SigningKey::open(&active.kid, active.alg, &pkcs8)?;
    let mut public = HashMap::new();
    let mut jwks = Vec::new();
    for row in &rows {
        let jwk: Value = serde_json::from_str(&row.public_jwk).map_err(Error::internal)?;
        public.insert(row.kid.clone(), PublicKey::from_jwk(row.alg, &jwk)?);
        jwks.push(jwk);
    }
    let doc = Document::new(json!({ "keys": jwks }).to_string().into_bytes());
    Ok(KeyRing {
        generation: KeyRing::next_generation(),
        tenant_active: tenant.status == crate::tenants::TenantStatus::Active,
        issuer: issuer(app, tenant.slug.as_str()),
        active: Arc::new(signing),
        public,
        jwks: doc.body,
        jwks_etag: doc.etag,
    })
}

fn seal_context(slug: &TenantSlug, kid: &str) -> String {
    format!("signing-key:{slug}:{kid}")
}

/// Makes sure `tenant` has an active signing key of its configured algorithm, proposing one (`AddSigningKey`)
/// when it has none or its active key has another algorithm. Key upkeep is the job of one owner — the node that
/// created or reconfigured the tenant, and this node's keeper at start and in housekeeping (the Raft leader
/// later) — never of a read. Owners racing are safe: each proposal names the key it replaces, and the loser's is
/// refused, so this answers `None` when someone else made the key meanwhile. Answers the new key's id, if made.
pub fn ensure_signing_key(app: &App, tenant: &Tenant) -> Result<Option<String>> {
    let wanted = tenant.settings.oidc.signing_alg;
    let rows = published_keys(app, &tenant.slug, crate::now_unix())?;
    let active = rows.iter().find(|r| r.expires_at.is_none());
    if active.is_some_and(|r| r.alg == wanted) {
        return Ok(None);
    }
    match rotate_blocking(app, tenant, wanted, active.map(|r| r.kid.clone())) {
        Ok(kid) => Ok(Some(kid)),
        Err(Error::Conflict(_)) => Ok(None),
        Err(err) => Err(err),
    }
}

/// The keeper's pass: every tenant whose active key is missing or of another algorithm than its settings ask
/// gets one. Returns how many keys it made.
pub fn ensure_all_signing_keys(app: &App) -> Result<usize> {
    let tenants = app.control.read_blocking(|conn| crate::control::tables::list_tenants(conn, None, u32::MAX, None))?;
    let mut made = 0;
    for tenant in tenants {
        if ensure_signing_key(app, &tenant)?.is_some() {
            made += 1;
        }
    }
    Ok(made)
}

/// The active key of `tenant` as this node sees it (what a rotation proposes to replace).
pub fn active_kid(app: &App, tenant: &Tenant) -> Result<Option<String>> {
    let rows = published_keys(app, &tenant.slug, crate::now_unix())?;
    Ok(rows.into_iter().find(|r| r.expires_at.is_none()).map(|r| r.kid))
}

/// Creates a new active key with `alg` in place of `replaces` (the active key the caller saw; the entry is
/// refused with `Conflict` if another became active meanwhile); the previous one stays published until every
/// token it signed has expired (the longest ID/access token lifetime of the tenant and its clients, plus a
/// minute of clock skew).
pub fn rotate_blocking(app: &App, tenant: &Tenant, alg: SigningAlg, replaces: Option<String>) -> Result<String> {
    let generated = keys::generate(alg)?;
    let sealed = app.master_key.seal(&generated.pkcs8, &seal_context(&tenant.slug, &generated.kid));
    let now = crate::now_unix();
    let slug = tenant.slug.clone();
    let longest_client = app
        .control
        .read_blocking(move |conn| Ok(clients::list(conn, &slug)?.iter().filter_map(|c| c.access_token_ttl).max()))?;
    let oidc = &tenant.settings.oidc;
    let longest = oidc.access_token_ttl.max(oidc.id_token_ttl).max(longest_client.unwrap_or(0));
    app.control.apply_blocking(Mutation::AddSigningKey {
        slug: tenant.slug.clone(),
        kid: generated.kid.clone(),
        alg,
        public_jwk: generated.public_jwk,
        private_sealed: sealed,
        at: now,
        retire_previous_at: now + i64::from(longest) + 60,
        replaces: Some(replaces),
    })?;
    tracing::info!(tenant = %tenant.slug, kid = %generated.kid, %alg, "signing key created");
    Ok(generated.kid)
}
