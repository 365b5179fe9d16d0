//! The payment provider seam: `manual` (bank transfer, cash on delivery: an admin marks the order paid) and
//! `stripe`, spoken over Stripe's REST API (`POST /v1/payment_intents`, `POST /v1/refunds`, form-encoded, with
//! `Idempotency-Key`) at `GATEHOUSE_STRIPE_API_BASE`, and its webhook scheme (`Stripe-Signature: t=…,v1=…`, an
//! HMAC-SHA256 of `t.payload` with the endpoint secret, five minutes' tolerance, any of several `v1`).
//!
//! A tenant's Stripe keys are a control-plane integration (`Mutation::SetTenantIntegration`), the secret key and
//! the webhook secret sealed with the master key (context `integration:stripe:{slug}`) and never shown again.
//! Calls to Stripe happen outside tenant transactions: the order is committed first, then paid for.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use utoipa::ToSchema;

use crate::app::App;
use crate::control::mutation::Integration;
use crate::control::{Mutation, tables};
use crate::error::{Error, Result};
use crate::tenants::TenantSlug;

/// How far a webhook's signed time may be from ours.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;
/// How long one call to the provider may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// The HTTP client and base URL payment calls go through (the base is the operator's setting, not a tenant's,
/// so no address guard applies).
pub struct Providers {
    pub stripe_base: String,
    client: reqwest::Client,
}

impl Providers {
    pub fn new(stripe_base: &str) -> Self {
        let client = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("Gatehouse/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Providers { stripe_base: stripe_base.trim_end_matches('/').to_owned(), client }
    }
}

/// `PUT /admin/api/v1/tenants/{slug}/payments/stripe`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StripeKeys {
    /// The secret (`sk_…`) or restricted (`rk_…`) API key.
    pub secret_key: String,
    /// The webhook endpoint's signing secret (`whsec_…`).
    pub webhook_secret: String,
    /// The publishable key (`pk_…`) the storefront uses; shown again.
    pub publishable_key: String,
}

/// A tenant's Stripe settings as the admin API shows them: never the secrets.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StripeView {
    pub configured: bool,
    pub publishable_key: Option<String>,
    /// Where Stripe must send events: `{public_url}/t/{slug}/payments/stripe/webhook`.
    pub webhook_url: String,
    #[serde(with = "crate::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated_at: Option<i64>,
}

/// The secrets, once unsealed.
#[derive(Serialize, Deserialize)]
pub struct StripeSecrets {
    pub secret_key: String,
    pub webhook_secret: String,
}

fn context(slug: &TenantSlug) -> String {
    format!("integration:stripe:{slug}")
}

/// Checks and stores the keys (sealed).
pub async fn set_stripe(app: &App, slug: &TenantSlug, keys: StripeKeys) -> Result<StripeView> {
    let key = |value: &str, field: &str, prefixes: &[&str]| -> Result<String> {
        let value = value.trim();
        if !prefixes.iter().any(|p| value.starts_with(p))
            || value.len() > 255
            || !value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(Error::validation(format!(
                "{field} must be a Stripe key starting with {}",
                prefixes.join(" or ")
            )));
        }
        Ok(value.to_owned())
    };
    let secrets = StripeSecrets {
        secret_key: key(&keys.secret_key, "secret_key", &["sk_", "rk_"])?,
        webhook_secret: key(&keys.webhook_secret, "webhook_secret", &["whsec_"])?,
    };
    let publishable = key(&keys.publishable_key, "publishable_key", &["pk_"])?;
    let sealed = app.master_key.seal(&serde_json::to_vec(&secrets).map_err(Error::internal)?, &context(slug));
    let integration = Integration {
        config: serde_json::json!({ "publishable_key": publishable }),
        secrets_sealed: sealed,
        updated_at: crate::now_unix(),
    };
    app.control
        .apply(Mutation::SetTenantIntegration {
            slug: slug.clone(),
            kind: "stripe".into(),
            integration: Some(integration),
        })
        .await?;
    stripe_view(app, slug).await
}

/// Removes the keys: new checkouts cannot choose `stripe`; orders already paid keep their payments.
pub async fn remove_stripe(app: &App, slug: &TenantSlug) -> Result<()> {
    app.control
        .apply(Mutation::SetTenantIntegration { slug: slug.clone(), kind: "stripe".into(), integration: None })
        .await?;
    Ok(())
}

pub async fn stripe_view(app: &App, slug: &TenantSlug) -> Result<StripeView> {
    let found = integration(app, slug).await?;
    Ok(StripeView {
        configured: found.is_some(),
        publishable_key: found.as_ref().and_then(|i| i.config["publishable_key"].as_str().map(str::to_owned)),
        webhook_url: format!("{}/payments/stripe/webhook", crate::oidc::state::issuer(app, slug.as_str())),
        updated_at: found.map(|i| i.updated_at),
    })
}

async fn integration(app: &App, slug: &TenantSlug) -> Result<Option<Integration>> {
    let slug = slug.clone();
    app.control.read(move |conn| tables::tenant_integration(conn, &slug, "stripe")).await
}

/// The tenant's Stripe secrets, or `None` when Stripe is not set up.
pub async fn stripe_secrets(app: &App, slug: &TenantSlug) -> Result<Option<StripeSecrets>> {
    let Some(found) = integration(app, slug).await? else { return Ok(None) };
    let plain = app.master_key.open(&found.secrets_sealed, &context(slug))?;
    Ok(Some(serde_json::from_slice(&plain).map_err(Error::internal)?))
}

/// A PaymentIntent as Stripe answers it (the fields used here).
#[derive(Debug, Clone, Deserialize)]
pub struct Intent {
    pub id: String,
    pub client_secret: Option<String>,
    pub status: String,
}

/// A refund as Stripe answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
    pub status: String,
}

/// Creates (or, under the same `idempotency_key`, finds again) the PaymentIntent of an order.
pub async fn create_intent(app: &App, secret_key: &str, order: &PayableOrder, idempotency_key: &str) -> Result<Intent> {
    let form = [
        ("amount", order.amount.to_string()),
        ("currency", order.currency.to_ascii_lowercase()),
        ("automatic_payment_methods[enabled]", "true".into()),
        ("description", format!("Order {}", order.number)),
        ("metadata[order_id]", order.id.clone()),
        ("metadata[order_number]", order.number.clone()),
        ("metadata[tenant]", order.tenant.clone()),
    ];
    call(app, secret_key, "/v1/payment_intents", &form, idempotency_key).await
}

/// Refunds `amount` of a PaymentIntent.
pub async fn refund(
    app: &App,
    secret_key: &str,
    intent: &str,
    amount: i64,
    idempotency_key: &str,
    refund_id: &str,
) -> Result<Refund> {
    let form = [
        ("payment_intent", intent.to_owned()),
        ("amount", amount.to_string()),
        ("metadata[refund_id]", refund_id.to_owned()),
    ];
    call(app, secret_key, "/v1/refunds", &form, idempotency_key).await
}

/// Cancels a PaymentIntent (its client secret can no longer pay).
pub async fn cancel_intent(app: &App, secret_key: &str, intent: &str) -> Result<Intent> {
    if !intent.starts_with("pi_") || !intent.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(Error::internal(format!("not a PaymentIntent id: {intent}")));
    }
    let key = format!("gatehouse-cancel-{intent}");
    call(app, secret_key, &format!("/v1/payment_intents/{intent}/cancel"), &[], &key).await
}

/// Works off the card payments of orders cancelled unpaid (`Store::open_intents`): each is cancelled at Stripe,
/// so its client secret cannot be used to pay (or to try stolen cards) any more. A failure is logged; a payment
/// that still arrives for a cancelled order is refunded by the webhook.
pub async fn cancel_intents(app: crate::app::AppState) {
    let taken = app.store.open_intents_rx.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(mut queue) = taken else { return };
    while let Some((slug, intent)) = queue.recv().await {
        let outcome = match stripe_secrets(&app, &slug).await {
            Ok(Some(secrets)) => cancel_intent(&app, &secrets.secret_key, &intent).await.map(drop),
            Ok(None) => Err(Error::PaymentUnavailable("Stripe is not set up any more".into())),
            Err(err) => Err(err),
        };
        if let Err(err) = outcome {
            tracing::warn!(tenant = %slug, %intent, error = %err, "a cancelled order's payment could not be cancelled at Stripe");
        }
    }
}

/// What a PaymentIntent is made from.
pub struct PayableOrder {
    pub id: String,
    pub number: String,
    pub amount: i64,
    pub currency: String,
    pub tenant: String,
}

async fn call<T: serde::de::DeserializeOwned>(
    app: &App,
    secret_key: &str,
    path: &str,
    form: &[(&str, String)],
    idempotency_key: &str,
) -> Result<T> {
    let providers = &app.store.payments;
    let started = std::time::Instant::now();
    let answer = providers
        .client
        .post(format!("{}{path}", providers.stripe_base))
        .bearer_auth(secret_key)
        .header("Idempotency-Key", idempotency_key)
        .form(form)
        .send()
        .await;
    let outcome = match answer {
        Err(err) => Err(Error::PaymentUnavailable(format!("Stripe could not be reached: {}", short(&err.to_string())))),
        Ok(resp) => {
            let status = resp.status();
            let body = resp.bytes().await.unwrap_or_default();
            if status.is_success() {
                serde_json::from_slice(&body)
                    .map_err(|e| Error::PaymentUnavailable(format!("Stripe answered something unexpected: {e}")))
            } else {
                let message = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "no message".into());
                let text = format!("Stripe answered {}: {}", status.as_u16(), short(&message));
                // A 4xx is Stripe deciding (nothing was done); 409 and 429 ask to try again, like a 5xx, and
                // after a 5xx or no answer the call may or may not have taken effect.
                if status.is_client_error() && !matches!(status.as_u16(), 409 | 429) {
                    Err(Error::PaymentRefused(text))
                } else {
                    Err(Error::PaymentUnavailable(text))
                }
            }
        }
    };
    let result = if outcome.is_ok() { "ok" } else { "failed" };
    metrics::counter!("gatehouse_payment_calls_total", "provider" => "stripe", "result" => result).increment(1);
    tracing::debug!(path, result, elapsed_ms = started.elapsed().as_millis() as u64, "stripe call");
    outcome
}

fn short(text: &str) -> String {
    text.chars().take(300).collect()
}

/// Checks a `Stripe-Signature` header against `payload`: a `t` within the tolerance of `now` and any `v1` that is
/// the HMAC-SHA256 of `"{t}.{payload}"` with `secret`.
pub fn verify_signature(header: &str, payload: &[u8], secret: &str, now: i64) -> Result<()> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v),
            _ => {}
        }
    }
    let Some(t) = timestamp else { return Err(Error::InvalidSignature("the signature has no timestamp")) };
    if (now - t).abs() > SIGNATURE_TOLERANCE_SECS {
        return Err(Error::InvalidSignature("the signature's timestamp is outside the tolerance"));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(Error::internal)?;
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    if signatures.iter().any(|s| crate::crypto::constant_time_eq(s, &expected)) {
        Ok(())
    } else {
        Err(Error::InvalidSignature("no signature matches"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, t: i64, payload: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.{payload}").as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn signatures_verify_within_tolerance_and_with_any_v1() {
        let payload = r#"{"id":"evt_1"}"#;
        let good = sign("whsec_a", 1_700_000_000, payload);
        let header = format!("t=1700000000,v1={good}");
        assert!(verify_signature(&header, payload.as_bytes(), "whsec_a", 1_700_000_100).is_ok());
        let rotated = format!("t=1700000000,v1={},v1={good}", "0".repeat(64));
        assert!(verify_signature(&rotated, payload.as_bytes(), "whsec_a", 1_700_000_000).is_ok());
        assert!(verify_signature(&header, payload.as_bytes(), "whsec_b", 1_700_000_000).is_err(), "wrong secret");
        assert!(verify_signature(&header, b"{}", "whsec_a", 1_700_000_000).is_err(), "other payload");
        assert!(verify_signature(&header, payload.as_bytes(), "whsec_a", 1_700_000_301).is_err(), "too late");
        assert!(verify_signature(&format!("v1={good}"), payload.as_bytes(), "whsec_a", 0).is_err(), "no t");
    }
}
