//! The identity part of a tenant's settings: sign-up, verification, password length, MFA policy, session
//! lifetimes, lockout and custom user fields. The fields live at the top level of `TenantSettings` (changed with
//! `PATCH /admin/api/v1/tenants/{slug}` `{"settings":{…}}`); the types and their checks live here.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MfaPolicy {
    /// No second factor, even for users who enrolled one.
    Off,
    /// Users may enrol TOTP; those who did are asked for it.
    #[default]
    Optional,
    /// Every user must enrol at their next sign-in.
    Required,
}

/// Per-account brute-force defence: after `max_failures` wrong passwords in a row the account is locked for
/// `backoff_seconds`, doubling with each further failure up to `max_backoff_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Lockout {
    pub max_failures: u32,
    pub backoff_seconds: u32,
    pub max_backoff_seconds: u32,
}

impl Default for Lockout {
    fn default() -> Self {
        Self { max_failures: 5, backoff_seconds: 60, max_backoff_seconds: 3600 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Number,
    Bool,
}

/// A custom field users carry (their `fields` object is checked against these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomField {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FieldType,
    #[serde(default)]
    pub required: bool,
    /// What forms call the field (1-100 characters); without it, the name with spaces for `_` and a capital.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl CustomField {
    /// The field as people read it: its label, or its name made readable (`company_size` → "Company size").
    pub fn display_label(&self) -> String {
        if let Some(label) = self.label.as_deref().filter(|l| !l.trim().is_empty()) {
            return label.trim().to_owned();
        }
        let spaced = self.name.replace('_', " ");
        let mut chars = spaced.chars();
        chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
    }
}

/// Most custom fields a tenant can define.
const MAX_CUSTOM_FIELDS: usize = 50;

pub fn default_true() -> bool {
    true
}
pub fn default_min_length() -> u32 {
    10
}
pub fn default_idle_minutes() -> u32 {
    60 * 24
}
pub fn default_max_hours() -> u32 {
    24 * 30
}

/// Checks the identity settings of a tenant.
pub fn validate(
    password_min_length: u32,
    session_idle_minutes: u32,
    session_max_hours: u32,
    lockout: &Lockout,
    custom_fields: &[CustomField],
) -> Result<()> {
    if !(8..=crate::identity::password::MAX_LENGTH as u32).contains(&password_min_length) {
        return Err(Error::validation("settings.password_min_length must be 8-256"));
    }
    if !(5..=60 * 24 * 90).contains(&session_idle_minutes) {
        return Err(Error::validation("settings.session_idle_minutes must be 5-129600 (90 days)"));
    }
    if !(1..=24 * 365).contains(&session_max_hours) {
        return Err(Error::validation("settings.session_max_hours must be 1-8760 (a year)"));
    }
    if u64::from(session_idle_minutes) > u64::from(session_max_hours) * 60 {
        return Err(Error::validation("settings.session_idle_minutes cannot exceed settings.session_max_hours"));
    }
    if !(1..=100).contains(&lockout.max_failures) {
        return Err(Error::validation("settings.lockout.max_failures must be 1-100"));
    }
    if !(1..=86_400).contains(&lockout.backoff_seconds) || lockout.max_backoff_seconds < lockout.backoff_seconds {
        return Err(Error::validation(
            "settings.lockout.backoff_seconds must be 1-86400 and at most settings.lockout.max_backoff_seconds",
        ));
    }
    if lockout.max_backoff_seconds > 7 * 86_400 {
        return Err(Error::validation("settings.lockout.max_backoff_seconds must be at most 604800 (a week)"));
    }
    if custom_fields.len() > MAX_CUSTOM_FIELDS {
        return Err(Error::validation(format!("settings.custom_fields can hold at most {MAX_CUSTOM_FIELDS} fields")));
    }
    for (i, field) in custom_fields.iter().enumerate() {
        let name_ok = (1..=63).contains(&field.name.len())
            && field.name.starts_with(|c: char| c.is_ascii_lowercase())
            && field.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return Err(Error::validation(format!(
                "settings.custom_fields[{i}].name must be 1-63 of a-z, 0-9 and _, starting with a letter"
            )));
        }
        if let Some(label) = &field.label
            && (label.trim().is_empty() || label.chars().count() > 100 || label.chars().any(char::is_control))
        {
            return Err(Error::validation(format!(
                "settings.custom_fields[{i}].label must be 1-100 characters without control characters"
            )));
        }
        if custom_fields[..i].iter().any(|f| f.name == field.name) {
            return Err(Error::validation(format!("settings.custom_fields has {} twice", field.name)));
        }
        // A field named like a token claim could be released in place of the server's claim.
        if crate::oidc::settings::is_protected_claim(&field.name) {
            return Err(Error::validation(format!(
                "settings.custom_fields[{i}].name: {} is a claim name only the server sets",
                field.name
            )));
        }
    }
    Ok(())
}
