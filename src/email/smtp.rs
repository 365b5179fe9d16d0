//! SMTP transports: the per-tenant settings (a control-plane row written by `Mutation::SetTenantSmtp`), the
//! global fallback from `GATEHOUSE_SMTP_URL`, and the cache of built lettre transports.
//!
//! Which way a tenant's mail goes is decided by `Mailer::route`: dev mode → dev mailbox; the tenant's own
//! settings; else the global URL; else the dev mailbox with a warning (logged once per tenant and shown on the
//! admin dashboard).

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use moka::sync::Cache;
use serde::{Deserialize, Serialize};

use crate::config::{Config, MailMode};
use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::tenants::TenantSlug;

/// How long one SMTP conversation may take before the attempt counts as failed.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text (a relay on localhost or a private network).
    None,
    /// Connect in plain text, then STARTTLS; refuses to continue without it.
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

impl TlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::None => "none",
            TlsMode::Starttls => "starttls",
            TlsMode::Tls => "tls",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "none" => Some(TlsMode::None),
            "starttls" => Some(TlsMode::Starttls),
            "tls" => Some(TlsMode::Tls),
            _ => None,
        }
    }
}

/// A tenant's SMTP settings as stored: the password sealed with the master key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpRecord {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password_sealed: Option<String>,
    pub from_email: String,
    pub from_name: Option<String>,
    pub updated_at: i64,
    /// Saved by a tenant-scoped admin: mail goes only to a resolved address that passes the private-address
    /// guard (checked again at every drain, so a host that later resolves inward reaches nothing internal).
    #[serde(default)]
    pub guarded: bool,
}

impl SmtpRecord {
    /// The sealing context of a tenant's SMTP password.
    pub fn password_context(slug: &TenantSlug) -> String {
        format!("smtp-password:{slug}")
    }
}

/// Settings ready to build a transport: the password in clear, in memory only.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Connect to this address instead of resolving `host` (TLS still verifies the certificate for `host`).
    pub connect_to: Option<std::net::IpAddr>,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl SmtpSettings {
    /// Parses `smtp[s]://[user[:pass]@]host[:port][?tls=none|starttls|tls]`. `smtps://` means TLS from the
    /// first byte (default port 465); `smtp://` defaults to STARTTLS on port 587. Errors never contain the URL.
    pub fn from_url(raw: &str) -> std::result::Result<Self, String> {
        let (scheme, rest) = raw.split_once("://").ok_or("expected smtp:// or smtps://")?;
        let mut tls = match scheme {
            "smtp" => TlsMode::Starttls,
            "smtps" => TlsMode::Tls,
            _ => return Err("expected smtp:// or smtps://".into()),
        };
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = authority.trim_end_matches('/');
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let decode = |s: &str| percent_decode(s).ok_or_else(|| "bad percent-encoding in the user info".to_string());
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (Some(decode(user)?), Some(decode(pass)?)),
                None => (Some(decode(u)?), None),
            },
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("tls", value)) => {
                    tls = TlsMode::parse(value).ok_or("tls must be none, starttls or tls")?;
                }
                _ => return Err("the only query parameter is tls=none|starttls|tls".into()),
            }
        }
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h, p.parse::<u16>().ok().filter(|p| *p > 0).ok_or("bad port")?)
            }
            _ => (hostport, if tls == TlsMode::Tls { 465 } else { 587 }),
        };
        let host = host.trim_matches(['[', ']']).to_owned();
        check_host(&host)?;
        Ok(SmtpSettings { host, port, tls, username, password, connect_to: None })
    }
}

fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A host name or IP literal: letters, digits, dots, hyphens, colons; no spaces or URL syntax.
pub fn check_host(host: &str) -> std::result::Result<(), String> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:_".contains(&b))
        && !host.starts_with(['-', '.']);
    if ok { Ok(()) } else { Err("expected a host name or IP address".into()) }
}

/// Where one tenant's mail goes right now.
#[derive(Clone)]
pub enum Route {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    /// Kept in the dev mailbox; `fallback` is true when this is because no transport is configured.
    Mailbox {
        from: Mailbox,
        fallback: bool,
    },
}

/// A tenant's transport with what it was built from: the settings version and the pinned address, if any.
type CachedTransport = (i64, Option<std::net::IpAddr>, AsyncSmtpTransport<Tokio1Executor>);

/// Builds and caches transports. A cached transport keeps its SMTP connection pool, so consecutive mails of a
/// tenant reuse one connection.
pub struct Mailer {
    mode: MailMode,
    global: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
    hello: ClientId,
    /// Per tenant: the settings version and pinned address the transport was built from, and the transport.
    tenants: Cache<TenantSlug, Arc<CachedTransport>>,
    /// Tenants already warned about falling back to the dev mailbox.
    warned: Cache<TenantSlug, ()>,
}

impl Mailer {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let hello = ClientId::Domain(config.public_host().to_owned());
        let global = match &config.mail.smtp_url {
            None => None,
            Some(url) => {
                let settings = SmtpSettings::from_url(url.expose()).map_err(anyhow::Error::msg)?;
                let from: Mailbox = config.mail.smtp_from.parse()?;
                Some((build_transport(&settings, &hello)?, from))
            }
        };
        Ok(Self {
            mode: config.mail.mode,
            global,
            hello,
            tenants: Cache::builder().max_capacity(10_000).time_to_idle(Duration::from_secs(3600)).build(),
            warned: Cache::builder().max_capacity(100_000).build(),
        })
    }

    /// Whether a tenant without its own settings has anywhere real to send.
    pub fn has_global(&self) -> bool {
        self.global.is_some()
    }

    pub fn mode(&self) -> MailMode {
        self.mode
    }

    /// The route of `slug`'s mail given its stored settings (if any); `display_name` names the sender when the
    /// settings have no From name.
    pub fn route(
        &self,
        slug: &TenantSlug,
        record: Option<&SmtpRecord>,
        display_name: &str,
        key: &MasterKey,
        connect_to: Option<std::net::IpAddr>,
    ) -> Result<Route> {
        let named = |addr: &str, name: Option<&str>| -> Result<Mailbox> {
            let email = addr.parse().map_err(|_| Error::validation(format!("bad From address {addr:?}")))?;
            Ok(Mailbox::new(Some(name.unwrap_or(display_name).to_owned()), email))
        };
        if let Some(record) = record {
            let from = named(&record.from_email, record.from_name.as_deref())?;
            if self.mode == MailMode::Dev {
                return Ok(Route::Mailbox { from, fallback: false });
            }
            let transport = match self.tenants.get(slug) {
                Some(cached) if cached.0 == record.updated_at && cached.1 == connect_to => cached.2.clone(),
                _ => {
                    let password = match &record.password_sealed {
                        None => None,
                        Some(sealed) => Some(
                            String::from_utf8(key.open(sealed, &SmtpRecord::password_context(slug))?)
                                .map_err(Error::internal)?,
                        ),
                    };
                    let settings = SmtpSettings {
                        host: record.host.clone(),
                        port: record.port,
                        tls: record.tls,
                        username: record.username.clone(),
                        password,
                        connect_to,
                    };
                    let transport = build_transport(&settings, &self.hello).map_err(Error::internal)?;
                    self.tenants.insert(slug.clone(), Arc::new((record.updated_at, connect_to, transport.clone())));
                    transport
                }
            };
            return Ok(Route::Smtp { transport, from });
        }
        match (&self.global, self.mode) {
            (Some((transport, from)), MailMode::Smtp) => {
                let from = Mailbox::new(
                    Some(from.name.clone().unwrap_or_else(|| display_name.to_owned())),
                    from.email.clone(),
                );
                Ok(Route::Smtp { transport: transport.clone(), from })
            }
            (global, mode) => {
                let from = global.as_ref().map_or_else(
                    || Mailbox::new(Some(display_name.to_owned()), "noreply@localhost".parse().expect("valid address")),
                    |(_, from)| from.clone(),
                );
                let fallback = mode == MailMode::Smtp;
                if fallback && !self.warned.contains_key(slug) {
                    self.warned.insert(slug.clone(), ());
                    tracing::warn!(tenant = %slug, "no SMTP transport configured for this tenant and no GATEHOUSE_SMTP_URL: mail is kept in the dev mailbox");
                }
                Ok(Route::Mailbox { from, fallback })
            }
        }
    }

    /// Forgets the cached transport of `slug` (its settings changed or were removed).
    pub fn forget(&self, slug: &TenantSlug) {
        self.tenants.invalidate(slug);
    }
}

fn build_transport(settings: &SmtpSettings, hello: &ClientId) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let params = || TlsParameters::new(settings.host.clone());
    let tls = match settings.tls {
        TlsMode::None => Tls::None,
        TlsMode::Starttls => Tls::Required(params()?),
        TlsMode::Tls => Tls::Wrapper(params()?),
    };
    let server = settings.connect_to.map_or_else(|| settings.host.clone(), |ip| ip.to_string());
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server)
        .port(settings.port)
        .tls(tls)
        .hello_name(hello.clone())
        .timeout(Some(SMTP_TIMEOUT));
    if let Some(user) = &settings.username {
        builder = builder.credentials(Credentials::new(user.clone(), settings.password.clone().unwrap_or_default()));
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls() {
        let s = SmtpSettings::from_url("smtp://user%40x:p%3Ass@mail.example.com:2525?tls=none").unwrap();
        assert_eq!((s.host.as_str(), s.port, s.tls), ("mail.example.com", 2525, TlsMode::None));
        assert_eq!((s.username.as_deref(), s.password.as_deref()), (Some("user@x"), Some("p:ss")));
        let s = SmtpSettings::from_url("smtps://relay").unwrap();
        assert_eq!((s.port, s.tls, s.username), (465, TlsMode::Tls, None));
        assert_eq!(SmtpSettings::from_url("smtp://relay").unwrap().port, 587);
        assert!(SmtpSettings::from_url("http://relay").is_err());
        assert!(SmtpSettings::from_url("smtp://relay?tls=maybe").is_err());
        assert!(SmtpSettings::from_url("smtp://relay:0").is_err());
        let err = SmtpSettings::from_url("smtp://u:secretpw@bad host").unwrap_err();
        assert!(!err.contains("secretpw"));
    }
}
