//! The OAuth 2.0 / OpenID Connect provider of every tenant (issuer `{public_url}/t/{slug}`).
//!
//! - `settings`: the tenant's `settings.oidc` (algorithm, lifetimes, custom scopes).
//! - `keys`: key generation, JWT signing with parsed keys, verification pinned to each key's algorithm.
//! - `clients`: the client record, registration checks, redirect-URI matching, secrets (SHA-256).
//! - `state`: caches (key rings, clients, CORS origins, discovery) invalidated by control-plane mutations; the
//!   tenant lookups (`tenant_of`, `tenant_db`) the machine endpoints start with.
//! - `store`: the tenant-file rows (pending requests, codes, token families, refresh/access tokens, consents).
//! - `tokens`: claims and minting; `check_access` for userinfo, introspection and the end-user API.
//! - `endpoints`: discovery, JWKS, userinfo, revoke, introspect (OAuth error shapes, client authentication, CORS),
//!   and the router of the machine endpoints, token included.
//! - `token`: the token endpoint: authorization_code (PKCE), refresh_token and client_credentials grants, minting.
//! - `contract`: documentation-only shapes of the machine endpoints for the OpenAPI document.
//! - `authorize`: authorize/resume, consent and RP-initiated logout (hosted pages).
//! - `admin_api`: clients CRUD, secret rotation, keys list/rotate.
//!
//! Control-plane state (keys, clients) changes only through `Mutation`s; per-user state lives in the tenant file.

pub mod admin_api;
pub mod authorize;
pub mod clients;
mod contract;
pub mod endpoints;
pub mod keys;
pub mod settings;
pub mod state;
pub mod store;
pub mod token;
pub mod tokens;
