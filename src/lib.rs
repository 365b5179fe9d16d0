//! Gatehouse: a multi-tenant identity, email, commerce and plugin appliance in one binary.
//!
//! Map (ARCHITECTURE.md has the long form; a test keeps both naming every `pub mod`):
//! - `config`     environment configuration: one table of variables, validated once
//! - `app`        `App` (the state every handler sees), `run` (serve a listener until shutdown)
//! - `error`      the one error type and its code table
//! - `crypto`     master key, sealed secrets, token and password hashing
//! - `telemetry`  JSON logs, the per-app Prometheus registry
//! - `http`       middleware stack, extractors, page plumbing, the OpenAPI contract, router assembly, ops endpoints
//! - `db`         SQLite pragmas and pools, migrations, the tenant file registry, SQLite tuning
//! - `control`    the control plane: `Mutation`, `apply`, reads
//! - `cluster`    the control plane on Raft (openraft): the log in raft.db, control.db as the state machine
//! - `tenants`    tenant slugs, settings, lifecycle, tenant admin API and public tenant API
//! - `identity`   users, passwords, sessions, MFA, roles, audit; account flows, hosted pages, end-user and admin APIs
//! - `oidc`       the OAuth 2.0 / OpenID Connect provider of every tenant: clients, keys, tokens, endpoints
//! - `plugins`    tenant WebAssembly plugins: the wasmtime engine, hooks, artifacts, admin API
//! - `admin`      admin-side actors: operators, API tokens, sessions, bootstrap, sign-in lockout
//! - `email`      email templates, SMTP transports, the durable outbox and its dispatcher
//! - `webhooks`   webhook subscriptions, the event catalogue, signed deliveries, the SSRF guard
//! - `commerce`   each tenant's store: money, catalog, inventory ledger, search, CSV import/export, storefront API
//! - `web`        the embedded admin UI (pages, the API reference)
//! - `backup`     continuous Litestream-compatible replicas of every database to S3
//! - `cli`        the command line

pub mod admin;
pub mod app;
pub mod backup;
pub mod cli;
pub mod cluster;
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

/// A user agent as lists show it: the browser with its major version and the operating system ("Chrome 131 on
/// macOS", "Firefox 133 on Linux", "Safari 18 on iOS"); a command-line or library client as it names itself
/// ("curl/8.5.0"); anything else as its first 40 characters. Hand-written and small on purpose: it labels rows for
/// people, it does not decide anything.
pub fn browser_summary(ua: &str) -> String {
    let ua = ua.trim();
    // Tools put their name first: `curl/8.5.0`, `python-requests/2.32.3`, `Go-http-client/2.0`.
    const TOOLS: &[&str] = &[
        "curl",
        "wget",
        "python-requests",
        "python-httpx",
        "python-urllib",
        "aiohttp",
        "go-http-client",
        "okhttp",
        "axios",
        "node-fetch",
        "node",
        "undici",
        "postmanruntime",
        "insomnia",
        "httpie",
        "reqwest",
        "java",
        "apache-httpclient",
        "libwww-perl",
        "ruby",
        "faraday",
        "dart",
        "guzzlehttp",
    ];
    if let Some(first) = ua.split_whitespace().next()
        && let Some((name, _)) = first.split_once('/')
        && TOOLS.iter().any(|t| t.eq_ignore_ascii_case(name))
    {
        return first.to_owned();
    }
    let major = |marker: &str| -> Option<String> {
        let rest = &ua[ua.find(marker)? + marker.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        Some(digits)
    };
    let named = |name: &str, version: Option<String>| match version.filter(|v| !v.is_empty()) {
        Some(v) => format!("{name} {v}"),
        None => name.to_owned(),
    };
    // Order matters: Edge and Opera also say Chrome and Safari; Chrome also says Safari.
    let browser = if let Some(v) = major("Edg/").or_else(|| major("EdgA/")).or_else(|| major("EdgiOS/")) {
        Some(named("Edge", Some(v)))
    } else if let Some(v) = major("OPR/").or_else(|| major("OPiOS/")) {
        Some(named("Opera", Some(v)))
    } else if let Some(v) = major("SamsungBrowser/") {
        Some(named("Samsung Internet", Some(v)))
    } else if let Some(v) = major("Firefox/").or_else(|| major("FxiOS/")) {
        Some(named("Firefox", Some(v)))
    } else if let Some(v) = major("CriOS/") {
        Some(named("Chrome", Some(v)))
    } else if let Some(v) = major("Chromium/") {
        Some(named("Chromium", Some(v)))
    } else if let Some(v) = major("Chrome/") {
        Some(named("Chrome", Some(v)))
    } else if ua.contains("Safari/") && ua.contains("Version/") {
        Some(named("Safari", major("Version/")))
    } else if ua.contains("Trident/") || ua.contains("MSIE ") {
        Some("Internet Explorer".to_owned())
    } else {
        None
    };
    // iOS and Android before macOS and Linux: their user agents say "like Mac OS X" and "Linux".
    let os = if ua.contains("iPhone") || ua.contains("iPad") || ua.contains("iPod") {
        Some("iOS")
    } else if ua.contains("Android") {
        Some("Android")
    } else if ua.contains("CrOS") {
        Some("ChromeOS")
    } else if ua.contains("Windows") {
        Some("Windows")
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
        Some("macOS")
    } else if ua.contains("Linux") || ua.contains("X11") {
        Some("Linux")
    } else {
        None
    };
    match (browser, os) {
        (Some(browser), Some(os)) => format!("{browser} on {os}"),
        (Some(browser), None) => browser,
        _ => {
            let mut short: String = ua.chars().take(40).collect();
            if ua.chars().nth(40).is_some() {
                short.push('…');
            }
            short
        }
    }
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

#[cfg(test)]
mod tests {
    use super::browser_summary;

    #[test]
    fn browsers_and_systems_are_named() {
        let cases = [
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/131.0.0.0 Safari/537.36",
                "Chrome 131 on macOS",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 \
                 Safari/537.36 Edg/131.0.2903.86",
                "Edge 131 on Windows",
            ),
            ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", "Firefox 133 on Linux"),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) \
                 Version/18.1 Mobile/15E148 Safari/604.1",
                "Safari 18 on iOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/131.0.6778.81 Mobile Safari/537.36",
                "Chrome 131 on Android",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/130.0.0.0 Safari/537.36 OPR/115.0.0.0",
                "Opera 115 on Windows",
            ),
            (
                "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/131.0.0.0 Safari/537.36",
                "Chrome 131 on ChromeOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) \
                 CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
                "Chrome 131 on iOS",
            ),
            ("curl/8.5.0", "curl/8.5.0"),
            ("python-requests/2.32.3", "python-requests/2.32.3"),
            ("Go-http-client/2.0", "Go-http-client/2.0"),
            ("", ""),
        ];
        for (ua, want) in cases {
            assert_eq!(browser_summary(ua), want, "{ua}");
        }
    }

    #[test]
    fn unknown_agents_are_cut_to_40_characters() {
        assert_eq!(browser_summary("MyApp 1.0"), "MyApp 1.0");
        let long = "SomethingVeryCustom/1.0 (with a long description that goes on and on)";
        let shown = browser_summary(long);
        assert_eq!(shown.chars().count(), 41, "{shown}");
        assert!(shown.starts_with("SomethingVeryCustom/1.0 (with a long des") && shown.ends_with('…'));
        // Multi-byte text is cut on a character boundary.
        assert_eq!(browser_summary(&"é".repeat(50)).chars().count(), 41);
    }
}
