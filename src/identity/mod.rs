//! Identity per tenant. So far: the tenant's identity settings (`settings.rs`, stored inside `TenantSettings`),
//! the password policy (`password.rs`), users (`users.rs`) with their admin API (`admin_api.rs`) and the
//! append-only audit log (`audit.rs`). Sessions, hosted pages, MFA and roles build on these (issue #5).

pub mod admin_api;
pub mod audit;
pub mod password;
pub mod settings;
pub mod users;
