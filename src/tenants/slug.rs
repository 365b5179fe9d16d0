//! `TenantSlug`: the only way to hold a tenant slug. It becomes a file name, so it is checked on construction.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// A validated slug matching `^[a-z0-9][a-z0-9-]{1,62}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantSlug(String);

impl TenantSlug {
    /// The slug in a raw (still percent-encoded) path segment, as the router decodes it: `%61cme` is `acme`.
    pub fn from_path_segment(raw: &str) -> Option<Self> {
        let bytes = raw.as_bytes();
        let mut decoded = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                decoded.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            } else {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
        Self::parse(std::str::from_utf8(&decoded).ok()?).ok()
    }

    pub fn parse(raw: &str) -> Result<Self, Error> {
        let bytes = raw.as_bytes();
        let ok = (2..=63).contains(&bytes.len())
            && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
            && bytes.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Error::validation("slug must be 2-63 characters of a-z, 0-9 and '-', starting with a letter or digit"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for TenantSlug {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// In the API contract a slug is a string of the shape `parse` accepts.
impl utoipa::PartialSchema for TenantSlug {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[a-z0-9][a-z0-9-]{1,62}$"))
            .description(Some("Tenant slug: 2-63 of a-z, 0-9 and -, not starting with -"))
            .into()
    }
}

impl utoipa::ToSchema for TenantSlug {}

impl<'de> Deserialize<'de> for TenantSlug {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        TenantSlug::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn path_segments_are_decoded_like_the_router_does() {
        assert_eq!(TenantSlug::from_path_segment("%61cme").map(|s| s.to_string()).as_deref(), Some("acme"));
        assert_eq!(TenantSlug::from_path_segment("acme").map(|s| s.to_string()).as_deref(), Some("acme"));
        assert!(TenantSlug::from_path_segment("%2e%2e").is_none());
        assert!(TenantSlug::from_path_segment("ac%6").is_none());
        assert!(TenantSlug::from_path_segment("%ff%fe").is_none());
    }
    use super::*;

    #[test]
    fn accepts_plain_slugs() {
        for ok in ["ac", "acme", "a1", "0day", "acme-inc", &"a".repeat(63)] {
            assert!(TenantSlug::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_anything_that_could_escape_a_path() {
        for bad in ["", "A", "a", "../x", "x/y", "-x", "acmé", "acme%2F..", "ac me", "ac.me", "ac\0", &"a".repeat(64)]
        {
            assert!(TenantSlug::parse(bad).is_err(), "{bad:?}");
        }
    }
}
