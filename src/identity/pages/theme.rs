//! `/t/{slug}/theme.css`: the tenant's brand colours as CSS variables, with accessible variants derived from them
//! (a tenant picks any colour; a pale yellow must still give readable buttons and links). The button text is black
//! or white, whichever contrasts more; link colours are the brand colour darkened (light mode) or lightened (dark
//! mode) just until they reach 4.5:1 against both page backgrounds of `static/hosted.css`.

use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::Error;
use crate::tenants::TenantSlug;

/// The page and panel backgrounds of `static/hosted.css`, light and dark.
const LIGHT: [Rgb; 2] = [Rgb(0xf5, 0xf6, 0xf8), Rgb(0xff, 0xff, 0xff)];
const DARK: [Rgb; 2] = [Rgb(0x0f, 0x13, 0x18), Rgb(0x17, 0x1c, 0x23)];
const TEXT_MIN: f64 = 4.5;

/// Served for a suspended tenant too: its "temporarily unavailable" page (`unavailable`) wears its colours.
pub(super) async fn theme(State(app): State<AppState>, Path(slug): Path<String>) -> Result<Response, Error> {
    let slug = TenantSlug::parse(&slug).map_err(|_| Error::TenantNotFound)?;
    let tenant = app.control.tenant(&slug).await?.ok_or(Error::TenantNotFound)?;
    let b = &tenant.settings.branding;
    let css = css(b.primary_color.as_deref(), b.accent_color.as_deref());
    Ok(([(CONTENT_TYPE, "text/css; charset=utf-8"), (CACHE_CONTROL, "public, max-age=300")], css).into_response())
}

fn css(primary: Option<&str>, accent: Option<&str>) -> String {
    let mut light = String::new();
    let mut dark = String::new();
    if let Some(c) = primary.and_then(Rgb::parse) {
        let on = if c.contrast(Rgb(0, 0, 0)) > c.contrast(Rgb(255, 255, 255)) { "#000" } else { "#fff" };
        light.push_str(&format!(
            " --primary: {c}; --primary-text: {on}; --link: {};",
            c.readable_on(&LIGHT, Rgb(0, 0, 0))
        ));
        dark.push_str(&format!(" --link: {};", c.readable_on(&DARK, Rgb(255, 255, 255))));
    }
    if let Some(c) = accent.and_then(Rgb::parse) {
        light.push_str(&format!(" --accent: {c};"));
    }
    format!(":root {{{light} }}\n@media (prefers-color-scheme: dark) {{ :root {{{dark} }} }}\n")
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Rgb(u8, u8, u8);

impl std::fmt::Display for Rgb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

impl Rgb {
    /// `#rrggbb` (the settings allow nothing else).
    fn parse(hex: &str) -> Option<Rgb> {
        let hex = hex.strip_prefix('#').filter(|h| h.len() == 6 && h.is_ascii())?;
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
        Some(Rgb(byte(0)?, byte(2)?, byte(4)?))
    }

    /// WCAG 2 relative luminance.
    fn luminance(self) -> f64 {
        let channel = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.039_28 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
        };
        0.2126 * channel(self.0) + 0.7152 * channel(self.1) + 0.0722 * channel(self.2)
    }

    fn contrast(self, other: Rgb) -> f64 {
        let (a, b) = (self.luminance(), other.luminance());
        (a.max(b) + 0.05) / (a.min(b) + 0.05)
    }

    fn mix(self, toward: Rgb, t: f64) -> Rgb {
        let m = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * t).round() as u8;
        Rgb(m(self.0, toward.0), m(self.1, toward.1), m(self.2, toward.2))
    }

    /// This colour moved toward `toward` (black or white) in small steps until it reads at 4.5:1 on every
    /// background; the colour itself when it already does.
    fn readable_on(self, backgrounds: &[Rgb], toward: Rgb) -> Rgb {
        (0..=20)
            .map(|step| self.mix(toward, f64::from(step) / 20.0))
            .find(|c| backgrounds.iter().all(|bg| c.contrast(*bg) >= TEXT_MIN))
            .unwrap_or(toward)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pale_brand_colours_get_readable_variants() {
        let yellow = Rgb::parse("#ffd43b").unwrap();
        let link = yellow.readable_on(&LIGHT, Rgb(0, 0, 0));
        assert!(LIGHT.iter().all(|bg| link.contrast(*bg) >= 4.5), "{link}");
        let yellow_css = css(Some("#ffd43b"), None);
        assert!(yellow_css.contains("--primary-text: #000"), "{yellow_css}");
        // A dark brand colour keeps white text and is lightened for dark-mode links.
        let navy = Rgb::parse("#1b2a6b").unwrap();
        assert_eq!(navy.readable_on(&LIGHT, Rgb(0, 0, 0)), navy);
        let dark_link = navy.readable_on(&DARK, Rgb(255, 255, 255));
        assert!(DARK.iter().all(|bg| dark_link.contrast(*bg) >= 4.5), "{dark_link}");
        assert!(css(Some("#1b2a6b"), None).contains("--primary-text: #fff"));
        assert_eq!(Rgb::parse("#12345"), None);
        assert_eq!(css(None, None), ":root { }\n@media (prefers-color-scheme: dark) { :root { } }\n");
    }
}
