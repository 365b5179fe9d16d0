//! Webhooks: subscriptions (tenant table `webhooks`), signed deliveries through the outbox, and the SSRF guard.
//!
//! A delivery is `POST <url>` with the event body `{"id","type","tenant","created_at","data"}` and headers
//! `Gatehouse-Event`, `Gatehouse-Delivery` (the outbox row id) and
//! `Gatehouse-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`. 2xx is delivered; anything
//! else, a timeout (`GATEHOUSE_WEBHOOK_TIMEOUT_SECS`, 10 s) or a refused destination is a failed attempt, retried like mail.
//!
//! SSRF guard: unless `GATEHOUSE_WEBHOOK_ALLOW_PRIVATE=true`, URLs whose host is, or resolves to, a loopback,
//! private, link-local (cloud metadata), CGNAT, multicast or unspecified address are refused when the webhook is
//! saved, and again at delivery time by the HTTP client's resolver (so DNS that changes later does not get
//! through). Redirects are not followed and proxies are not used. IPv6 forms that carry an IPv4 address
//! (mapped, IPv4-compatible, NAT64, 6to4) are judged by that address; Teredo, site-local and documentation
//! addresses are refused outright. `check_host_allowed` applies the same guard to a bare host (the SMTP host).

pub mod api;
pub mod events;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use sha2::Sha256;

use crate::crypto::MasterKey;
use crate::email::outbox::{self, Response};
use crate::error::{Error, Result};
use crate::tenants::TenantSlug;

/// How much of a receiver's answer is kept on the delivery.
const RESPONSE_KEEP_BYTES: usize = 1024;
const MAX_WEBHOOKS_PER_TENANT: i64 = 50;

/// A webhook subscription as the admin API shows it (never with its signing secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    /// Event types (see `event_types` of the listing), or `*` for every event.
    pub events: Vec<String>,
    pub description: String,
    pub enabled: bool,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

const COLUMNS: &str = "id, url, events, description, enabled, created_at, updated_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Webhook> {
    let events: String = r.get(2)?;
    Ok(Webhook {
        id: r.get(0)?,
        url: r.get(1)?,
        events: serde_json::from_str(&events).unwrap_or_default(),
        description: r.get(3)?,
        enabled: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

/// The sealing context of a webhook's signing secret.
fn secret_context(slug: &TenantSlug, id: &str) -> String {
    format!("webhook-secret:{slug}:{id}")
}

/// A checked webhook URL: http(s), a host, at most 2 KiB, and (unless private addresses are allowed) not an
/// obviously internal host. Host names are resolved by `check_resolves` before saving.
pub fn parse_url(raw: &str, allow_private: bool) -> Result<reqwest::Url> {
    let raw = raw.trim();
    if raw.len() > 2048 {
        return Err(Error::validation("url is longer than 2048 characters"));
    }
    let url = reqwest::Url::parse(raw).map_err(|_| Error::validation("url must be an absolute http(s) URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(Error::validation("url must be an absolute http(s) URL"));
    }
    if !allow_private && url.host().is_none_or(|host| host_refused(&host)) {
        return Err(private_refused());
    }
    Ok(url)
}

/// Whether a host is internal on its face: a forbidden IP literal, or a name that is local by definition.
fn host_refused<S: AsRef<str>>(host: &url::Host<S>) -> bool {
    match host {
        url::Host::Ipv4(ip) => is_forbidden(IpAddr::V4(*ip)),
        url::Host::Ipv6(ip) => is_forbidden(IpAddr::V6(*ip)),
        url::Host::Domain(name) => {
            let name = name.as_ref().trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost") || name.ends_with(".internal")
        }
    }
}

/// Whether `name` resolves, and only to forbidden addresses. A name that does not resolve passes; guarding what
/// it resolves to later is up to the caller.
async fn resolves_only_to_forbidden(name: &str, port: u16) -> bool {
    match tokio::net::lookup_host((name, port)).await {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| is_forbidden(a.ip()))
        }
        Err(_) => false,
    }
}

fn private_refused() -> Error {
    Error::validation(
        "url points to a loopback, private, link-local or metadata address; \
         set GATEHOUSE_WEBHOOK_ALLOW_PRIVATE=true to allow internal receivers",
    )
}

/// Resolves the URL's host name and refuses it when every address it has is forbidden. A name that does not
/// resolve today may tomorrow; delivery-time checks still apply.
pub async fn check_resolves(url: &reqwest::Url, allow_private: bool) -> Result<()> {
    let Some(url::Host::Domain(host)) = url.host() else { return Ok(()) };
    if allow_private {
        return Ok(());
    }
    let port = url.port_or_known_default().unwrap_or(443);
    if resolves_only_to_forbidden(host, port).await {
        return Err(private_refused());
    }
    Ok(())
}

/// The guard of `parse_url` and `check_resolves` for a bare host name or IP literal (an IPv6 one bracketed or
/// not), such as a tenant's SMTP host. Callers skip it when the operator allows internal hosts. A name that does
/// not resolve yet passes, and nothing here checks what it resolves to when it is used.
pub async fn check_host_allowed(host: &str, port: u16) -> Result<()> {
    let host = host.trim();
    // `Host::parse` wants IPv6 in brackets, as in a URL; it also reads numeric forms such as `127.1` as IPv4.
    let parsed = match host.parse::<Ipv6Addr>() {
        Ok(v6) => url::Host::Ipv6(v6),
        Err(_) => url::Host::parse(host).map_err(|_| Error::validation("host must be a host name or an IP address"))?,
    };
    // Stricter than for webhooks: one internal address among public ones is enough to refuse, since the mail
    // transport connects to whichever address it is given first.
    let refused = host_refused(&parsed)
        || match &parsed {
            url::Host::Domain(name) => match tokio::net::lookup_host((&**name, port)).await {
                Ok(mut addrs) => addrs.any(|a| is_forbidden(a.ip())),
                Err(_) => false,
            },
            _ => false,
        };
    if refused {
        return Err(Error::validation(
            "host points to a loopback, private, link-local or metadata address; only an operator may use internal \
             hosts",
        ));
    }
    Ok(())
}

/// The address a guarded SMTP host is reached at: its first resolved address, if every address it resolves to
/// passes the guard (one internal address refuses the host, as when it was saved).
pub async fn vetted_address(host: &str, port: u16) -> Result<IpAddr> {
    let refused = || {
        Error::validation(format!(
            "SMTP host {host} resolves to a loopback, private, link-local or metadata address; only an operator may \
             use internal hosts"
        ))
    };
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return if is_forbidden(ip) { Err(refused()) } else { Ok(ip) };
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Error::validation(format!("SMTP host {host} does not resolve: {e}")))?
        .collect();
    match addrs.first() {
        Some(first) if !addrs.iter().any(|a| is_forbidden(a.ip())) => Ok(first.ip()),
        Some(_) => Err(refused()),
        None => Err(Error::validation(format!("SMTP host {host} has no address"))),
    }
}

/// Addresses a webhook must never reach unless private receivers are allowed.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v6(v6: Ipv6Addr) -> bool {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let seg = v6.segments();
    let o = v6.octets();
    // IPv4-compatible (::/96, deprecated): judged by its IPv4 address, which a stack may still reach. This also
    // covers :: and ::1, whose embedded 0.0.0.0 and 0.0.0.1 are forbidden.
    if seg[..6] == [0, 0, 0, 0, 0, 0] {
        return forbidden_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    // NAT64 (64:ff9b::/96, and the local-use 64:ff9b:1::/48) and IPv4-translated addresses (::ffff:0:0/96) carry
    // an IPv4 address in their last 32 bits.
    if (seg[0] == 0x64 && seg[1] == 0xff9b && (seg[2..6] == [0, 0, 0, 0] || seg[2] == 1))
        || seg[..6] == [0, 0, 0, 0, 0xffff, 0]
    {
        return forbidden_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    // 6to4 (2002::/16) carries one in bits 16-47; a relay would forward to it.
    if seg[0] == 0x2002 {
        return forbidden_v4(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    v6.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00 // unique local, includes fd00:ec2::254 (EC2 metadata)
        || (seg[0] & 0xffc0) == 0xfe80 // link-local
        || (seg[0] & 0xffc0) == 0xfec0 // site-local (deprecated, still routed inside some networks)
        || (seg[0] == 0x2001 && seg[1] == 0) // Teredo: its IPv4 address is obfuscated, so it cannot be judged
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16: cloud metadata lives here
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || o[0] == 0
        || (o[0] == 100 && (64..128).contains(&o[1])) // CGNAT 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] == 18 || o[1] == 19)) // benchmarking
        || o[0] >= 240 // reserved
}

/// A DNS resolver for the delivery client that drops forbidden addresses, so a name that resolves to an
/// internal address at delivery time is refused even if it did not when the webhook was saved.
struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs.into_iter().filter(|a| !is_forbidden(a.ip())).collect();
            if allowed.is_empty() {
                return Err(format!("{host} resolves only to private or internal addresses").into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The HTTP client deliveries use: `timeout` (GATEHOUSE_WEBHOOK_TIMEOUT_SECS, 10 s), no redirects, no proxy,
/// guarded DNS unless private receivers are allowed.
pub fn client(allow_private: bool, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("Gatehouse-Webhooks/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(4);
    if !allow_private {
        builder = builder.dns_resolver(Arc::new(GuardedResolver));
    }
    Ok(builder.build()?)
}

/// `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// One delivery attempt. `Ok` for a 2xx answer; `Err` with the reason otherwise. Both carry what the receiver
/// answered, when it answered.
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    secret: &[u8],
    delivery_id: &str,
    event_type: &str,
    body: &str,
    allow_private: bool,
) -> std::result::Result<Response, (String, Response)> {
    let url = parse_url(url, allow_private).map_err(|e| (e.to_string(), Response::default()))?;
    let timestamp = crate::now_unix();
    let request = client
        .post(url)
        .header("content-type", "application/json")
        .header("gatehouse-event", event_type)
        .header("gatehouse-delivery", delivery_id)
        .header("gatehouse-signature", signature(secret, timestamp, body.as_bytes()))
        .body(body.to_owned());
    let mut answer = match request.send().await {
        Ok(answer) => answer,
        Err(err) => return Err((describe(&err), Response::default())),
    };
    let status = answer.status();
    let mut kept = Vec::new();
    while kept.len() < RESPONSE_KEEP_BYTES {
        match answer.chunk().await {
            Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
            _ => break,
        }
    }
    kept.truncate(RESPONSE_KEEP_BYTES);
    let response =
        Response { status_code: Some(status.as_u16()), body: Some(String::from_utf8_lossy(&kept).into_owned()) };
    if status.is_success() { Ok(response) } else { Err((format!("receiver answered {status}"), response)) }
}

/// The error text of a failed request, with its causes (reqwest's own text is often just "error sending request").
fn describe(err: &reqwest::Error) -> String {
    let text = if err.is_timeout() { "the receiver did not answer in time".to_owned() } else { err.to_string() };
    crate::error::with_causes(text, err)
}

/// Checks event names against the catalogue; at least one, no duplicates.
pub fn check_events(events: &[String]) -> Result<Vec<String>> {
    if events.is_empty() || events.len() > 64 {
        return Err(Error::validation("events must list 1-64 event types (or \"*\")"));
    }
    let mut out: Vec<String> = Vec::new();
    for event in events {
        if !events::is_known(event) {
            return Err(Error::validation(format!("unknown event type {event:?}")));
        }
        if !out.contains(event) {
            out.push(event.clone());
        }
    }
    Ok(out)
}

pub fn check_description(text: &str) -> Result<()> {
    if text.chars().count() > 500 || text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::validation("description must be at most 500 characters of text"));
    }
    Ok(())
}

/// Saves a new webhook; returns it and its signing secret (shown once).
pub fn create(
    conn: &Connection,
    key: &MasterKey,
    slug: &TenantSlug,
    url: &str,
    events: &[String],
    description: &str,
) -> Result<(Webhook, String)> {
    let count: i64 = conn.query_row("SELECT COUNT(*) FROM webhooks", [], |r| r.get(0))?;
    if count >= MAX_WEBHOOKS_PER_TENANT {
        return Err(Error::Conflict(format!("a tenant can have at most {MAX_WEBHOOKS_PER_TENANT} webhooks")));
    }
    let id = uuid::Uuid::now_v7().to_string();
    let secret = crate::crypto::random_token("whsec_");
    let sealed = key.seal(secret.as_bytes(), &secret_context(slug, &id));
    let now = crate::now_unix();
    conn.execute(
        "INSERT INTO webhooks (id, url, events, description, enabled, secret_sealed, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?6)",
        params![id, url, serde_json::to_string(events).map_err(Error::internal)?, description, sealed, now],
    )?;
    Ok((get(conn, &id)?, secret))
}

pub fn get(conn: &Connection, id: &str) -> Result<Webhook> {
    conn.query_row(&format!("SELECT {COLUMNS} FROM webhooks WHERE id = ?1"), [id], from_row)
        .optional()?
        .ok_or(Error::NotFound("webhook"))
}

pub fn list(conn: &Connection) -> Result<Vec<Webhook>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM webhooks ORDER BY id"))?;
    Ok(stmt.query_map([], from_row)?.collect::<rusqlite::Result<_>>()?)
}

/// Changes url, events, description and/or enabled; `None` keeps a field.
pub fn update(
    conn: &Connection,
    id: &str,
    url: Option<&str>,
    events: Option<&[String]>,
    description: Option<&str>,
    enabled: Option<bool>,
) -> Result<Webhook> {
    let events = events.map(serde_json::to_string).transpose().map_err(Error::internal)?;
    let changed = conn.execute(
        "UPDATE webhooks SET url = COALESCE(?2, url), events = COALESCE(?3, events),
                description = COALESCE(?4, description), enabled = COALESCE(?5, enabled), updated_at = ?6
         WHERE id = ?1",
        params![id, url, events, description, enabled, crate::now_unix()],
    )?;
    if changed == 0 {
        return Err(Error::NotFound("webhook"));
    }
    get(conn, id)
}

/// Deletes the webhook; its pending deliveries end `dead` (kept for the record).
pub fn delete(conn: &Connection, id: &str) -> Result<()> {
    if conn.execute("DELETE FROM webhooks WHERE id = ?1", [id])? == 0 {
        return Err(Error::NotFound("webhook"));
    }
    conn.execute(
        "UPDATE outbox SET status = 'dead', last_error = 'webhook deleted', updated_at = ?2
         WHERE webhook_id = ?1 AND status = 'pending'",
        params![id, crate::now_unix()],
    )?;
    Ok(())
}

/// How many of a webhook's latest deliveries `failing` looks at.
pub const RECENT_DELIVERIES: u32 = 5;

/// An enabled webhook whose recent deliveries were all tried and none got through.
#[derive(Debug, Clone)]
pub struct Failing {
    pub id: String,
    pub url: String,
    /// The newest failed delivery's error.
    pub last_error: Option<String>,
}

/// The enabled webhooks whose latest `RECENT_DELIVERIES` deliveries, leaving out those not tried yet, all failed
/// (at least one tried). The tenant overview warns about them; the webhook pages mark them "Failing".
pub fn failing(conn: &Connection) -> Result<Vec<Failing>> {
    let mut found = Vec::new();
    for hook in list(conn)?.into_iter().filter(|h| h.enabled) {
        let filter =
            outbox::Filter { webhook_id: Some(hook.id.clone()), limit: RECENT_DELIVERIES, ..Default::default() };
        let (deliveries, _) = outbox::list(conn, &filter)?;
        let tried: Vec<_> = deliveries.iter().filter(|d| d.status == "sent" || d.attempts > 0).collect();
        if let Some(last) = tried.first()
            && tried.iter().all(|d| d.status != "sent")
        {
            found.push(Failing { id: hook.id, url: hook.url, last_error: last.last_error.clone() });
        }
    }
    Ok(found)
}

/// What a delivery needs at send time: the current URL, whether the webhook is enabled, and its secret.
pub struct Target {
    pub url: String,
    pub enabled: bool,
    pub secret: Vec<u8>,
}

pub fn target(conn: &Connection, key: &MasterKey, slug: &TenantSlug, id: &str) -> Result<Option<Target>> {
    let row: Option<(String, bool, String)> = conn
        .query_row("SELECT url, enabled, secret_sealed FROM webhooks WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    row.map(|(url, enabled, sealed)| Ok(Target { url, enabled, secret: key.open(&sealed, &secret_context(slug, id))? }))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_addresses() {
        for ip in [
            "::ffff:0:7f00:1",
            "64:ff9b:1::a00:1",
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "::",
            "::127.0.0.1",
            "::10.0.0.1",
            "::169.254.169.254",
            "fec0::1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:db8::1",
        ] {
            assert!(is_forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "2002:5db8:d822::1", "2001:4860::8888"] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn ipv6_forms_of_internal_addresses_are_refused_in_urls() {
        for host in [
            "[::127.0.0.1]",
            "[::ffff:127.0.0.1]",
            "[fec0::1]",
            "[2002:7f00:1::]",
            "[::1]",
            "[fe80::1]",
            "[fd00:ec2::254]",
        ] {
            assert!(parse_url(&format!("http://{host}/hook"), false).is_err(), "{host}");
            assert!(parse_url(&format!("http://{host}/hook"), true).is_ok(), "{host}");
        }
        assert!(parse_url("http://[2606:4700::1111]/hook", false).is_ok());
        assert!(parse_url("http://93.184.216.34/hook", false).is_ok());
    }

    #[tokio::test]
    async fn bare_hosts_get_the_same_guard() {
        for host in [
            "127.0.0.1",
            "127.1",
            "10.0.0.1",
            "169.254.169.254",
            "[::1]",
            "::1",
            "[::127.0.0.1]",
            "localhost",
            "mail.internal",
        ] {
            let err = check_host_allowed(host, 587).await.unwrap_err();
            assert!(err.to_string().contains("only an operator"), "{host}: {err}");
        }
        for host in ["93.184.216.34", "[2606:4700::1111]", "2606:4700::1111"] {
            assert!(check_host_allowed(host, 587).await.is_ok(), "{host}");
        }
        assert!(check_host_allowed("", 587).await.is_err());
    }

    #[tokio::test]
    async fn guarded_smtp_hosts_are_pinned_to_a_vetted_address() {
        // `localhost` resolves on any machine, inward: refused at send time whatever it resolved to when saved.
        for host in ["localhost", "127.0.0.1", "[::1]", "10.0.0.1"] {
            assert!(vetted_address(host, 587).await.is_err(), "{host}");
        }
        assert_eq!(vetted_address("93.184.216.34", 587).await.unwrap(), "93.184.216.34".parse::<IpAddr>().unwrap());
        assert_eq!(
            vetted_address("[2606:4700::1111]", 587).await.unwrap(),
            "2606:4700::1111".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn urls() {
        assert!(parse_url("https://hooks.example.com/x", false).is_ok());
        assert!(parse_url("http://127.0.0.1:9000/x", false).is_err());
        assert!(parse_url("http://[::1]/x", false).is_err());
        assert!(parse_url("http://localhost/x", false).is_err());
        assert!(parse_url("http://127.0.0.1:9000/x", true).is_ok());
        assert!(parse_url("ftp://example.com/", true).is_err());
        assert!(parse_url("/relative", true).is_err());
    }

    #[test]
    fn signature_matches_a_known_vector() {
        // HMAC-SHA256("whsec_test", "1700000000.{}") computed independently with Python's hmac module.
        let sig = signature(b"whsec_test", 1_700_000_000, b"{}");
        assert_eq!(sig, "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91");
    }
}
