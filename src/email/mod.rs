//! Email and the outbox: what a message is (`EmailKind`), how it is rendered (`templates`), where it goes
//! (`smtp`), how it is queued durably with the change that causes it (`outbox`) and how queued mail and webhook
//! deliveries are worked off (`dispatcher`). The admin API lives in `api`.
//!
//! A feature sends mail with one call inside its tenant transaction:
//! `outbox::enqueue_email(&tx, EmailKind::VerifyEmail { … })`, where `tx` comes from `TenantDb::write`.

pub mod api;
pub mod dispatcher;
pub mod outbox;
pub mod smtp;
pub mod templates;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Every email Gatehouse sends, with the data its template needs. Stored as the outbox payload and rendered when
/// it is sent, so a retry renders the same message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "template", rename_all = "snake_case")]
pub enum EmailKind {
    VerifyEmail {
        to: String,
        name: Option<String>,
        link: String,
        expires_minutes: u32,
    },
    ResetPassword {
        to: String,
        name: Option<String>,
        link: String,
        expires_minutes: u32,
    },
    /// An account an admin created without a password: the link lets the user choose one.
    Invite {
        to: String,
        name: Option<String>,
        link: String,
        expires_minutes: u32,
    },
    Welcome {
        to: String,
        name: Option<String>,
        login_url: String,
    },
    /// Sent instead of a verification mail when someone registers with an email that has an account.
    AccountExists {
        to: String,
        login_url: String,
        reset_url: String,
    },
    OrderConfirmation {
        to: String,
        name: Option<String>,
        order: OrderSummary,
    },
    OrderStatus {
        to: String,
        name: Option<String>,
        order: OrderSummary,
        status: String,
    },
    Test {
        to: String,
    },
}

/// An order as mail shows it; amounts are already formatted in the order's currency.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderSummary {
    pub number: String,
    pub lines: Vec<OrderLine>,
    pub subtotal: Option<String>,
    pub discount: Option<String>,
    pub tax: Option<String>,
    pub shipping: Option<String>,
    pub total: String,
    /// Where the customer can see the order.
    pub url: Option<String>,
    /// Where the parcel can be followed (status mails of shipped orders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_url: Option<String>,
}

/// An order's amounts in minor units of its currency, for `OrderSummary::priced`.
#[derive(Debug, Clone, Default)]
pub struct OrderAmounts {
    /// (name, quantity, line amount).
    pub lines: Vec<(String, u32, i64)>,
    pub subtotal: Option<i64>,
    pub discount: Option<i64>,
    pub tax: Option<i64>,
    pub shipping: Option<i64>,
    pub total: i64,
}

impl OrderSummary {
    /// An order for mail with every amount formatted by the one money formatter (`commerce::money::format`).
    pub fn priced(number: &str, currency: &str, amounts: &OrderAmounts, url: Option<String>) -> Self {
        let format = |minor: i64| crate::commerce::money::format(minor, currency);
        OrderSummary {
            number: number.to_owned(),
            lines: amounts
                .lines
                .iter()
                .map(|(name, quantity, amount)| OrderLine {
                    name: name.clone(),
                    quantity: *quantity,
                    amount: format(*amount),
                })
                .collect(),
            subtotal: amounts.subtotal.map(format),
            discount: amounts.discount.map(format),
            tax: amounts.tax.map(format),
            shipping: amounts.shipping.map(format),
            total: format(amounts.total),
            url,
            tracking_url: None,
        }
    }

    /// The same order with the parcel's tracking page.
    pub fn tracked(self, tracking_url: Option<String>) -> Self {
        OrderSummary { tracking_url, ..self }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    pub name: String,
    pub quantity: u32,
    pub amount: String,
}

/// Template names, as stored in the outbox `topic` column and given to email plugins.
pub const TEMPLATES: &[&str] = &[
    "verify_email",
    "reset_password",
    "invite",
    "welcome",
    "account_exists",
    "order_confirmation",
    "order_status",
    "test",
];

impl EmailKind {
    pub fn template(&self) -> &'static str {
        match self {
            EmailKind::VerifyEmail { .. } => "verify_email",
            EmailKind::ResetPassword { .. } => "reset_password",
            EmailKind::Invite { .. } => "invite",
            EmailKind::Welcome { .. } => "welcome",
            EmailKind::AccountExists { .. } => "account_exists",
            EmailKind::OrderConfirmation { .. } => "order_confirmation",
            EmailKind::OrderStatus { .. } => "order_status",
            EmailKind::Test { .. } => "test",
        }
    }

    pub fn to(&self) -> &str {
        match self {
            EmailKind::VerifyEmail { to, .. }
            | EmailKind::ResetPassword { to, .. }
            | EmailKind::Invite { to, .. }
            | EmailKind::Welcome { to, .. }
            | EmailKind::AccountExists { to, .. }
            | EmailKind::OrderConfirmation { to, .. }
            | EmailKind::OrderStatus { to, .. }
            | EmailKind::Test { to } => to,
        }
    }

    pub fn recipient_name(&self) -> Option<&str> {
        match self {
            EmailKind::VerifyEmail { name, .. }
            | EmailKind::ResetPassword { name, .. }
            | EmailKind::Invite { name, .. }
            | EmailKind::Welcome { name, .. }
            | EmailKind::OrderConfirmation { name, .. }
            | EmailKind::OrderStatus { name, .. } => name.as_deref(),
            EmailKind::AccountExists { .. } | EmailKind::Test { .. } => None,
        }
    }

    /// Checks the recipient is one deliverable address.
    pub fn validate(&self) -> Result<()> {
        parse_address(self.to()).map(|_| ())
    }
}

/// One email address (no display name), as lettre will send to it.
pub fn parse_address(raw: &str) -> Result<lettre::Address> {
    let trimmed = raw.trim();
    if trimmed.len() > 254 || trimmed.contains(['<', '>', ',', ' ']) {
        return Err(Error::validation(format!("{trimmed:?} is not one email address")));
    }
    trimmed.parse().map_err(|_| Error::validation(format!("{trimmed:?} is not an email address")))
}
