//! Identity per tenant: users (`users`), the password policy (`password`), identity settings (`settings`),
//! sessions (`sessions`), single-use mailed tokens (`tokens`), roles (`roles`), TOTP and recovery codes (`mfa`),
//! the append-only audit log (`audit`), the per-IP rate limit (`limits`); the services over them: the user's own
//! account flows (`flows`: sign-up, sign-in, passwords, profile, own sessions) and what an admin does to users,
//! roles, sessions and tenant admins (`admin`); and their HTTP adapters, which extract, call one service and shape
//! the answer: the end-user JSON API (`api`), the hosted pages (`pages`, one file per flow) and the admin API
//! (`admin_api` for users and the audit log, `admin_roles` for roles and tenant admins; the admin UI pages in
//! `web::identity_pages` call the same `admin` services).

pub mod admin;
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
