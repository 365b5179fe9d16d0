//! Configuration from environment variables, validated once at start and passed explicitly.
//!
//! `VARS` is the one table of variables: each entry holds the name, the default and what a value must be
//! (bounds of a number, the words of a choice). `Config::from_lookup` takes defaults and bounds from it and
//! `gatehouse serve --help` prints it, so a default is written in exactly one place.
//!
//! Reading goes on past a bad value (a stand-in takes its place) so that one start reports every bad variable:
//! a `ConfigError` holds one `invalid VAR: expected …` line each, `cli::main` prints them and exits with code 2,
//! and no `Config` is ever built from stand-ins. Secret values are never echoed back (not in errors, `Debug` or
//! help): the table marks them, and `Env::refuse` never shows a value of a `Rule::Secret` variable.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

mod cluster;
mod stores;
mod vars;
pub use cluster::{ClusterConfig, ClusterTls};
use vars::entry;
pub use vars::{Fallback, Rule, VARS, Var, help_table};

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
    /// Bytes the open tenant pools may hold together (`GATEHOUSE_TENANT_POOL_MEMORY_MB`).
    pub tenant_pool_memory: u64,
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
    /// Largest catalog CSV import accepted.
    pub import_max_bytes: usize,
    /// Storefront cart writes per client IP per minute.
    pub store_per_minute: u32,
    /// MiB of pricing plugins' answers kept for identical calls (0: none).
    pub pricing_cache_mb: u32,
    /// Stripe's API base URL, without a trailing slash.
    pub stripe_api_base: String,
    /// Continuous backups (`None`: off).
    pub backup: Option<crate::backup::BackupConfig>,
    /// This node's id and cluster listener (`GATEHOUSE_NODE_ID`, `GATEHOUSE_CLUSTER_*`).
    pub cluster: ClusterConfig,
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

/// Every bad variable of one start, in table order, one `invalid VAR: …` line each (never empty). `cli::main`
/// prints it and exits with code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

/// One bad variable and what was expected of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub var: &'static str,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "invalid {}: {}", problem.var, problem.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// `true`/`false` and their usual spellings in env files.
fn parse_flag(raw: &str) -> Option<bool> {
    match raw {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// `raw` as a whole number within `min..=max` that fits `T`.
fn parse_whole<T: TryFrom<u64>>(raw: &str, min: u64, max: u64) -> Option<T> {
    raw.trim().parse::<u64>().ok().filter(|n| (min..=max).contains(n)).and_then(|n| T::try_from(n).ok())
}

/// Reads variables through `lookup` and records every bad one instead of stopping at the first.
struct Env<F: Fn(&str) -> Option<String>> {
    lookup: F,
    problems: Vec<Problem>,
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// The operator's value; set-but-empty counts as unset, as most operators expect of env files.
    fn get(&self, name: &'static str) -> Option<String> {
        assert!(VARS.iter().any(|var| var.name == name), "{name} is missing from config::VARS");
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    /// The operator's value, else the table's default value with `$PORT` filled in.
    fn value(&self, name: &'static str, port: u16) -> String {
        self.get(name).unwrap_or_else(|| entry(name).default_value().replace("$PORT", &port.to_string()))
    }

    /// A whole number within the table's bounds: the operator's, else `unset()`. A bad value is recorded and
    /// `unset()` stands in.
    fn number_or<T: TryFrom<u64>>(&mut self, name: &'static str, unset: impl FnOnce() -> T) -> T {
        let Rule::Number { what, min, max } = entry(name).rule else {
            panic!("{name} is not a number in config::VARS");
        };
        let Some(raw) = self.get(name) else { return unset() };
        match parse_whole(&raw, min, max) {
            Some(n) => n,
            None => {
                self.refuse(name, &format!("{what} {min}-{max}"), &raw);
                unset()
            }
        }
    }

    /// `number_or` with the table's default.
    fn number<T: TryFrom<u64>>(&mut self, name: &'static str) -> T {
        let var = entry(name);
        let Rule::Number { min, max, .. } = var.rule else {
            panic!("{name} is not a number in config::VARS");
        };
        self.number_or(name, || {
            parse_whole(var.default_value(), min, max).expect("a default lies within its bounds (tested)")
        })
    }

    /// A flag: the operator's, else the table's default. A bad value is recorded and the default stands in.
    fn flag(&mut self, name: &'static str) -> bool {
        let var = entry(name);
        assert!(matches!(var.rule, Rule::Flag), "{name} is not a flag in config::VARS");
        let default = parse_flag(var.default_value()).expect("a flag's default is true or false (tested)");
        match self.get(name) {
            None => default,
            Some(raw) => parse_flag(raw.trim()).unwrap_or_else(|| {
                self.refuse(name, "true or false", raw.trim());
                default
            }),
        }
    }

    /// One of the table's words: the operator's, else the default (`None` when the caller works it out). A bad
    /// value is recorded and the default stands in.
    fn choice(&mut self, name: &'static str) -> Option<&'static str> {
        let var = entry(name);
        let Rule::OneOf(words) = var.rule else {
            panic!("{name} is not a choice in config::VARS");
        };
        let default = match var.default {
            Fallback::Value(word) => Some(word),
            Fallback::Note(_) => None,
        };
        let Some(raw) = self.get(name) else { return default };
        match words.iter().find(|word| **word == raw.trim()) {
            Some(word) => Some(*word),
            None => {
                self.refuse(name, &words.join(" or "), raw.trim());
                default
            }
        }
    }

    /// An operator token (a `Rule::Secret`): at least 32 printable characters. A bad one is recorded and `None`
    /// stands in.
    fn token(&mut self, name: &'static str) -> Option<Secret> {
        let token = Secret::new(self.get(name)?.trim());
        if token.expose().len() < 32 || !token.expose().bytes().all(|b| b.is_ascii_graphic()) {
            self.refuse(name, "at least 32 printable characters", token.expose());
            return None;
        }
        Some(token)
    }

    /// Records a bad value, echoing it unless the table marks the variable `Rule::Secret`.
    fn refuse(&mut self, name: &'static str, expected: &str, got: &str) {
        let message = match entry(name).rule {
            Rule::Secret => format!("expected {expected} (value not shown)"),
            _ => format!("expected {expected}, got {got:?}"),
        };
        self.problems.push(Problem { var: name, message });
    }

    /// Records a problem that is not about the value's own form (a missing partner, a cross-variable limit).
    fn problem(&mut self, name: &'static str, message: String) {
        self.problems.push(Problem { var: name, message });
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests can pass a map instead of the process environment.
    ///
    /// A bad value is recorded and a stand-in (mostly the default) keeps reading going, so the error lists every
    /// bad variable; stand-ins never leave this function. Checks that join two variables run on stand-ins too, and
    /// the defaults are chosen so that they never fail on them.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Env { lookup, problems: Vec::new() };
        let port: u16 = env.number("PORT");
        let data_dir = PathBuf::from(env.value("GATEHOUSE_DATA_DIR", port));

        let listen_raw = env.value("GATEHOUSE_LISTEN", port);
        let listen = listen_raw.trim().parse::<SocketAddr>().unwrap_or_else(|_| {
            env.refuse("GATEHOUSE_LISTEN", "an address like 0.0.0.0:8080 or [::]:8080", &listen_raw);
            SocketAddr::from(([0, 0, 0, 0], 0))
        });
        let public_url_raw = env.value("GATEHOUSE_PUBLIC_URL", port);
        let public_url = parse_public_url(&public_url_raw).unwrap_or_else(|| {
            env.refuse("GATEHOUSE_PUBLIC_URL", "an http(s) URL without path, query or fragment", &public_url_raw);
            String::new()
        });

        let log_level = env.value("LOG_LEVEL", port);
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            env.refuse("LOG_LEVEL", "a level (error, warn, info, debug, trace) or a tracing filter", &log_level);
        }
        let log_format = match env.choice("GATEHOUSE_LOG_FORMAT") {
            Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => unreachable!("GATEHOUSE_LOG_FORMAT has no format {other:?}"),
            None => {
                use std::io::IsTerminal;
                if std::io::stdout().is_terminal() { LogFormat::Pretty } else { LogFormat::Json }
            }
        };

        let master_key = match env.get("GATEHOUSE_MASTER_KEY") {
            None => None,
            Some(raw) => {
                let key = B64.decode(raw.trim()).ok().and_then(|bytes| <[u8; 32]>::try_from(bytes).ok());
                if key.is_none() {
                    env.refuse("GATEHOUSE_MASTER_KEY", "base64 of 32 random bytes", &raw);
                }
                key
            }
        };

        let admin_email = env.get("GATEHOUSE_ADMIN_EMAIL").map(|e| e.trim().to_lowercase());
        let admin_password = env.get("GATEHOUSE_ADMIN_PASSWORD").map(Secret::new);
        match (&admin_email, &admin_password) {
            (Some(email), Some(password)) => {
                if crate::admin::validate_email(email).is_err() {
                    env.refuse("GATEHOUSE_ADMIN_EMAIL", "an email address", email);
                }
                if password.expose().chars().count() < 10 {
                    env.refuse("GATEHOUSE_ADMIN_PASSWORD", "at least 10 characters", password.expose());
                }
            }
            (Some(_), None) => env.problem(
                "GATEHOUSE_ADMIN_PASSWORD",
                "expected a value when GATEHOUSE_ADMIN_EMAIL is set (value not shown)".into(),
            ),
            (None, Some(_)) => env.problem(
                "GATEHOUSE_ADMIN_EMAIL",
                "expected an email address when GATEHOUSE_ADMIN_PASSWORD is set".into(),
            ),
            (None, None) => {}
        }
        let bootstrap_token = env.token("GATEHOUSE_BOOTSTRAP_TOKEN");

        let max_body_bytes = env.number("GATEHOUSE_MAX_BODY_BYTES");
        let timeout_ms: u64 = env.number("GATEHOUSE_REQUEST_TIMEOUT_MS");
        let grace_secs: u64 = env.number("GATEHOUSE_SHUTDOWN_GRACE_SECS");
        let tenant_pool_cache = env.number("GATEHOUSE_TENANT_POOL_CACHE");
        let tenant_pool_memory = env.number::<u64>("GATEHOUSE_TENANT_POOL_MEMORY_MB") << 20;
        let idle_secs: u64 = env.number("GATEHOUSE_TENANT_POOL_IDLE_SECS");
        let password = PasswordParams {
            memory_kib: env.number("GATEHOUSE_PASSWORD_MEMORY_KIB"),
            iterations: env.number("GATEHOUSE_PASSWORD_ITERATIONS"),
            parallelism: env.number("GATEHOUSE_PASSWORD_PARALLELISM"),
        };
        if password.memory_kib < 8 * password.parallelism {
            env.problem(
                "GATEHOUSE_PASSWORD_MEMORY_KIB",
                "expected at least 8 KiB per lane of GATEHOUSE_PASSWORD_PARALLELISM".into(),
            );
        }
        let admin_login_per_minute = env.number("GATEHOUSE_ADMIN_LOGIN_PER_MINUTE");
        let trust_proxy = env.flag("GATEHOUSE_TRUST_PROXY");
        let auth_per_minute = env.number("GATEHOUSE_AUTH_PER_MINUTE");
        let metrics_tenant_labels = env.flag("GATEHOUSE_METRICS_TENANT_LABELS");
        let metrics_token = env.token("GATEHOUSE_METRICS_TOKEN");

        let mode = match env.choice("GATEHOUSE_MAIL_MODE") {
            Some("smtp") => MailMode::Smtp,
            Some("dev") => MailMode::Dev,
            other => unreachable!("GATEHOUSE_MAIL_MODE has no mode {other:?}"),
        };
        let smtp_url = env.get("GATEHOUSE_SMTP_URL").map(|u| Secret::new(u.trim()));
        if let Some(url) = &smtp_url
            && let Err(why) = crate::email::smtp::SmtpSettings::from_url(url.expose())
        {
            env.problem("GATEHOUSE_SMTP_URL", format!("{why} (value not shown)"));
        }
        let smtp_from = match env.get("GATEHOUSE_SMTP_FROM") {
            None => format!("noreply@{}", host_of(&public_url)),
            Some(raw) => {
                let raw = raw.trim().to_owned();
                if raw.parse::<lettre::message::Mailbox>().is_err() {
                    env.refuse("GATEHOUSE_SMTP_FROM", "an address like noreply@example.com or Name <addr>", &raw);
                }
                raw
            }
        };
        let outbox = OutboxConfig {
            max_attempts: env.number("GATEHOUSE_OUTBOX_MAX_ATTEMPTS"),
            tenants_at_once: env.number("GATEHOUSE_OUTBOX_TENANTS"),
            per_tenant: env.number("GATEHOUSE_OUTBOX_PER_TENANT"),
        };
        let webhook_allow_private = env.flag("GATEHOUSE_WEBHOOK_ALLOW_PRIVATE");
        let webhook_timeout = Duration::from_secs(env.number("GATEHOUSE_WEBHOOK_TIMEOUT_SECS"));
        let plugin_max_bytes = env.number("GATEHOUSE_PLUGIN_MAX_BYTES");
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
        let plugin_slots = env.number_or("GATEHOUSE_PLUGIN_SLOTS", || (2 * cores).clamp(2, 64));
        let import_max_bytes = env.number("GATEHOUSE_IMPORT_MAX_BYTES");
        let store_per_minute = env.number("GATEHOUSE_STORE_PER_MINUTE");
        let pricing_cache_mb = env.number("GATEHOUSE_PRICING_CACHE_MB");
        let stripe_api_base = env.value("GATEHOUSE_STRIPE_API_BASE", 0).trim().trim_end_matches('/').to_owned();
        if reqwest::Url::parse(&stripe_api_base).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
            env.refuse("GATEHOUSE_STRIPE_API_BASE", "an http(s) URL", &stripe_api_base);
        }
        let backup = stores::backup_config(&mut env);
        let cluster = cluster::cluster_config(&mut env);

        if !env.problems.is_empty() {
            let mut problems = env.problems;
            problems.sort_by_key(|problem| VARS.iter().position(|var| var.name == problem.var));
            return Err(ConfigError { problems });
        }
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
            tenant_pool_memory,
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
            import_max_bytes,
            store_per_minute,
            pricing_cache_mb,
            stripe_api_base,
            backup,
            cluster,
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
        config.store_per_minute = 100_000;
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
    use std::cell::RefCell;
    use std::collections::{HashMap, HashSet};

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    /// The variables a start with `vars` refuses, in table order (empty when it starts).
    fn refused(vars: &[(&str, &str)]) -> Vec<&'static str> {
        match config(vars) {
            Ok(_) => Vec::new(),
            Err(err) => err.problems.iter().map(|problem| problem.var).collect(),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.public_url, "http://localhost:8080");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.max_body_bytes, 1_048_576);
        assert_eq!(c.mail.mode, MailMode::Smtp);
        assert!(!c.trust_proxy);
        assert!((1..=256).contains(&c.plugin_slots), "the computed plugin slots lie within their bounds");
    }

    #[test]
    fn every_default_value_passes_its_own_rule() {
        for var in VARS {
            let name = var.name;
            if let Rule::Number { min, max, .. } = var.rule {
                assert!(min <= max, "{name}: bounds {min}-{max}");
            }
            let Fallback::Value(default) = var.default else { continue };
            match var.rule {
                Rule::Number { min, max, .. } => {
                    let n: u64 = default.parse().unwrap_or_else(|_| panic!("{name}: default {default:?}"));
                    assert!((min..=max).contains(&n), "{name}: default {n} outside {min}-{max}");
                }
                Rule::OneOf(words) => assert!(words.contains(&default), "{name}: default {default:?} not allowed"),
                Rule::Flag => assert!(parse_flag(default).is_some(), "{name}: default {default:?}"),
                Rule::Text => assert!(!default.trim().is_empty(), "{name}: empty default"),
                Rule::Secret => panic!("{name}: a secret has no default value"),
            }
        }
        // Text defaults go through their own parsers, and every number through its field's type, on an empty
        // environment: any default that failed would be reported here.
        assert_eq!(refused(&[]), Vec::<&str>::new());
    }

    #[test]
    fn backups_are_off_without_a_url_and_a_bad_value_names_its_variable() {
        assert!(config(&[]).unwrap().backup.is_none());
        let c = config(&[
            ("GATEHOUSE_BACKUP_URL", "s3://my-bucket/site/"),
            ("GATEHOUSE_S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("GATEHOUSE_BACKUP_INTERVAL", "500ms"),
        ])
        .unwrap();
        let backup = c.backup.unwrap();
        assert_eq!((backup.bucket.as_str(), backup.prefix.as_str()), ("my-bucket", "site"));
        assert_eq!(backup.interval, Duration::from_millis(500));
        assert_eq!(backup.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(refused(&[("GATEHOUSE_BACKUP_URL", "https://x/y")]), ["GATEHOUSE_BACKUP_URL"]);
        let slow = [("GATEHOUSE_BACKUP_URL", "s3://ok-bucket"), ("GATEHOUSE_BACKUP_INTERVAL", "fast")];
        assert_eq!(refused(&slow), ["GATEHOUSE_BACKUP_INTERVAL"]);
        assert_eq!(refused(&[("GATEHOUSE_S3_PATH_STYLE", "maybe")]), ["GATEHOUSE_S3_PATH_STYLE"]);
        assert_eq!(refused(&[("GATEHOUSE_S3_ENDPOINT", "ftp://x")]), ["GATEHOUSE_S3_ENDPOINT"]);
        assert_eq!(refused(&[("GATEHOUSE_BACKUP_LEVELS", "1h,5m,30s")]), ["GATEHOUSE_BACKUP_LEVELS"]);
    }

    #[test]
    fn every_table_entry_is_read() {
        let read = RefCell::new(HashSet::new());
        Config::from_lookup(|name| {
            read.borrow_mut().insert(name.to_owned());
            None
        })
        .unwrap();
        for var in VARS {
            assert!(read.borrow().contains(var.name), "{} is in VARS but never read", var.name);
        }
    }

    #[test]
    fn every_allowed_word_is_accepted() {
        for var in VARS {
            let words: &[&str] = match var.rule {
                Rule::OneOf(words) => words,
                Rule::Flag => &["1", "true", "yes", "on", "0", "false", "no", "off"],
                _ => continue,
            };
            for &word in words {
                assert_eq!(refused(&[(var.name, word)]), Vec::<&str>::new(), "{}={word}", var.name);
            }
        }
        let c = config(&[
            ("GATEHOUSE_LOG_FORMAT", "pretty"),
            ("GATEHOUSE_MAIL_MODE", "dev"),
            ("GATEHOUSE_TRUST_PROXY", "on"),
        ]);
        let c = c.unwrap();
        assert_eq!((c.log_format, c.mail.mode, c.trust_proxy), (LogFormat::Pretty, MailMode::Dev, true));
    }

    #[test]
    fn every_bad_variable_is_reported() {
        let err = config(&[
            ("GATEHOUSE_OUTBOX_TENANTS", "0"),
            ("PORT", "abc"),
            ("GATEHOUSE_MASTER_KEY", "short-secret-value"),
            ("GATEHOUSE_TRUST_PROXY", "maybe"),
            ("GATEHOUSE_ADMIN_EMAIL", "not-an-email"),
            ("GATEHOUSE_ADMIN_PASSWORD", "hunter2"),
        ])
        .unwrap_err();
        let vars: Vec<&str> = err.problems.iter().map(|problem| problem.var).collect();
        assert_eq!(
            vars,
            [
                "PORT",
                "GATEHOUSE_MASTER_KEY",
                "GATEHOUSE_ADMIN_EMAIL",
                "GATEHOUSE_ADMIN_PASSWORD",
                "GATEHOUSE_TRUST_PROXY",
                "GATEHOUSE_OUTBOX_TENANTS",
            ],
            "every bad variable, in table order"
        );
        let text = err.to_string();
        assert_eq!(text.lines().count(), 6, "{text}");
        assert_eq!(text.lines().next(), Some(r#"invalid PORT: expected a port number 1-65535, got "abc""#));
        assert!(text.lines().all(|line| line.starts_with("invalid ")), "{text}");
        assert!(text.contains(r#"invalid GATEHOUSE_OUTBOX_TENANTS: expected a whole number 1-256, got "0""#));
        assert!(!text.contains("short-secret-value") && !text.contains("hunter2"), "{text}");
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
        assert_eq!(c.mail.smtp_from, "noreply@localhost");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = config(&[("PORT", "abc")]).unwrap_err();
        assert_eq!(err.to_string(), r#"invalid PORT: expected a port number 1-65535, got "abc""#);
        // One bad value is one line: the stand-ins that keep reading going raise nothing of their own.
        for (var, value) in [
            ("PORT", "0"),
            ("GATEHOUSE_LOG_FORMAT", "xml"),
            ("GATEHOUSE_MAIL_MODE", "pigeon"),
            ("GATEHOUSE_REQUEST_TIMEOUT_MS", "-1"),
            ("GATEHOUSE_PLUGIN_SLOTS", "0"),
            ("GATEHOUSE_PUBLIC_URL", "ftp://x"),
            ("GATEHOUSE_PUBLIC_URL", "https://x/path"),
            ("GATEHOUSE_LISTEN", "localhost"),
            ("GATEHOUSE_PASSWORD_MEMORY_KIB", "abc"),
            ("GATEHOUSE_PASSWORD_PARALLELISM", "65"),
            ("GATEHOUSE_SMTP_FROM", "not an address"),
        ] {
            assert_eq!(refused(&[(var, value)]), [var], "{var}={value}");
        }
        let lanes = [("GATEHOUSE_PASSWORD_MEMORY_KIB", "64"), ("GATEHOUSE_PASSWORD_PARALLELISM", "16")];
        assert_eq!(refused(&lanes), ["GATEHOUSE_PASSWORD_MEMORY_KIB"]);
    }

    #[test]
    fn secrets_are_not_echoed() {
        let err = config(&[("GATEHOUSE_MASTER_KEY", "short-secret-value")]).unwrap_err();
        assert_eq!(err.problems[0].var, "GATEHOUSE_MASTER_KEY");
        assert!(!err.to_string().contains("short-secret-value"));
        let err = config(&[("GATEHOUSE_BOOTSTRAP_TOKEN", "too-short-token")]).unwrap_err();
        assert!(!err.to_string().contains("too-short-token"));
        let err = config(&[("GATEHOUSE_METRICS_TOKEN", "short-metrics-token")]).unwrap_err();
        assert_eq!(err.problems[0].var, "GATEHOUSE_METRICS_TOKEN");
        assert!(!err.to_string().contains("short-metrics-token"));
        let err = config(&[("GATEHOUSE_SMTP_URL", "ftp://user:sm7p-pass@host")]).unwrap_err();
        assert_eq!(err.problems[0].var, "GATEHOUSE_SMTP_URL");
        assert!(!err.to_string().contains("sm7p-pass"));
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
        assert_eq!(refused(&[("GATEHOUSE_METRICS_TOKEN", spaced)]), ["GATEHOUSE_METRICS_TOKEN"]);
    }

    #[test]
    fn public_url_loses_its_trailing_slash() {
        let c = config(&[("GATEHOUSE_PUBLIC_URL", "https://id.example.com/")]).unwrap();
        assert_eq!(c.public_url, "https://id.example.com");
        assert!(c.is_https());
    }

    #[test]
    fn admin_email_and_password_come_together() {
        assert_eq!(refused(&[("GATEHOUSE_ADMIN_EMAIL", "a@b.co")]), ["GATEHOUSE_ADMIN_PASSWORD"]);
        assert_eq!(refused(&[("GATEHOUSE_ADMIN_PASSWORD", "0123456789")]), ["GATEHOUSE_ADMIN_EMAIL"]);
    }

    #[test]
    fn help_shows_defaults_and_bounds_from_the_table() {
        let help = help_table();
        assert!(help.contains("default: 30000; allowed 100-3600000"), "{help}");
        assert!(help.contains("default: smtp; allowed smtp or dev"), "{help}");
        assert!(help.contains("default: 0.0.0.0:$PORT\n"), "{help}");
    }
}
