//! The store part of a tenant's settings (`settings.commerce`, changed with `PATCH /admin/api/v1/tenants/{slug}`
//! `{"settings":{"commerce":{…}}}` and merged key by key like the rest of the settings).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CommerceSettings {
    /// ISO 4217 code every amount of the store is in (minor units). Cannot change once products exist.
    pub currency: String,
    /// Whether prices already include tax.
    pub prices_include_tax: bool,
    /// Whether shipping is taxed.
    pub tax_shipping: bool,
    /// A tracked variant's stock falling to this or below raises `inventory.low`.
    pub low_stock_threshold: u32,
    /// Whether the storefront shows stock counts (else only `in_stock`).
    pub show_stock_counts: bool,
    /// Days an idle cart is kept.
    pub cart_ttl_days: u32,
    /// Origins (`https://shop.example`) whose pages may call the storefront API from a browser.
    pub allowed_origins: Vec<String>,
    /// Minutes an unpaid order holds its stock; then it is cancelled and the units go back.
    pub pending_ttl_minutes: u32,
}

impl Default for CommerceSettings {
    fn default() -> Self {
        Self {
            currency: "USD".into(),
            prices_include_tax: false,
            tax_shipping: true,
            low_stock_threshold: 5,
            show_stock_counts: true,
            cart_ttl_days: 30,
            allowed_origins: Vec::new(),
            pending_ttl_minutes: 30,
        }
    }
}

impl CommerceSettings {
    pub fn validate(&self) -> Result<()> {
        if !super::money::is_currency(&self.currency) {
            return Err(Error::validation(format!(
                "settings.commerce.currency {:?} is not an active ISO 4217 code (e.g. USD, EUR, JPY)",
                self.currency
            )));
        }
        if self.low_stock_threshold > 1_000_000 {
            return Err(Error::validation("settings.commerce.low_stock_threshold must be at most 1000000"));
        }
        if !(1..=365).contains(&self.cart_ttl_days) {
            return Err(Error::validation("settings.commerce.cart_ttl_days must be 1-365"));
        }
        if !(5..=10_080).contains(&self.pending_ttl_minutes) {
            return Err(Error::validation("settings.commerce.pending_ttl_minutes must be 5-10080 (a week)"));
        }
        if self.allowed_origins.len() > 20 {
            return Err(Error::validation("settings.commerce.allowed_origins takes at most 20 origins"));
        }
        for origin in &self.allowed_origins {
            if !is_origin(origin) {
                return Err(Error::validation(format!(
                    "settings.commerce.allowed_origins: {origin:?} is not an origin such as https://shop.example"
                )));
            }
        }
        Ok(())
    }
}

/// `scheme://host[:port]` with nothing after it.
fn is_origin(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://")) else { return false };
    !rest.is_empty()
        && text.len() <= 255
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        && !rest.starts_with(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_currencies_are_checked() {
        assert!(CommerceSettings::default().validate().is_ok());
        let with = |f: &dyn Fn(&mut CommerceSettings)| {
            let mut s = CommerceSettings::default();
            f(&mut s);
            s.validate()
        };
        assert!(with(&|s| s.currency = "EUR".into()).is_ok());
        assert!(with(&|s| s.currency = "XYZ".into()).is_err());
        assert!(with(&|s| s.currency = "usd".into()).is_err());
        assert!(with(&|s| s.allowed_origins = vec!["https://shop.example:8443".into()]).is_ok());
        for bad in ["https://shop.example/", "shop.example", "https://", "https://a b", "javascript:alert(1)"] {
            assert!(with(&|s| s.allowed_origins = vec![bad.into()]).is_err(), "{bad}");
        }
        assert!(with(&|s| s.cart_ttl_days = 0).is_err());
    }
}
