//! The OAuth/OIDC part of a tenant's settings (`settings.oidc`): signing algorithm, token lifetimes and the
//! tenant's custom scopes.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::oidc::keys::SigningAlg;

/// Bearer access to the signed-in user's own account API (`/t/{slug}/api/v1/me…`): reads.
pub const ACCOUNT_READ: &str = "account:read";
/// Bearer access to the signed-in user's own account API: changes (profile, password, sessions, sign-out).
pub const ACCOUNT_WRITE: &str = "account:write";
/// Scopes only first-party clients may hold: a token with one acts as the user on the account API.
pub const FIRST_PARTY_SCOPES: &[&str] = &[ACCOUNT_READ, ACCOUNT_WRITE];

/// Scopes every tenant has.
pub const BUILT_IN_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access", ACCOUNT_READ, ACCOUNT_WRITE];

/// Claim names nothing but the server sets: registered JWT claims (RFC 7519 §4.1), OIDC Core's standard and ID
/// token claims, RFC 9068's and ours. Custom scopes cannot release a user field under one of these names
/// (refused when the settings are saved), plugin claims with these names are dropped, and no released claim ever
/// replaces one the server set.
pub const PROTECTED_CLAIMS: &[&str] = &[
    // RFC 7519 registered claims
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    // OIDC Core ID token and protocol claims
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "at_hash",
    "c_hash",
    "s_hash",
    "sid",
    "sub_jwk",
    "cnf",
    // OIDC Core standard claims (§5.1)
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "preferred_username",
    "profile",
    "picture",
    "website",
    "email",
    "email_verified",
    "gender",
    "birthdate",
    "zoneinfo",
    "locale",
    "phone_number",
    "phone_number_verified",
    "address",
    "updated_at",
    // RFC 9068 / RFC 8693 and this server's own
    "scope",
    "client_id",
    "typ",
    "roles",
    "permissions",
    "groups",
    "entitlements",
    "act",
    "may_act",
    "tenant",
    "events",
    "token_type",
];

/// Whether `name` is a claim only the server may set (see `PROTECTED_CLAIMS`).
pub fn is_protected_claim(name: &str) -> bool {
    PROTECTED_CLAIMS.contains(&name)
}
/// Claims the built-in scopes release.
pub const BUILT_IN_CLAIMS: &[&str] = &[
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "at_hash",
    "sid",
    "amr",
    "azp",
    "email",
    "email_verified",
    "name",
    "roles",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct OidcSettings {
    /// Algorithm of the tenant's signing key; changing it rotates the key.
    pub signing_alg: SigningAlg,
    /// Seconds; a client may set its own.
    pub access_token_ttl: u32,
    pub id_token_ttl: u32,
    /// Seconds; a client may set its own.
    pub refresh_token_ttl: u32,
    pub custom_scopes: Vec<CustomScope>,
}

impl Default for OidcSettings {
    fn default() -> Self {
        Self {
            signing_alg: SigningAlg::Rs256,
            access_token_ttl: 3600,
            id_token_ttl: 3600,
            refresh_token_ttl: 30 * 86_400,
            custom_scopes: Vec::new(),
        }
    }
}

/// A scope a tenant defines: granting it releases user custom fields as claims and/or permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomScope {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Names of the user's custom fields released as claims of the same name.
    #[serde(default)]
    pub claims: Vec<String>,
    /// Permissions this scope covers: the token's `permissions` claim lists those the user's roles grant.
    #[serde(default)]
    pub permissions: Vec<String>,
}

pub const MIN_TTL: u32 = 60;
pub const MAX_ACCESS_TTL: u32 = 86_400;
pub const MAX_REFRESH_TTL: u32 = 365 * 86_400;

pub fn check_ttl(name: &str, value: u32, max: u32) -> Result<()> {
    if (MIN_TTL..=max).contains(&value) {
        Ok(())
    } else {
        Err(Error::validation(format!("{name} must be {MIN_TTL}-{max} seconds")))
    }
}

/// A scope name per RFC 6749 §3.3, kept to a sane length.
pub fn valid_scope_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

impl OidcSettings {
    pub fn validate(&self) -> Result<()> {
        check_ttl("settings.oidc.access_token_ttl", self.access_token_ttl, MAX_ACCESS_TTL)?;
        check_ttl("settings.oidc.id_token_ttl", self.id_token_ttl, MAX_ACCESS_TTL)?;
        check_ttl("settings.oidc.refresh_token_ttl", self.refresh_token_ttl, MAX_REFRESH_TTL)?;
        if self.custom_scopes.len() > 100 {
            return Err(Error::validation("settings.oidc.custom_scopes: at most 100"));
        }
        let mut seen = std::collections::HashSet::new();
        for scope in &self.custom_scopes {
            if !valid_scope_name(&scope.name) || BUILT_IN_SCOPES.contains(&scope.name.as_str()) {
                return Err(Error::validation(format!(
                    "settings.oidc.custom_scopes: {:?} is not a usable scope name (1-64 printable characters, not a built-in scope)",
                    scope.name
                )));
            }
            if !seen.insert(scope.name.as_str()) {
                return Err(Error::validation(format!("settings.oidc.custom_scopes: {} is defined twice", scope.name)));
            }
            if scope.description.len() > 200 {
                return Err(Error::validation("settings.oidc.custom_scopes: description is at most 200 characters"));
            }
            for claim in &scope.claims {
                if is_protected_claim(claim) || claim.is_empty() || claim.len() > 64 {
                    return Err(Error::validation(format!(
                        "settings.oidc.custom_scopes: {claim:?} cannot be a custom claim (a name the server sets, or not 1-64 characters)"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Every scope this tenant knows: the built-in ones, then the custom ones.
    pub fn all_scopes(&self) -> Vec<String> {
        BUILT_IN_SCOPES.iter().map(|s| s.to_string()).chain(self.custom_scopes.iter().map(|s| s.name.clone())).collect()
    }

    pub fn knows_scope(&self, scope: &str) -> bool {
        BUILT_IN_SCOPES.contains(&scope) || self.custom_scopes.iter().any(|s| s.name == scope)
    }
}
