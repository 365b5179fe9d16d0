//! OAuth clients of a tenant (control-plane table `oauth_clients`): the record, the checks on what an admin
//! submits, redirect-URI matching and client authentication; and the admin operations on them (`find`, `create`,
//! `update`, `rotate_secret`), which both the admin API (`oidc::admin_api`) and the admin UI pages
//! (`web::oauth_pages`) call after their access check.
//!
//! Invariants:
//! - A client changes only by `Mutation::PutOAuthClient` / `DeleteOAuthClient`.
//! - A client secret is 256 random bits shown once; only its SHA-256 is stored and it is compared in constant
//!   time (no argon2: the secret is not guessable, so a fast hash is the right tool).
//! - Redirect URIs match exactly, byte for byte. The one exception is RFC 8252 §7.3: a public client's
//!   registered `http://127.0.0.1/…` or `http://[::1]/…` URI matches the same URI on any port.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::app::App;
use crate::control::{Mutation, Tenant};
use crate::crypto;
use crate::error::{Error, Result};
use crate::oidc::settings::{self, OidcSettings};
use crate::tenants::TenantSlug;

/// `confidential` (a server that keeps a secret) or `public` (a browser or native app, without a secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClientType {
    Confidential,
    Public,
}

/// How a client authenticates at the token, revocation and introspection endpoints (RFC 7591 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    None,
}

impl AuthMethod {
    fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::None => "none",
        }
    }

    fn parse(raw: &str) -> AuthMethod {
        match raw {
            "client_secret_post" => AuthMethod::ClientSecretPost,
            "none" => AuthMethod::None,
            _ => AuthMethod::ClientSecretBasic,
        }
    }
}

pub const GRANT_TYPES: &[&str] = &["authorization_code", "refresh_token", "client_credentials"];

/// A client as stored and as the control plane replicates it: its serde form is the mutation's, so it carries
/// `secret_hash` (a replica needs it to authenticate the client). APIs and pages answer `ClientView`, never this.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub client_type: ClientType,
    #[serde(default)]
    pub secret_hash: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub first_party: bool,
    /// May introspect the tokens of every client of the tenant (an API that accepts them); other clients see
    /// only their own tokens as active.
    #[serde(default)]
    pub resource_server: bool,
    pub token_endpoint_auth_method: AuthMethod,
    pub access_token_ttl: Option<u32>,
    pub refresh_token_ttl: Option<u32>,
    pub allowed_cors_origins: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Client {
    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    pub fn access_ttl(&self, tenant: &OidcSettings) -> i64 {
        i64::from(self.access_token_ttl.unwrap_or(tenant.access_token_ttl))
    }

    pub fn refresh_ttl(&self, tenant: &OidcSettings) -> i64 {
        i64::from(self.refresh_token_ttl.unwrap_or(tenant.refresh_token_ttl))
    }

    /// Whether `uri` is one of this client's redirect URIs (exact, or RFC 8252 loopback on any port).
    pub fn redirect_uri_matches(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|registered| {
            registered == uri || (self.client_type == ClientType::Public && loopback_matches(registered, uri))
        })
    }

    /// Checks the secret a confidential client presented, in constant time.
    pub fn secret_matches(&self, presented: &str) -> bool {
        self.secret_hash
            .as_deref()
            .is_some_and(|stored| crypto::constant_time_eq(&crypto::hash_token(presented), stored))
    }
}

/// `http://127.0.0.1:{port}/path` or `http://[::1]:{port}/path` against a registered loopback URI, ignoring
/// the port only.
fn loopback_matches(registered: &str, presented: &str) -> bool {
    let (Ok(r), Ok(p)) = (url::Url::parse(registered), url::Url::parse(presented)) else { return false };
    let loopback = |u: &url::Url| {
        u.scheme() == "http" && matches!(u.host_str(), Some("127.0.0.1") | Some("[::1]")) && u.username().is_empty()
    };
    loopback(&r)
        && loopback(&p)
        && r.host_str() == p.host_str()
        && r.path() == p.path()
        && r.query() == p.query()
        && p.fragment().is_none()
}

/// What an admin sends to create or replace a client. Absent keys take defaults on create and keep their value
/// on update (the handler merges before parsing).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientInput {
    /// 1-100 characters.
    pub name: String,
    #[serde(rename = "type")]
    pub client_type: ClientType,
    /// Exact redirect URIs: `https`, `http` on a loopback host, or (public clients) a reverse-domain private
    /// scheme; at least one with the authorization_code grant. At most 50.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may return to (same rules as `redirect_uris`). At most 50.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Among `authorization_code`, `refresh_token`, `client_credentials` (not for public clients); default
    /// `authorization_code` and `refresh_token`.
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    /// Built-in or tenant custom scopes; default `openid profile email offline_access`. The account scopes are for
    /// first-party clients only.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// The tenant's own app: may hold the account scopes.
    #[serde(default)]
    pub first_party: bool,
    /// May introspect the tokens of every client of the tenant.
    #[serde(default)]
    pub resource_server: bool,
    /// Default `client_secret_basic` for confidential clients, `none` for public ones.
    #[serde(default)]
    pub token_endpoint_auth_method: Option<AuthMethod>,
    /// Seconds; the tenant's `settings.oidc.access_token_ttl` when absent.
    #[serde(default)]
    pub access_token_ttl: Option<u32>,
    /// Seconds; the tenant's `settings.oidc.refresh_token_ttl` when absent.
    #[serde(default)]
    pub refresh_token_ttl: Option<u32>,
    /// Origins (`scheme://host[:port]`) whose browser code may call the token, revocation and userinfo
    /// endpoints for this client. At most 50.
    #[serde(default)]
    pub allowed_cors_origins: Vec<String>,
}

impl ClientInput {
    /// Validates against the tenant's scopes and fills defaults; returns the stored shape (without id/secret).
    pub fn into_client(
        self,
        client_id: String,
        secret_hash: Option<String>,
        tenant: &OidcSettings,
        created_at: i64,
        now: i64,
    ) -> Result<Client> {
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(Error::validation("name must be 1-100 characters"));
        }
        let grant_types = self.grant_types.unwrap_or_else(|| match self.client_type {
            ClientType::Confidential => vec!["authorization_code".into(), "refresh_token".into()],
            ClientType::Public => vec!["authorization_code".into(), "refresh_token".into()],
        });
        for grant in &grant_types {
            if !GRANT_TYPES.contains(&grant.as_str()) {
                return Err(Error::validation(format!(
                    "grant_types: {grant:?} is not one of {}",
                    GRANT_TYPES.join(", ")
                )));
            }
        }
        if grant_types.is_empty() {
            return Err(Error::validation("grant_types must name at least one grant"));
        }
        if self.client_type == ClientType::Public && grant_types.iter().any(|g| g == "client_credentials") {
            return Err(Error::validation("a public client cannot use client_credentials"));
        }
        let auth = self.token_endpoint_auth_method.unwrap_or(match self.client_type {
            ClientType::Confidential => AuthMethod::ClientSecretBasic,
            ClientType::Public => AuthMethod::None,
        });
        match (self.client_type, auth) {
            (ClientType::Public, AuthMethod::None) => {}
            (ClientType::Confidential, AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost) => {}
            _ => {
                return Err(Error::validation(
                    "token_endpoint_auth_method: public clients use none, confidential clients client_secret_basic or client_secret_post",
                ));
            }
        }
        let scopes = self.scopes.unwrap_or_else(|| {
            ["openid", "profile", "email", "offline_access"].iter().map(|s| s.to_string()).collect()
        });
        for scope in &scopes {
            if !tenant.knows_scope(scope) {
                return Err(Error::validation(format!(
                    "scopes: {scope:?} is neither built in nor one of the tenant's custom scopes"
                )));
            }
        }
        if !self.first_party
            && let Some(scope) = scopes.iter().find(|s| settings::FIRST_PARTY_SCOPES.contains(&s.as_str()))
        {
            return Err(Error::validation(format!(
                "scopes: {scope} acts as the user on their account and is only for first-party clients"
            )));
        }
        let uses_code = grant_types.iter().any(|g| g == "authorization_code");
        if uses_code && self.redirect_uris.is_empty() {
            return Err(Error::validation("redirect_uris: the authorization_code grant needs at least one"));
        }
        for uri in &self.redirect_uris {
            check_redirect_uri("redirect_uris", uri, self.client_type)?;
        }
        for uri in &self.post_logout_redirect_uris {
            check_redirect_uri("post_logout_redirect_uris", uri, self.client_type)?;
        }
        for origin in &self.allowed_cors_origins {
            check_origin(origin)?;
        }
        if let Some(ttl) = self.access_token_ttl {
            settings::check_ttl("access_token_ttl", ttl, settings::MAX_ACCESS_TTL)?;
        }
        if let Some(ttl) = self.refresh_token_ttl {
            settings::check_ttl("refresh_token_ttl", ttl, settings::MAX_REFRESH_TTL)?;
        }
        for (field, len) in [
            ("redirect_uris", self.redirect_uris.len()),
            ("post_logout_redirect_uris", self.post_logout_redirect_uris.len()),
            ("allowed_cors_origins", self.allowed_cors_origins.len()),
        ] {
            if len > 50 {
                return Err(Error::validation(format!("{field}: at most 50")));
            }
        }
        Ok(Client {
            client_id,
            name,
            client_type: self.client_type,
            secret_hash,
            redirect_uris: self.redirect_uris,
            post_logout_redirect_uris: self.post_logout_redirect_uris,
            grant_types,
            scopes,
            first_party: self.first_party,
            resource_server: self.resource_server,
            token_endpoint_auth_method: auth,
            access_token_ttl: self.access_token_ttl,
            refresh_token_ttl: self.refresh_token_ttl,
            allowed_cors_origins: self.allowed_cors_origins,
            created_at,
            updated_at: now,
        })
    }
}

/// An absolute URI without a fragment (RFC 6749 §3.1.2). `https` always; `http` only for loopback hosts;
/// a private-use scheme (`com.example.app:/cb`, RFC 8252 §7.1) for public clients.
fn check_redirect_uri(field: &str, uri: &str, client_type: ClientType) -> Result<()> {
    let bad = |why: &str| Err(Error::validation(format!("{field}: {uri:?} {why}")));
    if uri.len() > 2000 || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("is not a valid URI");
    }
    let Ok(parsed) = url::Url::parse(uri) else { return bad("is not an absolute URI") };
    if parsed.fragment().is_some() {
        return bad("must not have a fragment");
    }
    if uri.contains('*') {
        return bad("must not contain wildcards");
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = matches!(parsed.host_str(), Some("127.0.0.1") | Some("[::1]") | Some("localhost"));
            if loopback { Ok(()) } else { bad("uses http; only https, or http on a loopback host, is allowed") }
        }
        scheme if client_type == ClientType::Public && scheme.contains('.') => Ok(()),
        _ => bad("must use https (or a reverse-domain private scheme for native apps)"),
    }
}

/// `scheme://host[:port]`, nothing else.
fn check_origin(origin: &str) -> Result<()> {
    let ok = url::Url::parse(origin).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some()
            && u.path() == "/"
            && u.query().is_none()
            && u.fragment().is_none()
            && !origin.ends_with('/')
            && u.username().is_empty()
    });
    if ok {
        Ok(())
    } else {
        Err(Error::validation(format!("allowed_cors_origins: {origin:?} is not an origin (scheme://host[:port])")))
    }
}

/// A new client id: 128 random bits, URL-safe.
pub fn new_client_id() -> String {
    crypto::random_token("")[..22].to_owned()
}

/// A new client secret and its stored hash.
pub fn new_secret() -> (String, String) {
    let secret = crypto::random_token("ghcs_");
    let hash = crypto::hash_token(&secret);
    (secret, hash)
}

// ---- admin operations ----

/// A client of the tenant; `NotFound("client")` when there is none with this id.
pub async fn find(app: &App, slug: &TenantSlug, id: &str) -> Result<Client> {
    let (s, id) = (slug.clone(), id.to_owned());
    app.control.read(move |conn| get(conn, &s, &id)).await?.ok_or(Error::NotFound("client"))
}

/// Registers a client from an admin's JSON (`ClientInput`): a new id and, for a confidential client, a new secret,
/// returned here once (only its hash is kept).
pub async fn create(app: &App, tenant: &Tenant, body: Value) -> Result<(Client, Option<String>)> {
    let input: ClientInput = serde_json::from_value(body).map_err(|e| Error::validation(format!("client: {e}")))?;
    let (secret, hash) = match input.client_type {
        ClientType::Confidential => {
            let (secret, hash) = new_secret();
            (Some(secret), Some(hash))
        }
        ClientType::Public => (None, None),
    };
    let now = crate::now_unix();
    let client = input.into_client(new_client_id(), hash, &tenant.settings.oidc, now, now)?;
    app.control.apply(Mutation::PutOAuthClient { slug: tenant.slug.clone(), client: client.clone() }).await?;
    Ok((client, secret))
}

/// Applies a partial change, a JSON object of `ClientInput` keys (keys not given keep their value), checked as a
/// whole; the type cannot change, the id, secret and creation time stay.
pub async fn update(app: &App, tenant: &Tenant, current: Client, patch: Value) -> Result<Client> {
    let Value::Object(patch) = patch else { return Err(Error::validation("expected a JSON object")) };
    let mut merged = as_input(&current);
    if patch.get("type").is_some_and(|t| *t != merged["type"]) {
        return Err(Error::validation("type cannot change; create a new client instead"));
    }
    for (k, v) in patch {
        merged[k] = v;
    }
    let input: ClientInput = serde_json::from_value(merged).map_err(|e| Error::validation(format!("client: {e}")))?;
    let client = input.into_client(
        current.client_id.clone(),
        current.secret_hash.clone(),
        &tenant.settings.oidc,
        current.created_at,
        crate::now_unix(),
    )?;
    app.control.apply(Mutation::PutOAuthClient { slug: tenant.slug.clone(), client: client.clone() }).await?;
    Ok(client)
}

/// The client as the `ClientInput` JSON an update merges its patch into: every field an admin sets, nothing else.
fn as_input(client: &Client) -> Value {
    // Destructured without `..`: a new field of `Client` must be placed here, editable or not, on purpose.
    let Client {
        client_id: _,
        name,
        client_type,
        secret_hash: _,
        redirect_uris,
        post_logout_redirect_uris,
        grant_types,
        scopes,
        first_party,
        resource_server,
        token_endpoint_auth_method,
        access_token_ttl,
        refresh_token_ttl,
        allowed_cors_origins,
        created_at: _,
        updated_at: _,
    } = client;
    json!({
        "name": name,
        "type": client_type,
        "redirect_uris": redirect_uris,
        "post_logout_redirect_uris": post_logout_redirect_uris,
        "grant_types": grant_types,
        "scopes": scopes,
        "first_party": first_party,
        "resource_server": resource_server,
        "token_endpoint_auth_method": token_endpoint_auth_method,
        "access_token_ttl": access_token_ttl,
        "refresh_token_ttl": refresh_token_ttl,
        "allowed_cors_origins": allowed_cors_origins,
    })
}

/// Replaces a confidential client's secret; the old one stops working at once. Returns the new secret, once.
pub async fn rotate_secret(app: &App, slug: &TenantSlug, mut client: Client) -> Result<String> {
    if client.client_type != ClientType::Confidential {
        return Err(Error::validation("public clients have no secret"));
    }
    let (secret, hash) = new_secret();
    client.secret_hash = Some(hash);
    client.updated_at = crate::now_unix();
    app.control.apply(Mutation::PutOAuthClient { slug: slug.clone(), client }).await?;
    Ok(secret)
}

// ---- control-plane rows ----

const COLUMNS: &str = "client_id, name, client_type, secret_hash, redirect_uris, post_logout_redirect_uris, grant_types, scopes, first_party, token_endpoint_auth_method, access_token_ttl, refresh_token_ttl, allowed_cors_origins, created_at, updated_at, resource_server";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Client> {
    let list = |i: usize| -> rusqlite::Result<Vec<String>> {
        let raw: String = r.get(i)?;
        serde_json::from_str(&raw)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into()))
    };
    let kind: String = r.get(2)?;
    let method: String = r.get(9)?;
    Ok(Client {
        client_id: r.get(0)?,
        name: r.get(1)?,
        client_type: if kind == "public" { ClientType::Public } else { ClientType::Confidential },
        secret_hash: r.get(3)?,
        redirect_uris: list(4)?,
        post_logout_redirect_uris: list(5)?,
        grant_types: list(6)?,
        scopes: list(7)?,
        first_party: r.get(8)?,
        token_endpoint_auth_method: AuthMethod::parse(&method),
        access_token_ttl: r.get(10)?,
        refresh_token_ttl: r.get(11)?,
        allowed_cors_origins: list(12)?,
        created_at: r.get(13)?,
        updated_at: r.get(14)?,
        resource_server: r.get(15)?,
    })
}

pub fn get(conn: &Connection, slug: &TenantSlug, client_id: &str) -> Result<Option<Client>> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM oauth_clients WHERE slug = ?1 AND client_id = ?2"),
            params![slug.as_str(), client_id],
            from_row,
        )
        .optional()?)
}

pub fn list(conn: &Connection, slug: &TenantSlug) -> Result<Vec<Client>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM oauth_clients WHERE slug = ?1 ORDER BY created_at, client_id"
    ))?;
    let rows = stmt.query_map([slug.as_str()], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Inserts or replaces `client` (used by `control::apply`).
pub fn put(conn: &Connection, slug: &TenantSlug, c: &Client) -> Result<()> {
    let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    let kind = match c.client_type {
        ClientType::Confidential => "confidential",
        ClientType::Public => "public",
    };
    conn.execute(
        &format!(
            "INSERT INTO oauth_clients (slug, {COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
             ON CONFLICT (client_id) DO UPDATE SET name = excluded.name, client_type = excluded.client_type,
               secret_hash = excluded.secret_hash, redirect_uris = excluded.redirect_uris,
               post_logout_redirect_uris = excluded.post_logout_redirect_uris, grant_types = excluded.grant_types,
               scopes = excluded.scopes, first_party = excluded.first_party,
               token_endpoint_auth_method = excluded.token_endpoint_auth_method,
               access_token_ttl = excluded.access_token_ttl, refresh_token_ttl = excluded.refresh_token_ttl,
               allowed_cors_origins = excluded.allowed_cors_origins, updated_at = excluded.updated_at,
               resource_server = excluded.resource_server
             WHERE oauth_clients.slug = excluded.slug"
        ),
        params![
            slug.as_str(),
            c.client_id,
            c.name,
            kind,
            c.secret_hash,
            json(&c.redirect_uris),
            json(&c.post_logout_redirect_uris),
            json(&c.grant_types),
            json(&c.scopes),
            c.first_party,
            c.token_endpoint_auth_method.as_str(),
            c.access_token_ttl,
            c.refresh_token_ttl,
            json(&c.allowed_cors_origins),
            c.created_at,
            c.updated_at,
            c.resource_server,
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(kind: ClientType, uris: &[&str]) -> Client {
        ClientInput {
            name: "App".into(),
            client_type: kind,
            redirect_uris: uris.iter().map(|s| s.to_string()).collect(),
            post_logout_redirect_uris: vec![],
            grant_types: None,
            scopes: None,
            first_party: false,
            resource_server: false,
            token_endpoint_auth_method: None,
            access_token_ttl: None,
            refresh_token_ttl: None,
            allowed_cors_origins: vec![],
        }
        .into_client("c1".into(), None, &OidcSettings::default(), 0, 0)
        .unwrap()
    }

    #[test]
    fn redirect_uris_match_exactly_except_loopback_ports_for_public_clients() {
        let web = client(ClientType::Confidential, &["https://app.example/cb", "http://127.0.0.1/cb"]);
        assert!(web.redirect_uri_matches("https://app.example/cb"));
        for other in [
            "https://app.example/cb/",
            "https://app.example/cb?x=1",
            "https://APP.example/cb",
            "http://127.0.0.1:5000/cb",
        ] {
            assert!(!web.redirect_uri_matches(other), "{other}");
        }
        let native = client(ClientType::Public, &["http://127.0.0.1/cb", "com.example.app:/oauth"]);
        assert!(native.redirect_uri_matches("http://127.0.0.1:51234/cb"));
        assert!(native.redirect_uri_matches("com.example.app:/oauth"));
        assert!(!native.redirect_uri_matches("http://127.0.0.1:51234/other"));
        assert!(!native.redirect_uri_matches("http://localhost:51234/cb"));
    }

    #[test]
    fn bad_registrations_are_refused() {
        for uri in
            ["https://app.example/*", "http://app.example/cb", "https://app.example/cb#x", "/cb", "javascript:alert(1)"]
        {
            assert!(check_redirect_uri("redirect_uris", uri, ClientType::Confidential).is_err(), "{uri}");
        }
        assert!(check_origin("https://app.example").is_ok());
        assert!(check_origin("https://app.example/").is_err());
        assert!(check_origin("https://app.example/x").is_err());
    }
}
