//! Built-in email rendering: askama templates under `templates/email/` (HTML and plain text per template, one
//! base layout) filled with text from the locale files in `templates/email/i18n/`, in the tenant's branding.

use std::collections::HashMap;
use std::ops::Deref;

use askama::Template;
use rust_embed::RustEmbed;

use crate::email::{EmailKind, OrderSummary};
use crate::error::{Error, Result};

#[derive(RustEmbed)]
#[folder = "templates/email/i18n/"]
struct LocaleFiles;

/// The locale every other one falls back to, key by key.
const BASE_LOCALE: &str = "en";

/// Every embedded locale, parsed once at start.
pub struct Catalog {
    locales: HashMap<String, HashMap<String, String>>,
}

impl Catalog {
    pub fn load() -> Result<Self> {
        let mut locales = HashMap::new();
        for file in LocaleFiles::iter().filter(|f| f.ends_with(".txt")) {
            let tag = file.trim_end_matches(".txt").to_owned();
            let bytes = LocaleFiles::get(&file).ok_or_else(|| Error::internal(format!("locale {file} vanished")))?;
            let text = std::str::from_utf8(&bytes.data).map_err(|_| Error::internal(format!("{file} is not UTF-8")))?;
            locales.insert(tag, parse_locale(text));
        }
        if !locales.contains_key(BASE_LOCALE) {
            return Err(Error::internal("the built-in en locale is missing"));
        }
        Ok(Self { locales })
    }

    /// Locale tags available, sorted.
    pub fn tags(&self) -> Vec<&str> {
        let mut tags: Vec<&str> = self.locales.keys().map(String::as_str).collect();
        tags.sort_unstable();
        tags
    }

    /// The text of `key` in `locale` (`pt-BR` → `pt` → `en`), placeholders filled from `vars`.
    fn text(&self, locale: &str, key: &str, vars: &[(&str, &str)]) -> String {
        let primary = locale.split('-').next().unwrap_or(locale);
        let raw = [locale, primary, BASE_LOCALE]
            .iter()
            .find_map(|tag| self.locales.get(*tag).and_then(|m| m.get(key)))
            .map_or(key, String::as_str);
        let mut out = raw.to_owned();
        for (name, value) in vars {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        out
    }

    /// The locale that `locale` resolves to (for the `lang` attribute).
    fn resolve<'a>(&self, locale: &'a str) -> &'a str {
        let primary = locale.split('-').next().unwrap_or(locale);
        if self.locales.contains_key(locale) {
            locale
        } else if self.locales.contains_key(primary) {
            primary
        } else {
            BASE_LOCALE
        }
    }
}

fn parse_locale(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The tenant's look in mail.
#[derive(Debug, Clone)]
pub struct Brand {
    pub name: String,
    /// `#rrggbb`.
    pub color: String,
    pub logo_url: Option<String>,
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// Everything any email template reads.
pub struct View {
    lang: String,
    subject: String,
    brand: Brand,
    footer: String,
    greeting: String,
    intro: String,
    body: String,
    button: String,
    button_fallback: String,
    expiry: String,
    link: String,
    reset_link: String,
    reset_label: String,
    track_label: String,
    order: OrderSummary,
    labels: OrderLabels,
    totals: Vec<(String, String)>,
}

pub struct OrderLabels {
    item: String,
    quantity: String,
    amount: String,
    total: String,
}

macro_rules! email_templates {
    ($($name:ident => $path:literal),* $(,)?) => {$(
        #[derive(Template)]
        #[template(path = $path)]
        struct $name<'a>(&'a View);
        impl Deref for $name<'_> {
            type Target = View;
            fn deref(&self) -> &View {
                self.0
            }
        }
    )*};
}

email_templates! {
    VerifyEmailHtml => "email/verify_email.html", VerifyEmailText => "email/verify_email.txt",
    ResetPasswordHtml => "email/reset_password.html", ResetPasswordText => "email/reset_password.txt",
    InviteHtml => "email/invite.html", InviteText => "email/invite.txt",
    WelcomeHtml => "email/welcome.html", WelcomeText => "email/welcome.txt",
    AccountExistsHtml => "email/account_exists.html", AccountExistsText => "email/account_exists.txt",
    OrderConfirmationHtml => "email/order_confirmation.html", OrderConfirmationText => "email/order_confirmation.txt",
    OrderStatusHtml => "email/order_status.html", OrderStatusText => "email/order_status.txt",
    TestHtml => "email/test.html", TestText => "email/test.txt",
}

/// Renders `kind` in `locale` with `brand`.
pub fn render(catalog: &Catalog, kind: &EmailKind, brand: &Brand, locale: &str) -> Result<Rendered> {
    let template = kind.template();
    let t = |key: &str, vars: &[(&str, &str)]| catalog.text(locale, key, vars);
    let tenant = brand.name.as_str();
    let name = kind.recipient_name();
    let greeting = match name {
        Some(name) if !name.trim().is_empty() => t("greeting", &[("name", name)]),
        _ => t("greeting_anonymous", &[]),
    };
    let mut view = View {
        lang: catalog.resolve(locale).to_owned(),
        subject: String::new(),
        brand: brand.clone(),
        footer: t("footer", &[("tenant", tenant)]),
        greeting,
        intro: String::new(),
        body: String::new(),
        button: String::new(),
        button_fallback: t("button_fallback", &[]),
        expiry: String::new(),
        link: String::new(),
        reset_link: String::new(),
        reset_label: String::new(),
        track_label: String::new(),
        order: OrderSummary::default(),
        labels: OrderLabels {
            item: t("order.item", &[]),
            quantity: t("order.quantity", &[]),
            amount: t("order.amount", &[]),
            total: t("order.total", &[]),
        },
        totals: Vec::new(),
    };
    let key = |suffix: &str| format!("{template}.{suffix}");
    view.subject = match kind {
        EmailKind::OrderConfirmation { order, .. } => t(&key("subject"), &[("number", &order.number)]),
        EmailKind::OrderStatus { order, status, .. } => {
            t(&key("subject"), &[("number", &order.number), ("status", status)])
        }
        _ => t(&key("subject"), &[("tenant", tenant)]),
    };
    match kind {
        EmailKind::VerifyEmail { to, link, expires_minutes, .. }
        | EmailKind::ResetPassword { to, link, expires_minutes, .. }
        | EmailKind::Invite { to, link, expires_minutes, .. } => {
            let minutes = expires_minutes.to_string();
            let duration = readable_duration(u64::from(*expires_minutes));
            view.intro = t(&key("intro"), &[("email", to), ("tenant", tenant)]);
            view.button = t(&key("button"), &[]);
            view.expiry = t(&key("expiry"), &[("minutes", &minutes), ("duration", &duration)]);
            view.link = link.clone();
        }
        EmailKind::Welcome { login_url, .. } => {
            view.intro = t(&key("intro"), &[("tenant", tenant)]);
            view.button = t(&key("button"), &[]);
            view.link = login_url.clone();
        }
        EmailKind::AccountExists { login_url, reset_url, .. } => {
            view.intro = t(&key("intro"), &[("tenant", tenant)]);
            view.body = t(&key("body"), &[]);
            view.button = t(&key("button"), &[]);
            view.reset_label = t(&key("reset"), &[]);
            view.link = login_url.clone();
            view.reset_link = reset_url.clone();
        }
        EmailKind::OrderConfirmation { order, .. } | EmailKind::OrderStatus { order, .. } => {
            let status = match kind {
                EmailKind::OrderStatus { status, .. } => status.as_str(),
                _ => "",
            };
            view.intro = t(&key("intro"), &[("number", &order.number), ("status", status)]);
            view.button = t("order.button", &[]);
            view.track_label = t("order.track", &[]);
            for (label, value) in [
                ("order.subtotal", &order.subtotal),
                ("order.discount", &order.discount),
                ("order.tax", &order.tax),
                ("order.shipping", &order.shipping),
            ] {
                if let Some(value) = value {
                    view.totals.push((t(label, &[]), value.clone()));
                }
            }
            view.order = order.clone();
        }
        EmailKind::Test { .. } => {
            view.intro = t(&key("intro"), &[("tenant", tenant)]);
            view.body = t(&key("body"), &[]);
        }
    }
    let (html, text) = match kind {
        EmailKind::VerifyEmail { .. } => (VerifyEmailHtml(&view).render()?, VerifyEmailText(&view).render()?),
        EmailKind::ResetPassword { .. } => (ResetPasswordHtml(&view).render()?, ResetPasswordText(&view).render()?),
        EmailKind::Invite { .. } => (InviteHtml(&view).render()?, InviteText(&view).render()?),
        EmailKind::Welcome { .. } => (WelcomeHtml(&view).render()?, WelcomeText(&view).render()?),
        EmailKind::AccountExists { .. } => (AccountExistsHtml(&view).render()?, AccountExistsText(&view).render()?),
        EmailKind::OrderConfirmation { .. } => {
            (OrderConfirmationHtml(&view).render()?, OrderConfirmationText(&view).render()?)
        }
        EmailKind::OrderStatus { .. } => (OrderStatusHtml(&view).render()?, OrderStatusText(&view).render()?),
        EmailKind::Test { .. } => (TestHtml(&view).render()?, TestText(&view).render()?),
    };
    Ok(Rendered { subject: view.subject, html, text })
}

impl From<askama::Error> for Error {
    fn from(err: askama::Error) -> Self {
        Error::internal(format!("email template: {err}"))
    }
}

/// A link's lifetime as people say it: "30 minutes", "1 hour", "24 hours", "7 days" (whole days or hours when
/// it divides evenly, else minutes).
fn readable_duration(minutes: u64) -> String {
    let (n, unit) = match minutes {
        m if m >= 1440 && m % 1440 == 0 => (m / 1440, "day"),
        m if m >= 60 && m % 60 == 0 => (m / 60, "hour"),
        m => (m, "minute"),
    };
    if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") }
}

#[cfg(test)]
mod tests {

    #[test]
    fn link_lifetimes_read_like_people_say_them() {
        assert_eq!(super::readable_duration(10_080), "7 days");
        assert_eq!(super::readable_duration(1440), "1 day");
        assert_eq!(super::readable_duration(120), "2 hours");
        assert_eq!(super::readable_duration(90), "90 minutes");
        assert_eq!(super::readable_duration(1), "1 minute");
    }
    use super::*;

    fn brand() -> Brand {
        Brand { name: "Acme <Shop>".into(), color: "#112233".into(), logo_url: None }
    }

    #[test]
    fn every_template_renders_html_and_text_with_branding() {
        let catalog = Catalog::load().unwrap();
        let amounts = crate::email::OrderAmounts {
            lines: vec![("Mug & Co".into(), 2, 1000)],
            subtotal: Some(1000),
            shipping: Some(200),
            total: 1200,
            ..Default::default()
        };
        let order = OrderSummary::priced("A-1001", "EUR", &amounts, Some("https://shop.example/orders/A-1001".into()));
        assert_eq!((order.lines[0].amount.as_str(), order.total.as_str()), ("10.00 EUR", "12.00 EUR"));
        let to = "a@example.com".to_owned();
        let kinds = [
            EmailKind::VerifyEmail {
                to: to.clone(),
                name: Some("Ann".into()),
                link: "https://x/v?t=1&u=2".into(),
                expires_minutes: 60,
            },
            EmailKind::ResetPassword { to: to.clone(), name: None, link: "https://x/r".into(), expires_minutes: 30 },
            EmailKind::Welcome { to: to.clone(), name: None, login_url: "https://x/login".into() },
            EmailKind::AccountExists {
                to: to.clone(),
                login_url: "https://x/l".into(),
                reset_url: "https://x/f".into(),
            },
            EmailKind::OrderConfirmation { to: to.clone(), name: None, order: order.clone() },
            EmailKind::OrderStatus { to: to.clone(), name: None, order, status: "shipped".into() },
            EmailKind::Test { to },
        ];
        for kind in &kinds {
            let r = render(&catalog, kind, &brand(), "en").unwrap();
            assert!(!r.subject.is_empty() && !r.subject.contains('{'), "{}: {}", kind.template(), r.subject);
            assert!(r.html.contains("#112233"), "{}", kind.template());
            assert!(r.html.contains("Acme &#60;Shop&#62;") || r.html.contains("Acme &lt;Shop&gt;"), "{}", r.html);
            assert!(!r.html.contains("<Shop>"), "the tenant name is escaped in HTML");
            assert!(!r.text.contains("&lt;") && !r.text.contains("&#"), "{}: text is not escaped", kind.template());
            assert!(!r.text.contains('{') && !r.html.contains("{{"), "{}", kind.template());
        }
        let verify = render(&catalog, &kinds[0], &brand(), "pt-BR").unwrap();
        assert!(verify.text.contains("https://x/v?t=1&u=2"), "text keeps the raw link");
        assert!(verify.html.contains("https://x/v?t=1&#38;u=2") || verify.html.contains("https://x/v?t=1&amp;u=2"));
        assert!(verify.html.contains("lang=\"en\""), "unknown locales fall back to en");
        assert!(verify.text.starts_with("Hello Ann,"));
        let order = render(&catalog, &kinds[4], &brand(), "en").unwrap();
        assert!(
            order.text.contains("2 x Mug & Co") && order.html.contains("Mug &#38;") || order.html.contains("Mug &amp;")
        );
        assert!(order.subject.contains("A-1001"));
    }

    #[test]
    fn locale_text_falls_back_key_by_key() {
        let mut catalog = Catalog::load().unwrap();
        catalog.locales.insert("fr".into(), parse_locale("test.subject = Courriel de test de {tenant}\n# c\n"));
        assert_eq!(catalog.text("fr-CA", "test.subject", &[("tenant", "Acme")]), "Courriel de test de Acme");
        assert_eq!(catalog.text("fr", "test.body", &[]), catalog.text("en", "test.body", &[]));
        assert_eq!(catalog.resolve("fr-CA"), "fr");
    }
}
