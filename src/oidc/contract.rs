//! Documentation-only types of the OAuth/OIDC machine endpoints for the OpenAPI contract: the endpoints answer
//! pre-serialised documents (discovery, JWKS) or JSON built by the minting code, and read form bodies, so these
//! structs only describe those shapes. Nothing constructs them.
//!
//! - `DiscoveryDocument`, `JwkSet`: the provider documents. `UserinfoClaims`, `UserinfoForm`: userinfo.
//! - `TokenLookupForm`, `Introspection`: the revocation and introspection forms and the introspection answer.

use utoipa::ToSchema;

use crate::oidc::keys::PublicJwk;

/// The provider's metadata (OpenID Connect Discovery 1.0, RFC 8414), as `state::discovery_json` builds it.
/// Documents the served JSON; never built.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct DiscoveryDocument {
    /// `{public_url}/t/{slug}`.
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: String,
    jwks_uri: String,
    revocation_endpoint: String,
    introspection_endpoint: String,
    end_session_endpoint: String,
    /// The built-in scopes and the tenant's custom ones.
    scopes_supported: Vec<String>,
    response_types_supported: Vec<String>,
    response_modes_supported: Vec<String>,
    grant_types_supported: Vec<String>,
    subject_types_supported: Vec<String>,
    /// The tenant's `settings.oidc.signing_alg`.
    id_token_signing_alg_values_supported: Vec<String>,
    userinfo_signing_alg_values_supported: Vec<String>,
    token_endpoint_auth_methods_supported: Vec<String>,
    revocation_endpoint_auth_methods_supported: Vec<String>,
    introspection_endpoint_auth_methods_supported: Vec<String>,
    code_challenge_methods_supported: Vec<String>,
    /// The standard claims and those of the tenant's custom scopes.
    claims_supported: Vec<String>,
    claims_parameter_supported: bool,
    request_parameter_supported: bool,
    request_uri_parameter_supported: bool,
    prompt_values_supported: Vec<String>,
    authorization_response_iss_parameter_supported: bool,
    ui_locales_supported: Vec<String>,
}

/// The provider's public signing keys (RFC 7517): the active key and those still retiring.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct JwkSet {
    keys: Vec<PublicJwk>,
}

/// The user's claims (OpenID Connect Core §5.3): `sub` and what the token's scopes release. `email` releases
/// `email` and `email_verified`; `profile` releases `name`, `updated_at` and `roles`; a tenant custom scope
/// releases the user fields it names, under their own names. Documents the served JSON; never built.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct UserinfoClaims {
    /// The user's id.
    sub: String,
    email: Option<String>,
    email_verified: Option<bool>,
    name: Option<String>,
    /// Unix seconds.
    updated_at: Option<i64>,
    roles: Option<Vec<String>>,
}

/// The form userinfo accepts on `POST` (RFC 6750 §2.2): the access token, instead of the `Authorization` header.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct UserinfoForm {
    access_token: Option<String>,
}

/// The form of the revocation (RFC 7009) and introspection (RFC 7662) endpoints. Documents the body; the handlers
/// parse it as `Params`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct TokenLookupForm {
    /// An access token (a JWT) or a refresh token.
    token: String,
    /// Accepted and not needed: the token's form says what it is.
    token_type_hint: Option<String>,
    /// The client, when it does not authenticate with HTTP Basic.
    client_id: Option<String>,
    /// With `client_secret_post`.
    client_secret: Option<String>,
}

/// What introspection tells about a token (RFC 7662 §2.2). An inactive, unknown or other client's token gives
/// only `{"active": false}`. Documents the served JSON; never built.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct Introspection {
    active: bool,
    /// `Bearer` for an access token, `refresh_token` for a refresh token.
    token_type: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    /// The user, or the client for a client_credentials token.
    sub: Option<String>,
    iss: Option<String>,
    /// Access tokens only.
    aud: Option<String>,
    /// Unix seconds.
    exp: Option<i64>,
    /// Unix seconds; access tokens only.
    iat: Option<i64>,
    /// Access tokens only.
    jti: Option<String>,
    /// Unix seconds; a user's access token only.
    auth_time: Option<i64>,
    /// The sign-in session a user's access token is bound to, if any.
    sid: Option<String>,
    /// A user's access token only.
    roles: Option<Vec<String>>,
    /// When a custom scope grants some.
    permissions: Option<Vec<String>>,
}
