//! Configuration from environment variables, validated once at start and passed explicitly.
//!
//! `VARS` is the one list of variables: `Config::from_lookup` reads them, `gatehouse serve --help` prints
//! them. A malformed value is a `ConfigError` naming the variable and what it expects; `main` prints that
//! one line and exits with code 2. Secret values are never echoed back (not in errors, `Debug` or help).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// A value that must never reach a log line: `Debug` prints a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Argon2id cost parameters for operator and user passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Scheme, host and port, without a trailing slash.
    pub public_url: String,
    pub log_level: String,
    pub log_format: LogFormat,
    pub master_key: Option<[u8; 32]>,
    pub admin_email: Option<String>,
    pub admin_password: Option<Secret>,
    pub bootstrap_token: Option<Secret>,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub tenant_pool_cache: u64,
    pub tenant_pool_idle: Duration,
    pub password: PasswordParams,
    pub admin_login_per_minute: u32,
    /// End-user sign-in, sign-up and password-reset requests per client IP and minute (all tenants together).
    pub auth_per_minute: u32,
    /// Whether `gatehouse_login_attempts_total` carries a `tenant` label (one series per tenant and outcome).
    pub metrics_tenant_labels: bool,
    /// When set, `/metrics` answers only `Authorization: Bearer <token>`; when unset it is open.
    pub metrics_token: Option<Secret>,
    pub trust_proxy: bool,
    pub mail: MailConfig,
    pub outbox: OutboxConfig,
    pub webhook_allow_private: bool,
    pub webhook_timeout: Duration,
    /// Largest plugin component accepted on upload.
    pub plugin_max_bytes: usize,
    /// Plugin calls that may run at once (instance slots of the pool).
    pub plugin_slots: u32,
}

/// Where mail goes: `Smtp` sends through the tenant's transport, else `GATEHOUSE_SMTP_URL`, else (with a warning)
/// the dev mailbox; `Dev` keeps every mail in the tenant's dev mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailMode {
    Smtp,
    Dev,
}

#[derive(Debug, Clone)]
pub struct MailConfig {
    pub mode: MailMode,
    /// The global fallback transport, `smtp[s]://user:pass@host:port?tls=none|starttls|tls`.
    pub smtp_url: Option<Secret>,
    /// The From address used with the global transport, `Name <addr>` or `addr`.
    pub smtp_from: String,
}

#[derive(Debug, Clone, Copy)]
pub struct OutboxConfig {
    /// Attempts before a message is marked `dead`.
    pub max_attempts: u32,
    /// Tenants the dispatcher works on at once.
    pub tenants_at_once: usize,
    /// Messages of one tenant in flight at once.
    pub per_tenant: usize,
}

/// One configuration variable: its name, its default as shown in `--help`, and what it means.
pub struct Var {
    pub name: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

pub const VARS: &[Var] = &[
    Var { name: "GATEHOUSE_DATA_DIR", default: "./data", help: "directory for control.db, tenant files, master.key" },
    Var {
        name: "PORT",
        default: "8080",
        help: "port to listen on (used by GATEHOUSE_LISTEN and the public URL defaults)",
    },
    Var { name: "GATEHOUSE_LISTEN", default: "0.0.0.0:$PORT", help: "socket address to bind" },
    Var {
        name: "GATEHOUSE_PUBLIC_URL",
        default: "http://localhost:$PORT",
        help: "external base URL; https turns on Secure cookies and HSTS",
    },
    Var { name: "LOG_LEVEL", default: "info", help: "tracing filter, e.g. info or gatehouse=debug,info" },
    Var { name: "GATEHOUSE_LOG_FORMAT", default: "json (pretty on a TTY)", help: "json or pretty" },
    Var {
        name: "GATEHOUSE_MASTER_KEY",
        default: "(generated into data dir)",
        help: "base64 of 32 bytes; encrypts secrets at rest",
    },
    Var {
        name: "GATEHOUSE_ADMIN_EMAIL",
        default: "(none)",
        help: "first operator's email, with GATEHOUSE_ADMIN_PASSWORD",
    },
    Var {
        name: "GATEHOUSE_ADMIN_PASSWORD",
        default: "(none)",
        help: "first operator's password (at least 10 characters)",
    },
    Var {
        name: "GATEHOUSE_BOOTSTRAP_TOKEN",
        default: "(none)",
        help: "operator API token for automation, at least 32 characters",
    },
    Var { name: "GATEHOUSE_MAX_BODY_BYTES", default: "1048576", help: "largest request body accepted" },
    Var {
        name: "GATEHOUSE_PLUGIN_MAX_BYTES",
        default: "8388608",
        help: "largest plugin component accepted (up to 33554432; JavaScript components are ~12 MB)",
    },
    Var { name: "GATEHOUSE_PLUGIN_SLOTS", default: "2 x cores", help: "plugin calls running at once" },
    Var { name: "GATEHOUSE_REQUEST_TIMEOUT_MS", default: "30000", help: "time limit of one request" },
    Var {
        name: "GATEHOUSE_SHUTDOWN_GRACE_SECS",
        default: "30",
        help: "how long shutdown waits for in-flight requests",
    },
    Var { name: "GATEHOUSE_TENANT_POOL_CACHE", default: "1000", help: "most tenant database pools kept open" },
    Var { name: "GATEHOUSE_TENANT_POOL_IDLE_SECS", default: "300", help: "an unused tenant pool is closed after this" },
    Var { name: "GATEHOUSE_PASSWORD_MEMORY_KIB", default: "19456", help: "argon2id memory cost" },
    Var { name: "GATEHOUSE_PASSWORD_ITERATIONS", default: "2", help: "argon2id time cost" },
    Var { name: "GATEHOUSE_PASSWORD_PARALLELISM", default: "1", help: "argon2id lanes" },
    Var {
        name: "GATEHOUSE_ADMIN_LOGIN_PER_MINUTE",
        default: "10",
        help: "admin login attempts per client IP and minute",
    },
    Var {
        name: "GATEHOUSE_AUTH_PER_MINUTE",
        default: "30",
        help: "end-user sign-in, sign-up and password-reset requests per client IP and minute",
    },
    Var {
        name: "GATEHOUSE_METRICS_TENANT_LABELS",
        default: "false",
        help: "label login metrics by tenant (one series per tenant: mind the cardinality)",
    },
    Var {
        name: "GATEHOUSE_METRICS_TOKEN",
        default: "(none: /metrics is open)",
        help: "bearer token /metrics requires, at least 32 characters",
    },
    Var {
        name: "GATEHOUSE_TRUST_PROXY",
        default: "false",
        help: "take the client IP from X-Forwarded-For (only behind a proxy you run)",
    },
    Var {
        name: "GATEHOUSE_MAIL_MODE",
        default: "smtp",
        help: "smtp sends mail (dev mailbox if a tenant has no transport); dev keeps all mail in the dev mailbox",
    },
    Var {
        name: "GATEHOUSE_SMTP_URL",
        default: "(none)",
        help: "fallback transport for tenants without SMTP settings: smtp[s]://user:pass@host:port?tls=none|starttls|tls",
    },
    Var {
        name: "GATEHOUSE_SMTP_FROM",
        default: "noreply@<public host>",
        help: "From address for mail sent through GATEHOUSE_SMTP_URL",
    },
    Var { name: "GATEHOUSE_OUTBOX_MAX_ATTEMPTS", default: "10", help: "delivery attempts before a message is dead" },
    Var { name: "GATEHOUSE_OUTBOX_TENANTS", default: "4", help: "tenants whose outbox is worked on at once" },
    Var { name: "GATEHOUSE_OUTBOX_PER_TENANT", default: "4", help: "messages of one tenant in flight at once" },
    Var { name: "GATEHOUSE_WEBHOOK_TIMEOUT_SECS", default: "10", help: "how long a webhook receiver has to answer" },
    Var {
        name: "GATEHOUSE_WEBHOOK_ALLOW_PRIVATE",
        default: "false",
        help: "allow webhook URLs on loopback, private, link-local and metadata addresses",
    },
];

/// The rendered variable table for `--help`.
pub fn help_table() -> String {
    let mut out = String::from("Environment variables:\n");
    for var in VARS {
        out.push_str(&format!("  {:<34} {}\n  {:<34} default: {}\n", var.name, var.help, "", var.default));
    }
    out
}

/// A bad configuration value: displayed as the one line `main` prints before exiting with code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.var, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn bad(var: &'static str, expected: &str, got: &str) -> ConfigError {
    ConfigError { var, message: format!("expected {expected}, got {got:?}") }
}

fn bad_secret(var: &'static str, expected: &str) -> ConfigError {
    ConfigError { var, message: format!("expected {expected} (value not shown)") }
}

struct Env<F: Fn(&str) -> Option<String>>(F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// The variable's value; set-but-empty counts as unset, as most operators expect of env files.
    fn get(&self, var: &str) -> Option<String> {
        (self.0)(var).filter(|v| !v.trim().is_empty())
    }

    fn parse_num<T: std::str::FromStr + PartialOrd + fmt::Display + Copy>(
        &self,
        var: &'static str,
        default: T,
        min: T,
        max: T,
    ) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => match raw.trim().parse::<T>() {
                Ok(v) if v >= min && v <= max => Ok(v),
                _ => Err(bad(var, &format!("a whole number {min}-{max}"), &raw)),
            },
        }
    }

    fn parse_bool(&self, var: &'static str) -> Result<bool, ConfigError> {
        match self.get(var).as_deref().map(str::trim) {
            None => Ok(false),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(other) => Err(bad(var, "true or false", other)),
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests can pass a map instead of the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(lookup);
        let data_dir = PathBuf::from(env.get("GATEHOUSE_DATA_DIR").unwrap_or_else(|| "./data".into()));

        let port = match env.get("PORT") {
            None => 8080u16,
            Some(raw) => match raw.trim().parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(bad("PORT", "a port number 1-65535", &raw)),
            },
        };
        let listen = match env.get("GATEHOUSE_LISTEN") {
            None => SocketAddr::from(([0, 0, 0, 0], port)),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|_| bad("GATEHOUSE_LISTEN", "an address like 0.0.0.0:8080 or [::]:8080", &raw))?,
        };
        let public_url = match env.get("GATEHOUSE_PUBLIC_URL") {
            None => format!("http://localhost:{port}"),
            Some(raw) => parse_public_url(&raw)
                .ok_or_else(|| bad("GATEHOUSE_PUBLIC_URL", "an http(s) URL without path, query or fragment", &raw))?,
        };

        let log_level = env.get("LOG_LEVEL").unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(bad("LOG_LEVEL", "a level (error, warn, info, debug, trace) or a tracing filter", &log_level));
        }
        let log_format = match env.get("GATEHOUSE_LOG_FORMAT").as_deref().map(str::trim) {
            None => {
                use std::io::IsTerminal;
                if std::io::stdout().is_terminal() { LogFormat::Pretty } else { LogFormat::Json }
            }
            Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => return Err(bad("GATEHOUSE_LOG_FORMAT", "json or pretty", other)),
        };

        let master_key = match env.get("GATEHOUSE_MASTER_KEY") {
            None => None,
            Some(raw) => {
                let bytes = B64
                    .decode(raw.trim())
                    .map_err(|_| bad_secret("GATEHOUSE_MASTER_KEY", "base64 of 32 random bytes"))?;
                let key: [u8; 32] =
                    bytes.try_into().map_err(|_| bad_secret("GATEHOUSE_MASTER_KEY", "base64 of 32 random bytes"))?;
                Some(key)
            }
        };

        let admin_email = env.get("GATEHOUSE_ADMIN_EMAIL").map(|e| e.trim().to_lowercase());
        let admin_password = env.get("GATEHOUSE_ADMIN_PASSWORD").map(Secret::new);
        match (&admin_email, &admin_password) {
            (Some(email), Some(password)) => {
                if crate::admin::validate_email(email).is_err() {
                    return Err(bad("GATEHOUSE_ADMIN_EMAIL", "an email address", email));
                }
                if password.expose().chars().count() < 10 {
                    return Err(bad_secret("GATEHOUSE_ADMIN_PASSWORD", "at least 10 characters"));
                }
            }
            (Some(_), None) => {
                return Err(bad_secret("GATEHOUSE_ADMIN_PASSWORD", "a value when GATEHOUSE_ADMIN_EMAIL is set"));
            }
            (None, Some(_)) => {
                return Err(ConfigError {
                    var: "GATEHOUSE_ADMIN_EMAIL",
                    message: "expected an email address when GATEHOUSE_ADMIN_PASSWORD is set".into(),
                });
            }
            (None, None) => {}
        }
        let bootstrap_token = env.get("GATEHOUSE_BOOTSTRAP_TOKEN").map(|t| Secret::new(t.trim()));
        if let Some(token) = &bootstrap_token
            && (token.expose().len() < 32 || !token.expose().bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(bad_secret("GATEHOUSE_BOOTSTRAP_TOKEN", "at least 32 printable characters"));
        }

        let max_body_bytes = env.parse_num("GATEHOUSE_MAX_BODY_BYTES", 1_048_576usize, 1024, 1 << 30)?;
        let timeout_ms = env.parse_num("GATEHOUSE_REQUEST_TIMEOUT_MS", 30_000u64, 100, 3_600_000)?;
        let grace_secs = env.parse_num("GATEHOUSE_SHUTDOWN_GRACE_SECS", 30u64, 0, 3600)?;
        let tenant_pool_cache = env.parse_num("GATEHOUSE_TENANT_POOL_CACHE", 1000u64, 1, 1_000_000)?;
        let idle_secs = env.parse_num("GATEHOUSE_TENANT_POOL_IDLE_SECS", 300u64, 1, 86_400 * 7)?;
        let password = PasswordParams {
            memory_kib: env.parse_num("GATEHOUSE_PASSWORD_MEMORY_KIB", 19_456u32, 8, 4 * 1024 * 1024)?,
            iterations: env.parse_num("GATEHOUSE_PASSWORD_ITERATIONS", 2u32, 1, 100)?,
            parallelism: env.parse_num("GATEHOUSE_PASSWORD_PARALLELISM", 1u32, 1, 64)?,
        };
        if password.memory_kib < 8 * password.parallelism {
            return Err(ConfigError {
                var: "GATEHOUSE_PASSWORD_MEMORY_KIB",
                message: "expected at least 8 KiB per lane of GATEHOUSE_PASSWORD_PARALLELISM".into(),
            });
        }
        let admin_login_per_minute = env.parse_num("GATEHOUSE_ADMIN_LOGIN_PER_MINUTE", 10u32, 1, 100_000)?;
        let trust_proxy = env.parse_bool("GATEHOUSE_TRUST_PROXY")?;
        let auth_per_minute = env.parse_num("GATEHOUSE_AUTH_PER_MINUTE", 30u32, 1, 1_000_000)?;
        let metrics_tenant_labels = env.parse_bool("GATEHOUSE_METRICS_TENANT_LABELS")?;
        let metrics_token = env.get("GATEHOUSE_METRICS_TOKEN").map(|t| Secret::new(t.trim()));
        if let Some(token) = &metrics_token
            && (token.expose().len() < 32 || !token.expose().bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(bad_secret("GATEHOUSE_METRICS_TOKEN", "at least 32 printable characters"));
        }
        let mode = match env.get("GATEHOUSE_MAIL_MODE").as_deref().map(str::trim) {
            None | Some("smtp") => MailMode::Smtp,
            Some("dev") => MailMode::Dev,
            Some(other) => return Err(bad("GATEHOUSE_MAIL_MODE", "smtp or dev", other)),
        };
        let smtp_url = env.get("GATEHOUSE_SMTP_URL").map(|u| Secret::new(u.trim()));
        if let Some(url) = &smtp_url
            && let Err(why) = crate::email::smtp::SmtpSettings::from_url(url.expose())
        {
            return Err(ConfigError { var: "GATEHOUSE_SMTP_URL", message: format!("{why} (value not shown)") });
        }
        let smtp_from = match env.get("GATEHOUSE_SMTP_FROM") {
            None => format!("noreply@{}", host_of(&public_url)),
            Some(raw) => {
                let raw = raw.trim().to_owned();
                if raw.parse::<lettre::message::Mailbox>().is_err() {
                    return Err(bad("GATEHOUSE_SMTP_FROM", "an address like noreply@example.com or Name <addr>", &raw));
                }
                raw
            }
        };
        let outbox = OutboxConfig {
            max_attempts: env.parse_num("GATEHOUSE_OUTBOX_MAX_ATTEMPTS", 10u32, 1, 100)?,
            tenants_at_once: env.parse_num("GATEHOUSE_OUTBOX_TENANTS", 4usize, 1, 256)?,
            per_tenant: env.parse_num("GATEHOUSE_OUTBOX_PER_TENANT", 4usize, 1, 64)?,
        };
        let webhook_allow_private = env.parse_bool("GATEHOUSE_WEBHOOK_ALLOW_PRIVATE")?;
        let webhook_timeout = Duration::from_secs(env.parse_num("GATEHOUSE_WEBHOOK_TIMEOUT_SECS", 10u64, 1, 300)?);
        let plugin_max_bytes = env.parse_num("GATEHOUSE_PLUGIN_MAX_BYTES", 8usize << 20, 1024, 32 << 20)?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
        let plugin_slots = env.parse_num("GATEHOUSE_PLUGIN_SLOTS", (2 * cores).clamp(2, 64), 1, 256)?;

        Ok(Config {
            data_dir,
            listen,
            public_url,
            log_level,
            log_format,
            master_key,
            admin_email,
            admin_password,
            bootstrap_token,
            max_body_bytes,
            request_timeout: Duration::from_millis(timeout_ms),
            shutdown_grace: Duration::from_secs(grace_secs),
            tenant_pool_cache,
            tenant_pool_idle: Duration::from_secs(idle_secs),
            password,
            admin_login_per_minute,
            auth_per_minute,
            metrics_tenant_labels,
            metrics_token,
            trust_proxy,
            mail: MailConfig { mode, smtp_url, smtp_from },
            outbox,
            webhook_allow_private,
            webhook_timeout,
            plugin_max_bytes,
            plugin_slots,
        })
    }

    /// Defaults for an in-process test server over `data_dir`, with cheap password hashing.
    pub fn for_tests(data_dir: &Path) -> Self {
        let mut config = Self::from_lookup(|name| match name {
            "GATEHOUSE_LOG_FORMAT" => Some("json".into()),
            "LOG_LEVEL" => Some("warn".into()),
            _ => None,
        })
        .expect("the defaults are valid");
        config.data_dir = data_dir.to_path_buf();
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.password = PasswordParams { memory_kib: 64, iterations: 1, parallelism: 1 };
        config.admin_login_per_minute = 1000;
        config.auth_per_minute = 100_000;
        config.webhook_allow_private = true;
        config
    }

    /// The host of the public URL, without port or IPv6 brackets (Message-IDs, EHLO, default From).
    pub fn public_host(&self) -> &str {
        host_of(&self.public_url)
    }

    /// Whether the public URL is https: cookies get `Secure` and responses get HSTS.
    pub fn is_https(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

/// The host part of `scheme://host[:port]`: `localhost`, `id.example.com`, `::1`.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    match rest.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(v6, |(host, _)| host),
        None => rest.split_once(':').map_or(rest, |(host, _)| host),
    }
}

/// `scheme://host[:port]` with the trailing slash removed; anything with a path, query or fragment is refused,
/// because issuers and cookie paths are built by appending to it.
fn parse_public_url(raw: &str) -> Option<String> {
    let trimmed = raw.trim().trim_end_matches('/');
    let rest = trimmed.strip_prefix("https://").or_else(|| trimmed.strip_prefix("http://"))?;
    let valid = !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    valid.then(|| trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_are_valid() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.public_url, "http://localhost:8080");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.max_body_bytes, 1_048_576);
    }

    #[test]
    fn public_host_drops_scheme_port_and_brackets() {
        for (url, host) in [
            ("http://localhost:8080", "localhost"),
            ("https://id.example.com", "id.example.com"),
            ("http://[::1]:80", "::1"),
        ] {
            let c = config(&[("GATEHOUSE_PUBLIC_URL", url)]).unwrap();
            assert_eq!(c.public_host(), host);
        }
    }

    #[test]
    fn port_feeds_listen_and_public_url() {
        let c = config(&[("PORT", "9000")]).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.public_url, "http://localhost:9000");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = config(&[("PORT", "abc")]).unwrap_err();
        assert_eq!(err.to_string(), r#"invalid PORT: expected a port number 1-65535, got "abc""#);
        assert_eq!(config(&[("GATEHOUSE_LOG_FORMAT", "xml")]).unwrap_err().var, "GATEHOUSE_LOG_FORMAT");
        assert_eq!(config(&[("GATEHOUSE_REQUEST_TIMEOUT_MS", "-1")]).unwrap_err().var, "GATEHOUSE_REQUEST_TIMEOUT_MS");
        assert_eq!(config(&[("GATEHOUSE_PUBLIC_URL", "ftp://x")]).unwrap_err().var, "GATEHOUSE_PUBLIC_URL");
        assert_eq!(config(&[("GATEHOUSE_PUBLIC_URL", "https://x/path")]).unwrap_err().var, "GATEHOUSE_PUBLIC_URL");
    }

    #[test]
    fn secrets_are_not_echoed() {
        let err = config(&[("GATEHOUSE_MASTER_KEY", "short-secret-value")]).unwrap_err();
        assert_eq!(err.var, "GATEHOUSE_MASTER_KEY");
        assert!(!err.to_string().contains("short-secret-value"));
        let err = config(&[("GATEHOUSE_BOOTSTRAP_TOKEN", "too-short-token")]).unwrap_err();
        assert!(!err.to_string().contains("too-short-token"));
        let err = config(&[("GATEHOUSE_METRICS_TOKEN", "short-metrics-token")]).unwrap_err();
        assert_eq!(err.var, "GATEHOUSE_METRICS_TOKEN");
        assert!(!err.to_string().contains("short-metrics-token"));
        let c = config(&[("GATEHOUSE_ADMIN_EMAIL", "a@b.co"), ("GATEHOUSE_ADMIN_PASSWORD", "hunter2hunter2")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn metrics_token_is_optional() {
        assert_eq!(config(&[]).unwrap().metrics_token, None);
        let token = "metrics-token-0123456789abcdefghij";
        let c = config(&[("GATEHOUSE_METRICS_TOKEN", token)]).unwrap();
        assert_eq!(c.metrics_token.as_ref().map(Secret::expose), Some(token));
        assert!(!format!("{c:?}").contains(token));
        let spaced = "metrics token 0123456789abcdefghij";
        assert_eq!(config(&[("GATEHOUSE_METRICS_TOKEN", spaced)]).unwrap_err().var, "GATEHOUSE_METRICS_TOKEN");
    }

    #[test]
    fn public_url_loses_its_trailing_slash() {
        let c = config(&[("GATEHOUSE_PUBLIC_URL", "https://id.example.com/")]).unwrap();
        assert_eq!(c.public_url, "https://id.example.com");
        assert!(c.is_https());
    }

    #[test]
    fn admin_email_and_password_come_together() {
        assert_eq!(config(&[("GATEHOUSE_ADMIN_EMAIL", "a@b.co")]).unwrap_err().var, "GATEHOUSE_ADMIN_PASSWORD");
        assert_eq!(config(&[("GATEHOUSE_ADMIN_PASSWORD", "0123456789")]).unwrap_err().var, "GATEHOUSE_ADMIN_EMAIL");
    }
}
