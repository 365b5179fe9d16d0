//! Minting and checking tokens: ID tokens, RFC 9068 access tokens, opaque refresh tokens.
//!
//! Claims added by plugins arrive as `extra` maps. Invariant: nothing overrides a claim the server set; plugin
//! claims and custom-scope claims named in `PROTECTED_CLAIMS` are dropped (and logged).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::control::Tenant;
use crate::crypto;
use crate::db::{self, registry::TenantDb};
use crate::error::{Error, Result};
use crate::identity::users::User;
use crate::oidc::clients::Client;
use crate::oidc::keys::{KeyRing, Rejected, SigningKey, Typ, VerifiedTokens};
use crate::oidc::settings::is_protected_claim;
use crate::oidc::store;

/// Who a user token is for and what it may carry.
pub struct UserGrant {
    pub user: User,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    pub scope: Vec<String>,
    /// The session the tokens came from (the ID token's `sid`); none on a refresh of an offline grant.
    pub session_id: Option<String>,
    /// Whether access tokens die with the session (not for offline_access grants).
    pub bound_to_session: bool,
    pub auth_time: i64,
    pub amr: String,
    pub nonce: Option<String>,
    /// Claims from plugins (post-login hook): added to both tokens unless protected or already set.
    pub extra: Map<String, Value>,
}

/// What the token endpoint answers.
pub struct Minted {
    pub access_token: String,
    pub expires_in: i64,
    pub scope: String,
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
}

impl Minted {
    pub fn to_json(&self) -> Value {
        let mut body = json!({
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        });
        if let Some(id) = &self.id_token {
            body["id_token"] = json!(id);
        }
        if let Some(refresh) = &self.refresh_token {
            body["refresh_token"] = json!(refresh);
        }
        body
    }
}

/// A fresh `jti`: 128 random bits.
pub fn new_jti() -> String {
    crypto::random_token("")[..22].to_owned()
}

/// Signs on the request task for fast algorithms, on the blocking pool for RSA.
pub async fn sign(key: &Arc<SigningKey>, typ: Typ, claims: Value) -> Result<String> {
    if key.alg.is_slow() {
        let key = key.clone();
        tokio::task::spawn_blocking(move || key.sign(typ, &claims)).await?
    } else {
        key.sign(typ, &claims)
    }
}

/// Signs several JWTs with one hop to the blocking pool (RSA) or none.
pub async fn sign_all(key: &Arc<SigningKey>, jobs: Vec<(Typ, Value)>) -> Result<Vec<String>> {
    if key.alg.is_slow() {
        let key = key.clone();
        tokio::task::spawn_blocking(move || jobs.into_iter().map(|(typ, c)| key.sign(typ, &c)).collect()).await?
    } else {
        jobs.into_iter().map(|(typ, c)| key.sign(typ, &c)).collect()
    }
}

/// Adds plugin claims to `target`: a protected name or a claim already set is dropped and logged.
fn merge_extra(target: &mut Value, extra: &Map<String, Value>) {
    if let Value::Object(map) = target {
        for (k, v) in extra {
            if is_protected_claim(k) || map.contains_key(k) {
                tracing::warn!(claim = %k, "a plugin claim was dropped: the server sets this claim");
                continue;
            }
            map.insert(k.clone(), v.clone());
        }
    }
}

/// Adds released user claims to `target` without replacing any claim already there.
fn add_absent(target: &mut Value, claims: Map<String, Value>) {
    if let Value::Object(map) = target {
        for (k, v) in claims {
            map.entry(k).or_insert(v);
        }
    }
}

/// RFC 9068 access token claims for a user.
pub fn user_access_claims(ring: &KeyRing, client: &Client, g: &UserGrant, jti: &str, now: i64, ttl: i64) -> Value {
    let mut claims = json!({
        "iss": ring.issuer,
        "sub": g.user.id,
        "aud": ring.issuer,
        "client_id": client.client_id,
        "iat": now,
        "exp": now + ttl,
        "jti": jti,
        "scope": g.scope.join(" "),
        "auth_time": g.auth_time,
        "roles": g.roles,
    });
    if g.bound_to_session
        && let Some(sid) = &g.session_id
    {
        claims["sid"] = json!(sid);
    }
    if !g.permissions.is_empty() {
        claims["permissions"] = json!(g.permissions);
    }
    merge_extra(&mut claims, &g.extra);
    claims
}

/// OIDC Core ID token claims.
pub fn id_claims(
    ring: &KeyRing,
    tenant: &Tenant,
    client: &Client,
    g: &UserGrant,
    access_token: &str,
    now: i64,
    with_nonce: bool,
) -> Value {
    let mut claims = json!({
        "iss": ring.issuer,
        "sub": g.user.id,
        "aud": client.client_id,
        "azp": client.client_id,
        "iat": now,
        "exp": now + i64::from(tenant.settings.oidc.id_token_ttl),
        "auth_time": g.auth_time,
        "at_hash": ring.active.half_hash(access_token),
        "amr": g.amr.split(' ').filter(|s| !s.is_empty()).collect::<Vec<_>>(),
    });
    if let Some(sid) = &g.session_id {
        claims["sid"] = json!(sid);
    }
    if with_nonce && let Some(nonce) = &g.nonce {
        claims["nonce"] = json!(nonce);
    }
    add_absent(&mut claims, user_claims(tenant, &g.user, &g.scope, &g.roles));
    merge_extra(&mut claims, &g.extra);
    claims
}

/// The claims `scope` releases about `user` (userinfo and ID token).
pub fn user_claims(tenant: &Tenant, user: &User, scope: &[String], roles: &[String]) -> Map<String, Value> {
    let mut out = Map::new();
    let has = |s: &str| scope.iter().any(|x| x == s);
    if has("email") {
        out.insert("email".into(), json!(user.email));
        out.insert("email_verified".into(), json!(user.email_verified));
    }
    if has("profile") {
        out.insert("name".into(), json!(user.name.clone().unwrap_or_default()));
        out.insert("updated_at".into(), json!(user.updated_at));
        out.insert("roles".into(), json!(roles));
    }
    for custom in &tenant.settings.oidc.custom_scopes {
        if has(&custom.name) {
            // Settings refuse protected names; the check here covers settings saved before that rule.
            for claim in custom.claims.iter().filter(|c| !is_protected_claim(c)) {
                if let Some(v) = user.fields.get(claim) {
                    out.insert(claim.clone(), v.clone());
                }
            }
        }
    }
    out
}

/// The permissions a user's token carries: those of the user's roles that a granted custom scope covers.
pub fn granted_permissions(tenant: &Tenant, scope: &[String], user_permissions: &[String]) -> Vec<String> {
    let covered: Vec<&String> = tenant
        .settings
        .oidc
        .custom_scopes
        .iter()
        .filter(|s| scope.contains(&s.name))
        .flat_map(|s| s.permissions.iter())
        .collect();
    let mut out: Vec<String> =
        user_permissions.iter().filter(|p| covered.iter().any(|c| c == p || c.as_str() == "*")).cloned().collect();
    out.sort();
    out.dedup();
    out
}

/// A verified, live access token.
pub struct AccessToken {
    pub claims: Value,
}

impl AccessToken {
    pub fn sub(&self) -> &str {
        self.claims["sub"].as_str().unwrap_or_default()
    }

    pub fn client_id(&self) -> &str {
        self.claims["client_id"].as_str().unwrap_or_default()
    }

    pub fn scopes(&self) -> Vec<String> {
        self.claims["scope"]
            .as_str()
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Whether the token's `scope` claim names `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.claims["scope"].as_str().unwrap_or_default().split(' ').any(|s| s == scope)
    }

    /// Whether it was issued to a user (not a client_credentials token).
    pub fn is_user(&self) -> bool {
        self.sub() != self.client_id() || self.claims.get("auth_time").is_some()
    }
}

/// Checks an access token of this tenant: signature, type, issuer, expiry, then that it was not revoked, that its
/// user (for a user's token) is still active and that the session it is tied to (`sid`) is still live.
pub async fn check_access(
    verified: &VerifiedTokens,
    ring: &KeyRing,
    db: &TenantDb,
    token: &str,
) -> Result<Option<AccessToken>> {
    let claims = match verified.verify_access(ring, token) {
        Ok(claims) => claims,
        Err(err) => {
            log_rejected(&err);
            return Ok(None);
        }
    };
    let token = AccessToken { claims };
    let jti = token.claims["jti"].as_str().unwrap_or_default().to_owned();
    let sid = token.claims.get("sid").and_then(Value::as_str).map(str::to_owned);
    let user = token.is_user().then(|| token.sub().to_owned());
    let now = crate::now_unix();
    let live = db::point_read(&db.pool, move |conn| {
        if store::access_revoked(conn, &jti)? {
            return Ok(false);
        }
        // A disabled or deleted user's tokens stop working at once, whatever their expiry.
        if let Some(user) = user
            && !store::user_active(conn, &user)?
        {
            return Ok(false);
        }
        match sid {
            Some(sid) => store::session_live(conn, &sid, now),
            None => Ok(true),
        }
    })
    .await?;
    Ok(live.then_some(token))
}

fn log_rejected(err: &Rejected) {
    tracing::debug!(reason = %err, "token rejected");
}

/// A user with their role names and the permissions their token may carry.
pub type Holder = (User, Vec<String>, Vec<String>);

/// The user behind a grant, with roles and permissions; `None` when the account is gone or disabled.
pub fn load_user(
    conn: &rusqlite::Connection,
    tenant: &Tenant,
    user_id: &str,
    scope: &[String],
) -> Result<Option<Holder>> {
    let user = match crate::identity::users::get(conn, user_id) {
        Ok(user) => user,
        Err(Error::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    if user.status != "active" {
        return Ok(None);
    }
    let roles = crate::identity::roles::of_user(conn, user_id)?;
    let all = crate::identity::roles::permissions_of_user(conn, user_id)?;
    let permissions = granted_permissions(tenant, scope, &all);
    Ok(Some((user, roles, permissions)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn plugin_claims_never_replace_or_add_protected_claims() {
        let mut claims = json!({"sub": "u1", "email": "a@example.com", "scope": "openid"});
        let extra = json!({"sub": "u-admin", "roles": ["admin"], "acr": "mfa", "email": "x@evil.test", "plan": "pro"});
        merge_extra(&mut claims, extra.as_object().unwrap());
        assert_eq!(claims, json!({"sub": "u1", "email": "a@example.com", "scope": "openid", "plan": "pro"}));
    }
}
