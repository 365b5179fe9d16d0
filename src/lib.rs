//! Gatehouse: a multi-tenant identity, email, commerce and plugin appliance in one binary.
//!
//! Map (ARCHITECTURE.md has the long form; a test keeps both naming every `pub mod`):
//! - `config`     environment configuration: one table of variables, validated once
//! - `app`        `App` (the state every handler sees), `run` (serve a listener until shutdown)
//! - `error`      the one error type and its code table
//! - `crypto`     master key, sealed secrets, token and password hashing
//! - `telemetry`  JSON logs, the per-app Prometheus registry
//! - `http`       middleware stack, extractors, page plumbing, the OpenAPI contract, router assembly, ops endpoints
//! - `db`         SQLite pragmas and pools, migrations, the tenant file registry
//! - `control`    the control plane: `Mutation`, `apply`, reads
//! - `tenants`    tenant slugs, settings, lifecycle, tenant admin API and public tenant API
//! - `identity`   users, passwords, sessions, MFA, roles, audit; account flows, hosted pages, end-user and admin APIs
//! - `oidc`       the OAuth 2.0 / OpenID Connect provider of every tenant: clients, keys, tokens, endpoints
//! - `plugins`    tenant WebAssembly plugins: the wasmtime engine, hooks, artifacts, admin API
//! - `admin`      admin-side actors: operators, API tokens, sessions, bootstrap, sign-in lockout
//! - `email`      email templates, SMTP transports, the durable outbox and its dispatcher
//! - `webhooks`   webhook subscriptions, the event catalogue, signed deliveries, the SSRF guard
//! - `commerce`   each tenant's store: money, catalog, inventory ledger, search, CSV import/export, storefront API
//! - `web`        the embedded admin UI (pages, the API reference)
//! - `cli`        the command line

pub mod admin;
pub mod app;
pub mod cli;
pub mod commerce;
pub mod config;
pub mod control;
pub mod crypto;
pub mod db;
pub mod email;
pub mod error;
pub mod http;
pub mod identity;
pub mod oidc;
pub mod plugins;
pub mod telemetry;
pub mod tenants;
pub mod web;
pub mod webhooks;

pub use app::{App, AppState, run, run_with_routes};
pub use config::Config;
pub use error::{Error, Result};

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// RFC 3339 text for a unix time, e.g. `2026-11-23T08:05:00Z`.
pub fn format_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// A unix time as pages show it: `2026-11-23 08:05:00 UTC`.
pub fn display_time(unix: i64) -> String {
    format_time(unix).replace('T', " ").replace('Z', " UTC")
}

/// Where a session or an audit entry came from, as pages show it: `ip · user agent`, skipping what is unknown.
pub fn client_label(ip: Option<&str>, user_agent: Option<&str>) -> String {
    [ip, user_agent].into_iter().flatten().filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" · ")
}

/// Serde helpers that present unix seconds as RFC 3339 strings in JSON.
pub mod rfc3339 {
    use serde::Serializer;

    pub fn serialize<S: Serializer>(unix: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::format_time(*unix))
    }

    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(unix: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
            match unix {
                Some(t) => s.serialize_str(&crate::format_time(*t)),
                None => s.serialize_none(),
            }
        }

        /// An RFC 3339 time (or null) as unix seconds.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
            let Some(text) = Option::<String>::deserialize(d)? else { return Ok(None) };
            time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                .map(|t| Some(t.unix_timestamp()))
                .map_err(|_| {
                    serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time such as 2026-01-31T12:00:00Z"))
                })
        }
    }
}

/// Serde helper that presents unix milliseconds as RFC 3339 strings with milliseconds in JSON.
pub mod rfc3339_ms {
    use serde::Serializer;

    pub fn serialize<S: Serializer>(unix_ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        let text = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(*unix_ms) * 1_000_000)
            .ok()
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_default();
        s.serialize_str(&text)
    }
}

/// A version stamp for settings whose cached derivatives must be rebuilt when they change: the current unix
/// time, or one more than `previous` when that is not older (two saves in one second).
pub fn next_version(previous: Option<i64>) -> i64 {
    let now = now_unix();
    match previous {
        Some(p) if p >= now => p + 1,
        _ => now,
    }
}
