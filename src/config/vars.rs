//! The table of configuration variables: each one's name, default, bounds or allowed words, and meaning.
//! `Config::from_lookup` reads defaults and bounds from here and `gatehouse serve --help` prints it, so a
//! default is written in exactly one place.

/// One configuration variable: its name, its default, what a value must be, and what it means.
pub struct Var {
    pub name: &'static str,
    pub default: Fallback,
    pub rule: Rule,
    pub help: &'static str,
}

/// What an unset variable means.
#[derive(Debug, Clone, Copy)]
pub enum Fallback {
    /// This value, read exactly as if the operator had set it (so it passes the same checks). `$PORT` in the
    /// default of `GATEHOUSE_LISTEN` and `GATEHOUSE_PUBLIC_URL` stands for the port in use.
    Value(&'static str),
    /// Worked out at start, or nothing at all, as the text says (only shown in `--help`).
    Note(&'static str),
}

/// What a set value must be.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// A whole number in `min..=max`; `what` names it in errors ("a whole number 1-100").
    Number { what: &'static str, min: u64, max: u64 },
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// `true` or `false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    Flag,
    /// Text checked by its own parser in `Config::from_lookup`.
    Text,
    /// Like `Text`, but never echoed back, and never given a default value.
    Secret,
}

const fn whole(min: u64, max: u64) -> Rule {
    Rule::Number { what: "a whole number", min, max }
}

pub const VARS: &[Var] = &[
    Var {
        name: "GATEHOUSE_DATA_DIR",
        default: Fallback::Value("./data"),
        rule: Rule::Text,
        help: "directory for control.db, tenant files, master.key",
    },
    Var {
        name: "PORT",
        default: Fallback::Value("8080"),
        rule: Rule::Number { what: "a port number", min: 1, max: 65_535 },
        help: "port to listen on (used by GATEHOUSE_LISTEN and the public URL defaults)",
    },
    Var {
        name: "GATEHOUSE_LISTEN",
        default: Fallback::Value("0.0.0.0:$PORT"),
        rule: Rule::Text,
        help: "socket address to bind",
    },
    Var {
        name: "GATEHOUSE_PUBLIC_URL",
        default: Fallback::Value("http://localhost:$PORT"),
        rule: Rule::Text,
        help: "external base URL; https turns on Secure cookies and HSTS",
    },
    Var {
        name: "LOG_LEVEL",
        default: Fallback::Value("info"),
        rule: Rule::Text,
        help: "tracing filter, e.g. info or gatehouse=debug,info",
    },
    Var {
        name: "GATEHOUSE_LOG_FORMAT",
        default: Fallback::Note("json (pretty on a TTY)"),
        rule: Rule::OneOf(&["json", "pretty"]),
        help: "format of log lines",
    },
    Var {
        name: "GATEHOUSE_MASTER_KEY",
        default: Fallback::Note("(generated into data dir)"),
        rule: Rule::Secret,
        help: "base64 of 32 bytes; encrypts secrets at rest",
    },
    Var {
        name: "GATEHOUSE_ADMIN_EMAIL",
        default: Fallback::Note("(none)"),
        rule: Rule::Text,
        help: "first operator's email, with GATEHOUSE_ADMIN_PASSWORD",
    },
    Var {
        name: "GATEHOUSE_ADMIN_PASSWORD",
        default: Fallback::Note("(none)"),
        rule: Rule::Secret,
        help: "first operator's password (at least 10 characters)",
    },
    Var {
        name: "GATEHOUSE_BOOTSTRAP_TOKEN",
        default: Fallback::Note("(none)"),
        rule: Rule::Secret,
        help: "operator API token for automation, at least 32 characters",
    },
    Var {
        name: "GATEHOUSE_MAX_BODY_BYTES",
        default: Fallback::Value("1048576"),
        rule: whole(1024, 1 << 30),
        help: "largest request body accepted",
    },
    Var {
        name: "GATEHOUSE_PLUGIN_MAX_BYTES",
        default: Fallback::Value("8388608"),
        rule: whole(1024, 32 << 20),
        help: "largest plugin component accepted (JavaScript components are ~12 MB)",
    },
    Var {
        name: "GATEHOUSE_STORE_PER_MINUTE",
        default: Fallback::Value("600"),
        rule: whole(1, 1_000_000),
        help: "storefront cart writes per client IP per minute (behind GATEHOUSE_TRUST_PROXY like the sign-in limit)",
    },
    Var {
        name: "GATEHOUSE_PRICING_CACHE_MB",
        default: Fallback::Value("32"),
        rule: whole(0, 4096),
        help: "memory for pricing plugins' answers, reused for the same cart and plugin version and config (0: off)",
    },
    Var {
        name: "GATEHOUSE_STRIPE_API_BASE",
        default: Fallback::Value("https://api.stripe.com"),
        rule: Rule::Text,
        help: "where Stripe's REST API is reached (tests and Stripe's mock servers point it elsewhere)",
    },
    Var {
        name: "GATEHOUSE_BACKUP_URL",
        default: Fallback::Note("unset: backups off (logged at start, shown on the dashboard)"),
        rule: Rule::Text,
        help: "s3://bucket/prefix: continuous Litestream-compatible backups of control.db and every tenant file",
    },
    Var {
        name: "GATEHOUSE_S3_ENDPOINT",
        default: Fallback::Note("AWS S3"),
        rule: Rule::Text,
        help: "the S3-compatible endpoint URL (MinIO, R2, B2, ...); credentials come from the standard AWS chain",
    },
    Var {
        name: "GATEHOUSE_S3_REGION",
        default: Fallback::Note("AWS_REGION, else us-east-1 with an endpoint"),
        rule: Rule::Text,
        help: "the bucket's region",
    },
    Var {
        name: "GATEHOUSE_S3_PATH_STYLE",
        default: Fallback::Note("true when GATEHOUSE_S3_ENDPOINT is set"),
        rule: Rule::Text,
        help: "true: path-style bucket URLs (endpoint/bucket/key); false: virtual-hosted (bucket.endpoint/key)",
    },
    Var {
        name: "GATEHOUSE_BACKUP_INTERVAL",
        default: Fallback::Value("1s"),
        rule: Rule::Text,
        help: "how often commits are captured and uploaded: 500ms, 1s, 2m (a bare number is seconds)",
    },
    Var {
        name: "GATEHOUSE_BACKUP_MAX_SPOOL_MB",
        default: Fallback::Value("1024"),
        rule: whole(1, 1_048_576),
        help: "local spool of files not yet uploaded; beyond it the oldest are dropped (a recorded gap)",
    },
    Var {
        name: "GATEHOUSE_BACKUP_LEVELS",
        default: Fallback::Value("30s,5m,1h"),
        rule: Rule::Text,
        help: "how often compaction levels 1, 2 and 3 merge the level below (L0 files stay 10 L1 intervals)",
    },
    Var {
        name: "GATEHOUSE_BACKUP_RETENTION_HOURS",
        default: Fallback::Value("24"),
        rule: whole(1, 8_760),
        help: "how far back a restore can go: older snapshots and the files only they need are deleted",
    },
    Var {
        name: "GATEHOUSE_BACKUP_VERIFY_INTERVAL",
        default: Fallback::Value("24h"),
        rule: Rule::Text,
        help: "how often the backup self-check verifies a sample of replicas (control and up to 3 tenants), e.g. 24h, 30m; off to disable",
    },
    Var {
        name: "GATEHOUSE_BACKUP_SNAPSHOT_HOURS",
        default: Fallback::Value("24"),
        rule: whole(1, 720),
        help: "a written database gets a full snapshot (level 9) at most this often",
    },
    Var {
        name: "GATEHOUSE_IMPORT_MAX_BYTES",
        default: Fallback::Value("33554432"),
        rule: whole(1024, 256 << 20),
        help: "largest catalog CSV import accepted",
    },
    Var {
        name: "GATEHOUSE_PLUGIN_SLOTS",
        default: Fallback::Note("2 x cores"),
        rule: whole(1, 256),
        help: "plugin calls running at once",
    },
    Var {
        name: "GATEHOUSE_REQUEST_TIMEOUT_MS",
        default: Fallback::Value("30000"),
        rule: whole(100, 3_600_000),
        help: "time limit of one request",
    },
    Var {
        name: "GATEHOUSE_SHUTDOWN_GRACE_SECS",
        default: Fallback::Value("30"),
        rule: whole(0, 3600),
        help: "how long shutdown waits for in-flight requests",
    },
    Var {
        name: "GATEHOUSE_TENANT_POOL_CACHE",
        default: Fallback::Value("1000"),
        rule: whole(1, 1_000_000),
        help: "most tenant database pools kept open",
    },
    Var {
        name: "GATEHOUSE_TENANT_POOL_MEMORY_MB",
        default: Fallback::Value("32"),
        rule: whole(1, 1 << 20),
        help: "memory the open tenant pools may hold together",
    },
    Var {
        name: "GATEHOUSE_TENANT_POOL_IDLE_SECS",
        default: Fallback::Value("300"),
        rule: whole(1, 86_400 * 7),
        help: "an unused tenant pool is closed after this",
    },
    Var {
        name: "GATEHOUSE_PASSWORD_MEMORY_KIB",
        default: Fallback::Value("19456"),
        rule: whole(8, 4 * 1024 * 1024),
        help: "argon2id memory cost (at least 8 per lane)",
    },
    Var {
        name: "GATEHOUSE_PASSWORD_ITERATIONS",
        default: Fallback::Value("2"),
        rule: whole(1, 100),
        help: "argon2id time cost",
    },
    Var {
        name: "GATEHOUSE_PASSWORD_PARALLELISM",
        default: Fallback::Value("1"),
        rule: whole(1, 64),
        help: "argon2id lanes",
    },
    Var {
        name: "GATEHOUSE_ADMIN_LOGIN_PER_MINUTE",
        default: Fallback::Value("10"),
        rule: whole(1, 100_000),
        help: "admin login attempts per client IP and minute",
    },
    Var {
        name: "GATEHOUSE_AUTH_PER_MINUTE",
        default: Fallback::Value("30"),
        rule: whole(1, 1_000_000),
        help: "end-user sign-in, sign-up and password-reset requests per client IP and minute",
    },
    Var {
        name: "GATEHOUSE_METRICS_TENANT_LABELS",
        default: Fallback::Value("false"),
        rule: Rule::Flag,
        help: "label login metrics by tenant (one series per tenant: mind the cardinality)",
    },
    Var {
        name: "GATEHOUSE_METRICS_TOKEN",
        default: Fallback::Note("(none: /metrics is open)"),
        rule: Rule::Secret,
        help: "bearer token /metrics requires, at least 32 characters",
    },
    Var {
        name: "GATEHOUSE_TRUST_PROXY",
        default: Fallback::Value("false"),
        rule: Rule::Flag,
        help: "take the client IP from X-Forwarded-For (only behind a proxy you run)",
    },
    Var {
        name: "GATEHOUSE_MAIL_MODE",
        default: Fallback::Value("smtp"),
        rule: Rule::OneOf(&["smtp", "dev"]),
        help: "smtp sends mail (dev mailbox if a tenant has no transport); dev keeps all mail in the dev mailbox",
    },
    Var {
        name: "GATEHOUSE_SMTP_URL",
        default: Fallback::Note("(none)"),
        rule: Rule::Secret,
        help: "fallback transport for tenants without SMTP settings: smtp[s]://user:pass@host:port?tls=none|starttls|tls",
    },
    Var {
        name: "GATEHOUSE_SMTP_FROM",
        default: Fallback::Note("noreply@<public host>"),
        rule: Rule::Text,
        help: "From address for mail sent through GATEHOUSE_SMTP_URL",
    },
    Var {
        name: "GATEHOUSE_OUTBOX_MAX_ATTEMPTS",
        default: Fallback::Value("10"),
        rule: whole(1, 100),
        help: "delivery attempts before a message is dead",
    },
    Var {
        name: "GATEHOUSE_OUTBOX_TENANTS",
        default: Fallback::Value("4"),
        rule: whole(1, 256),
        help: "tenants whose outbox is worked on at once",
    },
    Var {
        name: "GATEHOUSE_OUTBOX_PER_TENANT",
        default: Fallback::Value("4"),
        rule: whole(1, 64),
        help: "messages of one tenant in flight at once",
    },
    Var {
        name: "GATEHOUSE_WEBHOOK_TIMEOUT_SECS",
        default: Fallback::Value("10"),
        rule: whole(1, 300),
        help: "how long a webhook receiver has to answer",
    },
    Var {
        name: "GATEHOUSE_WEBHOOK_ALLOW_PRIVATE",
        default: Fallback::Value("false"),
        rule: Rule::Flag,
        help: "allow webhook URLs on loopback, private, link-local and metadata addresses",
    },
    Var {
        name: "GATEHOUSE_NODE_ID",
        default: Fallback::Note("the id kept in {data dir}/node_id, made at first start"),
        rule: whole(1, (1 << 53) - 1),
        help: "this node's cluster id; when set it must match the data dir's (a wiped node needs a new one)",
    },
    Var {
        name: "GATEHOUSE_RAFT_SNAPSHOT_ENTRIES",
        default: Fallback::Value("2000"),
        rule: whole(10, 1_000_000),
        help: "control-plane log entries between snapshots; a quarter as many are kept after one for lagging peers",
    },
    Var {
        name: "GATEHOUSE_CLUSTER_ADDR",
        default: Fallback::Note("unset: no cluster listener; the node is a one-node cluster of itself"),
        rule: Rule::Text,
        help: "socket address of the internal cluster listener (Raft, forwarded writes and requests, joins)",
    },
    Var {
        name: "GATEHOUSE_CLUSTER_ADVERTISE",
        default: Fallback::Note("GATEHOUSE_CLUSTER_ADDR, unless its host is 0.0.0.0 or ::"),
        rule: Rule::Text,
        help: "host:port the other nodes reach this node's cluster listener at",
    },
    Var {
        name: "GATEHOUSE_CLUSTER_JOIN_TOKEN",
        default: Fallback::Note("(none; required with GATEHOUSE_CLUSTER_ADDR)"),
        rule: Rule::Secret,
        help: "shared secret of the cluster's nodes, at least 32 characters: joins and every internal call carry it",
    },
    Var {
        name: "GATEHOUSE_CLUSTER_TLS_CERT",
        default: Fallback::Note("unset: plain HTTP between nodes (a private network only)"),
        rule: Rule::Text,
        help: "PEM certificate chain of this node (server and client), signed by GATEHOUSE_CLUSTER_TLS_CA",
    },
    Var {
        name: "GATEHOUSE_CLUSTER_TLS_KEY",
        default: Fallback::Note("unset"),
        rule: Rule::Text,
        help: "PEM private key of GATEHOUSE_CLUSTER_TLS_CERT",
    },
    Var {
        name: "GATEHOUSE_CLUSTER_TLS_CA",
        default: Fallback::Note("unset"),
        rule: Rule::Text,
        help: "PEM CA certificate(s): peers must present a certificate it signed (mutual TLS), plaintext is refused",
    },
];

/// The table entry of `name`; reading a variable the table lacks is a bug, caught by any test that reads config.
pub(super) fn entry(name: &str) -> &'static Var {
    VARS.iter().find(|var| var.name == name).unwrap_or_else(|| panic!("{name} is missing from config::VARS"))
}

impl Var {
    /// The default as a value; only for variables whose default is one.
    pub(super) fn default_value(&self) -> &'static str {
        match self.default {
            Fallback::Value(value) => value,
            Fallback::Note(_) => panic!("{} has no default value in config::VARS", self.name),
        }
    }
}

/// The rendered variable table for `--help`.
pub fn help_table() -> String {
    let mut out = String::from("Environment variables:\n");
    for var in VARS {
        let default = match var.default {
            Fallback::Value(text) | Fallback::Note(text) => text,
        };
        let allowed = match var.rule {
            Rule::Number { min, max, .. } => format!("; allowed {min}-{max}"),
            Rule::OneOf(words) => format!("; allowed {}", words.join(" or ")),
            Rule::Flag | Rule::Text | Rule::Secret => String::new(),
        };
        out.push_str(&format!("  {:<34} {}\n  {:<34} default: {default}{allowed}\n", var.name, var.help, ""));
    }
    out
}
