//! Identity per tenant: users (`users`), the password policy (`password`), identity settings (`settings`),
//! sessions (`sessions`), single-use mailed tokens (`tokens`), roles (`roles`), TOTP and recovery codes (`mfa`),
//! the append-only audit log (`audit`), the account flows that tie them together (`flows`), the per-IP rate
//! limit (`limits`), the end-user JSON API (`api`), the hosted pages (`pages`, one file per flow) and the admin
//! API (`admin_api` for users and the audit log, `admin_roles` for roles and tenant admins).

pub mod admin_api;
pub mod admin_roles;
pub mod api;
pub mod audit;
pub mod flows;
pub mod limits;
pub mod mfa;
pub mod pages;
pub mod password;
pub mod roles;
pub mod sessions;
pub mod settings;
pub mod tokens;
pub mod users;
