//! Identity per tenant. So far: the tenant's identity settings (`settings.rs`, stored inside `TenantSettings`)
//! and the password policy (`password.rs`). Users, sessions, hosted pages, MFA, roles and the audit log build on
//! these (issue #5).

pub mod password;
pub mod settings;
