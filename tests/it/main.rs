//! The one integration-test crate: every module starts the real router (in process, on port 0) or the real
//! binary, and speaks HTTP to it.

mod admin_lists;
mod admin_ui;
mod audit_ui;
mod axe;
mod backup;
mod backup_live;
mod backup_restore;
mod backup_s3;
mod backup_ui;
mod backup_verify;
mod binary;
mod checkout;
mod cluster;
mod commerce;
mod control;
mod dashboards;
mod email;
mod http_stack;
mod identity;
mod linearizable;
mod oidc;
mod openapi;
mod orders;
mod orders_ui;
mod plugins;
mod pricing;
mod security;
mod store_ui;
mod support;
mod tenant_pages;
mod tenants;
mod ui_audit;
mod ui_forms;
mod users;
mod webhooks;
