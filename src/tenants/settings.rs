//! Tenant settings: the typed JSON object stored with each tenant in the control plane.
//!
//! Changed by a partial update: the patch is merged into the current settings (objects merge key by key, `null`
//! resets a key to its default), then the result is parsed and validated as a whole. Unknown keys are refused,
//! so a typo never silently does nothing. Later features add their keys here with serde defaults, so settings
//! written by an older binary still parse.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::identity::settings::{self as identity, CustomField, Lockout, MfaPolicy};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TenantSettings {
    /// Shown on hosted pages and in mails; the tenant's name when absent.
    pub display_name: Option<String>,
    pub branding: Branding,
    /// Default locale of pages and mails, e.g. `en` or `pt-BR`.
    pub locale: String,
    /// Whether visitors may create their own accounts.
    pub signup_enabled: bool,
    /// Whether an account must confirm its email before it can sign in.
    pub require_email_verification: bool,
    pub password_min_length: u32,
    pub mfa: MfaPolicy,
    /// A session unused this long ends.
    pub session_idle_minutes: u32,
    /// A session ends this long after sign-in, used or not.
    pub session_max_hours: u32,
    pub lockout: Lockout,
    pub custom_fields: Vec<CustomField>,
    /// OAuth 2.0 / OpenID Connect provider settings.
    pub oidc: crate::oidc::settings::OidcSettings,
    /// The store: currency, tax flags, stock display, storefront origins.
    pub commerce: crate::commerce::settings::CommerceSettings,
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            display_name: None,
            branding: Branding::default(),
            locale: "en".into(),
            signup_enabled: identity::default_true(),
            require_email_verification: identity::default_true(),
            password_min_length: identity::default_min_length(),
            mfa: MfaPolicy::default(),
            session_idle_minutes: identity::default_idle_minutes(),
            session_max_hours: identity::default_max_hours(),
            lockout: Lockout::default(),
            custom_fields: Vec::new(),
            oidc: Default::default(),
            commerce: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Branding {
    /// `#rrggbb`.
    pub primary_color: Option<String>,
    /// `#rrggbb`.
    pub accent_color: Option<String>,
    /// An absolute https:// URL.
    pub logo_url: Option<String>,
}

impl TenantSettings {
    pub fn validate(&self) -> Result<()> {
        if let Some(name) = &self.display_name {
            check_text("settings.display_name", name, 200)?;
        }
        for (field, color) in
            [("primary_color", &self.branding.primary_color), ("accent_color", &self.branding.accent_color)]
        {
            if let Some(c) = color {
                let ok = c.len() == 7 && c.starts_with('#') && c[1..].bytes().all(|b| b.is_ascii_hexdigit());
                if !ok {
                    return Err(Error::validation(format!("settings.branding.{field} must look like #1a2b3c")));
                }
            }
        }
        if let Some(url) = &self.branding.logo_url {
            // https only: the hosted pages' CSP allows images from https: (and browsers block http images on an
            // https page), so an http logo would be accepted and never shown.
            let ok = url.starts_with("https://")
                && url.len() <= 2048
                && !url.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '<' || c == '>');
            if !ok {
                return Err(Error::validation(
                    "settings.branding.logo_url must be an absolute https:// URL (the pages load images over https only)",
                ));
            }
        }
        let locale_ok = (2..=35).contains(&self.locale.len())
            && self
                .locale
                .split('-')
                .all(|p| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !locale_ok {
            return Err(Error::validation("settings.locale must be a language tag such as en or pt-BR"));
        }
        identity::validate(
            self.password_min_length,
            self.session_idle_minutes,
            self.session_max_hours,
            &self.lockout,
            &self.custom_fields,
        )?;
        self.oidc.validate()?;
        self.commerce.validate()
    }

    /// These settings with `patch` merged in, validated.
    pub fn merged(&self, patch: &Value) -> Result<Self> {
        if !patch.is_object() {
            return Err(Error::validation("settings must be a JSON object"));
        }
        let mut current = serde_json::to_value(self).map_err(Error::internal)?;
        merge(&mut current, patch, "")?;
        let settings: TenantSettings =
            serde_json::from_value(current).map_err(|e| Error::validation(format!("settings: {e}")))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Settings for a new tenant from an optional initial object.
    pub fn from_initial(initial: Option<&Value>) -> Result<Self> {
        match initial {
            None => Ok(Self::default()),
            Some(patch) => Self::default().merged(patch),
        }
    }
}

/// Merges `patch` into `target` key by key. An object may only be replaced by an object (or removed with
/// `null`): serde would read an array as the object's fields in order, so `{"oidc": []}` would silently reset
/// every field, security ones included.
fn merge(target: &mut Value, patch: &Value, path: &str) -> Result<()> {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    let path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                    merge(target.entry(key.clone()).or_insert(Value::Null), value, &path)?;
                }
            }
            Ok(())
        }
        (Value::Object(_), _) => Err(Error::validation(format!("settings.{path} must be a JSON object"))),
        (target, patch) => {
            *target = patch.clone();
            Ok(())
        }
    }
}

/// Checks a single line of human text: trimmed, non-empty, at most `max` characters, no control characters.
pub fn check_text(field: &str, value: &str, max: usize) -> Result<()> {
    let ok = !value.trim().is_empty()
        && value.trim() == value
        && value.chars().count() <= max
        && !value.chars().any(char::is_control);
    if ok { Ok(()) } else { Err(Error::validation(format!("{field} must be 1-{max} characters of text on one line"))) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn partial_updates_keep_other_keys() {
        let s = TenantSettings::default()
            .merged(&json!({"display_name": "Acme", "branding": {"primary_color": "#112233"}}))
            .unwrap();
        let s = s.merged(&json!({"branding": {"accent_color": "#445566"}})).unwrap();
        assert_eq!(s.display_name.as_deref(), Some("Acme"));
        assert_eq!(s.branding.primary_color.as_deref(), Some("#112233"));
        assert_eq!(s.branding.accent_color.as_deref(), Some("#445566"));
        let s = s.merged(&json!({"display_name": null})).unwrap();
        assert_eq!(s.display_name, None);
    }

    #[test]
    fn bad_settings_are_refused() {
        let base = TenantSettings::default();
        assert!(base.merged(&json!({"branding": {"primary_color": "red"}})).is_err());
        assert!(base.merged(&json!({"branding": {"logo_url": "javascript:alert(1)"}})).is_err());
        assert!(base.merged(&json!({"branding": {"logo_url": "http://cdn.example/logo.png"}})).is_err(), "https only");
        assert!(base.merged(&json!({"colour": "#000000"})).is_err());
        assert!(base.merged(&json!({"locale": "../../etc"})).is_err());
        assert!(base.merged(&json!([1])).is_err());
        // An array where an object belongs is refused, not read as the object's fields in order.
        for patch in [json!({"oidc": []}), json!({"lockout": []}), json!({"branding": [1, 2]}), json!({"oidc": "x"})] {
            let err = base.merged(&patch).unwrap_err().to_string();
            assert!(err.contains("must be a JSON object"), "{patch}: {err}");
        }
        assert!(base.merged(&json!({"password_min_length": 4})).is_err());
        assert!(base.merged(&json!({"mfa": "sometimes"})).is_err());
        assert!(base.merged(&json!({"lockout": {"max_failures": 0}})).is_err());
        assert!(base.merged(&json!({"session_idle_minutes": 6000, "session_max_hours": 2})).is_err());
        let twice = json!({"custom_fields": [{"name": "plan", "type": "string"}, {"name": "plan", "type": "bool"}]});
        assert!(base.merged(&twice).is_err());
        assert!(base.merged(&json!({"custom_fields": [{"name": "Bad Name", "type": "string"}]})).is_err());
    }

    #[test]
    fn identity_settings_have_defaults_and_merge_partially() {
        let base = TenantSettings::default();
        assert!(base.signup_enabled && base.require_email_verification);
        assert_eq!((base.password_min_length, base.mfa, base.lockout.max_failures), (10, MfaPolicy::Optional, 5));
        let s = base
            .merged(&json!({"mfa": "required", "lockout": {"max_failures": 3},
                            "custom_fields": [{"name": "plan", "type": "string", "required": true}]}))
            .unwrap();
        assert_eq!((s.mfa, s.lockout.max_failures, s.lockout.backoff_seconds), (MfaPolicy::Required, 3, 60));
        assert_eq!(s.custom_fields[0].kind, crate::identity::settings::FieldType::String);
        // Settings stored by an older binary (no identity keys) still parse, with the defaults.
        let old: TenantSettings = serde_json::from_value(json!({"display_name": "Acme", "locale": "en"})).unwrap();
        assert_eq!(old.session_max_hours, 720);
    }
}
