//! The account flows, shared by the hosted pages and the JSON API: sign-up, sign-in (with lockout and the
//! second factor), email verification, forgotten and changed passwords, sign-out; and the user's own account
//! (the profile as the APIs show it and its change, the user's sessions, withdrawing an application's consent).
//! What an admin does to a user is in `admin`.
//!
//! Invariants:
//! - No enumeration: sign-in failures (unknown email, wrong password, locked, disabled) are one answer,
//!   `Error::InvalidCredentials`, after the same argon2 work (a dummy hash for unknown emails); sign-up with a
//!   taken email answers exactly like a new one and mails the owner `account_exists`; a password-reset request
//!   always answers the same, and its work runs after the answer.
//! - Every change is one tenant transaction with its audit entry, its mail and its webhook event.
//! - Password hashing runs on the bounded hashing pool (`App::passwords`), outside any transaction.

use serde_json::json;

use crate::app::App;
use crate::config::Secret;
use crate::control::Tenant;
use crate::db::{self, registry::TenantDb};
use crate::email::{EmailKind, outbox};
use crate::error::{Error, Result};
use crate::identity::audit::{self, Origin};
use crate::identity::sessions::{self, Session, Stage};
use crate::identity::settings::MfaPolicy;
use crate::identity::tokens::{self, Purpose};
use crate::identity::{mfa, password, roles, users};
use crate::plugins::{
    self, World,
    runtime::{self, Function},
};
use crate::webhooks::events::Event;

/// A link to a page of the tenant, e.g. `tenant_url(app, "acme", "verify?token=…")`.
pub fn tenant_url(app: &App, slug: &str, path: &str) -> String {
    format!("{}/t/{slug}/{path}", app.config.public_url)
}

/// Counts a sign-in attempt in `gatehouse_login_attempts_total{outcome}` (plus `tenant` when configured).
fn count_attempt(app: &App, tenant: &Tenant, outcome: &'static str) {
    app.metrics.pulse.sign_in(outcome);
    app.metrics.record(|| {
        if app.config.metrics_tenant_labels {
            metrics::counter!("gatehouse_login_attempts_total", "outcome" => outcome, "tenant" => tenant.slug.to_string())
                .increment(1);
        } else {
            metrics::counter!("gatehouse_login_attempts_total", "outcome" => outcome).increment(1);
        }
    });
}

// ---- sign-up ----

/// A sign-up as submitted: the values are checked by `register`.
pub struct Registration {
    pub email: String,
    pub password: String,
    pub name: Option<String>,
    pub fields: serde_json::Value,
}

/// What a sign-up answers; identical for a taken email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// The account can sign in now.
    Created,
    /// A verification link was mailed; the account can sign in once it is used.
    VerificationRequired,
}

pub async fn register(
    app: &App,
    tenant: &Tenant,
    db: &TenantDb,
    input: Registration,
    origin: Origin,
) -> Result<Registered> {
    let settings = &tenant.settings;
    if !settings.signup_enabled {
        return Err(Error::Forbidden("sign-up is closed; ask the site for an invitation"));
    }
    let email = users::normalize_email(&input.email)?;
    password::check(&input.password, settings.password_min_length)?;
    let name = input.name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if let Some(name) = &name {
        users::check_name(name)?;
    }
    users::check_fields(&input.fields, &settings.custom_fields)?;
    let mut fields = input.fields;
    if app.plugins.has_active(app, &tenant.slug, World::Login).await? {
        // The plugin sees no more than the client sent: whether the email is taken is not revealed to it either.
        let user = runtime::User {
            id: String::new(),
            email: email.clone(),
            email_verified: false,
            roles: vec![],
            fields: plugins::io::fields_of(&fields),
        };
        let effects = app.plugins.login_hook(app, db, Function::PreRegistration, user, &origin, None).await?;
        if !effects.fields.is_empty() {
            let mut merged = fields.as_object().cloned().unwrap_or_default();
            merged.extend(effects.fields);
            fields = serde_json::Value::Object(merged);
            users::check_fields(&fields, &settings.custom_fields)?;
        }
    }
    // Hashed before the existence check, so a taken email costs the same time as a new one.
    let password_hash = app.passwords.hash(&Secret::new(input.password)).await?;
    let verify = settings.require_email_verification;
    let slug = tenant.slug.to_string();
    let login_url = tenant_url(app, &slug, "login");
    let reset_url = tenant_url(app, &slug, "forgot");
    let verify_base = tenant_url(app, &slug, "verify?token=");
    db.write(move |tx| {
        if users::credentials_by_email(tx, &email)?.is_some() {
            outbox::enqueue_email(tx, EmailKind::AccountExists { to: email, login_url, reset_url })?;
            return Ok(());
        }
        let new = users::NewUser { email, email_verified: !verify, password_hash: Some(password_hash), name, fields };
        let user = users::insert(tx, &new)?;
        let mut origin = origin;
        origin.actor = format!("user:{}", user.id);
        audit::record(tx, "user_created", Some(&user.id), &origin, json!({ "by": "self" }))?;
        outbox::enqueue_event(tx, Event::UserCreated { user_id: user.id.clone(), email: user.email.clone() })?;
        if verify {
            let token = tokens::issue(tx, &user.id, Purpose::VerifyEmail, tokens::VERIFY_SECS)?;
            outbox::enqueue_email(
                tx,
                EmailKind::VerifyEmail {
                    to: user.email.clone(),
                    name: user.name.clone(),
                    link: format!("{verify_base}{token}"),
                    expires_minutes: (tokens::VERIFY_SECS / 60) as u32,
                },
            )?;
        } else {
            outbox::enqueue_email(tx, EmailKind::Welcome { to: user.email, name: user.name, login_url })?;
        }
        Ok(())
    })
    .await?;
    Ok(if verify { Registered::VerificationRequired } else { Registered::Created })
}

/// Uses an email-verification link: the address is verified and a welcome mail goes out.
pub async fn verify_email(app: &App, tenant: &Tenant, db: &TenantDb, token: String, origin: Origin) -> Result<()> {
    let login_url = tenant_url(app, tenant.slug.as_str(), "login");
    db.write(move |tx| {
        let (user_id, _) = tokens::consume(tx, &token, &[Purpose::VerifyEmail])?;
        let user = users::update(tx, &user_id, None, Some(true), None, None)?;
        let mut origin = origin;
        origin.actor = format!("user:{user_id}");
        audit::record(tx, "user_updated", Some(&user_id), &origin, json!({ "email_verified": true }))?;
        outbox::enqueue_email(tx, EmailKind::Welcome { to: user.email, name: user.name, login_url })?;
        Ok(())
    })
    .await
}

// ---- sign-in ----

/// The result of a correct email and password.
pub enum SignIn {
    /// Signed in: set this cookie.
    Done { cookie: String, session: Session },
    /// Password right; a code (`Stage::Mfa`) or a TOTP enrolment (`Stage::Enrol`) comes next, under this cookie.
    SecondFactor { cookie: String, session: Session },
    /// Password right, but the email is not verified yet; a fresh link was mailed (at most every 5 minutes).
    Unverified,
}

/// Checks email and password. Every failure is `Error::InvalidCredentials`, after the same hashing work.
pub async fn login(
    app: &App,
    tenant: &Tenant,
    db: &TenantDb,
    email: &str,
    password: String,
    client_id: Option<String>,
    origin: Origin,
) -> Result<SignIn> {
    let email = users::normalize_email(email).unwrap_or_else(|_| email.trim().to_lowercase());
    let lookup = email.clone();
    let creds = db::with_conn(&db.pool, move |conn| users::credentials_by_email(conn, &lookup)).await?;
    let password = Secret::new(password);
    let ok = app.passwords.verify(creds.as_ref().and_then(|c| c.password_hash.clone()), &password).await?;
    let now = crate::now_unix();
    let ip = origin.ip.clone().unwrap_or_default();
    let settings = tenant.settings.clone();

    let Some(creds) = creds else {
        count_attempt(app, tenant, "unknown_email");
        db.write(move |tx| {
            audit::record(tx, "login_failed", None, &origin, json!({ "email": email, "reason": "unknown_email" }))?;
            outbox::enqueue_event(tx, Event::UserLoginFailed { email, ip, reason: "unknown_email".into() })?;
            Ok(())
        })
        .await?;
        return Err(Error::InvalidCredentials);
    };
    let reason = if creds.locked(now) {
        Some("locked")
    } else if !creds.active {
        Some("disabled")
    } else if !ok {
        Some("wrong_password")
    } else {
        None
    };
    if let Some(reason) = reason {
        count_attempt(app, tenant, reason);
        let lockout = settings.lockout;
        db.write(move |tx| {
            let mut origin = origin;
            origin.actor = format!("user:{}", creds.id);
            audit::record(tx, "login_failed", Some(&creds.id), &origin, json!({ "reason": reason }))?;
            if reason == "wrong_password"
                && let Some(until) = users::record_failure(tx, &creds.id, &lockout, now)?
            {
                audit::record(
                    tx,
                    "locked_out",
                    Some(&creds.id),
                    &origin,
                    json!({ "until": crate::format_time(until) }),
                )?;
            }
            outbox::enqueue_event(tx, Event::UserLoginFailed { email: creds.email, ip, reason: reason.into() })?;
            Ok(())
        })
        .await?;
        return Err(Error::InvalidCredentials);
    }

    let rehash = match &creds.password_hash {
        Some(hash) if app.passwords.needs_rehash(hash) => Some(app.passwords.hash(&password).await?),
        _ => None,
    };
    if settings.require_email_verification && !creds.email_verified {
        count_attempt(app, tenant, "unverified");
        let verify_base = tenant_url(app, tenant.slug.as_str(), "verify?token=");
        db.write(move |tx| {
            let recent = tokens::last_issued(tx, &creds.id, Purpose::VerifyEmail)?.is_some_and(|t| now - t < 300);
            if !recent {
                let token = tokens::issue(tx, &creds.id, Purpose::VerifyEmail, tokens::VERIFY_SECS)?;
                outbox::enqueue_email(
                    tx,
                    EmailKind::VerifyEmail {
                        to: creds.email,
                        name: creds.name,
                        link: format!("{verify_base}{token}"),
                        expires_minutes: (tokens::VERIFY_SECS / 60) as u32,
                    },
                )?;
            }
            Ok(())
        })
        .await?;
        return Ok(SignIn::Unverified);
    }

    // Post-login plugins: after the password, before the session; they may refuse, add claims or ask for MFA.
    let effects = if app.plugins.has_active(app, &tenant.slug, World::Login).await? {
        let id = creds.id.clone();
        let (user, roles) =
            db::with_conn(&db.pool, move |conn| Ok((users::get(conn, &id)?, roles::of_user(conn, &id)?))).await?;
        let user = runtime::User {
            id: user.id,
            email: user.email,
            email_verified: user.email_verified,
            roles,
            fields: plugins::io::fields_of(&user.fields),
        };
        match app.plugins.login_hook(app, db, Function::PostLogin, user, &origin, client_id.clone()).await {
            Ok(effects) => effects,
            Err(err) => {
                count_attempt(app, tenant, "denied_by_plugin");
                return Err(err);
            }
        }
    } else {
        plugins::Effects::default()
    };

    db.write(move |tx| {
        if let Some(hash) = &rehash {
            users::set_password(tx, &creds.id, hash, false)?;
        }
        let enrolled = mfa::is_enrolled(tx, &creds.id)?;
        let stage = match settings.mfa {
            _ if enrolled && (effects.require_mfa || settings.mfa != MfaPolicy::Off) => Stage::Mfa,
            MfaPolicy::Required => Stage::Enrol,
            _ if effects.require_mfa => Stage::Enrol,
            MfaPolicy::Off | MfaPolicy::Optional => Stage::Active,
        };
        let mut origin = origin;
        origin.actor = format!("user:{}", creds.id);
        let (cookie, session) = sessions::create(tx, &creds.id, stage, "pwd", &origin, &settings)?;
        if !effects.claims.is_empty() {
            sessions::set_claims(tx, &session.id, &effects.claims)?;
        }
        if stage == Stage::Active {
            users::record_login(tx, &creds.id, now)?;
            audit::record(tx, "login_succeeded", Some(&creds.id), &origin, json!({ "session": session.id }))?;
            outbox::enqueue_event(tx, Event::UserLogin { user_id: creds.id.clone(), ip, client_id })?;
            Ok(SignIn::Done { cookie, session })
        } else {
            users::clear_failures(tx, &creds.id)?;
            Ok(SignIn::SecondFactor { cookie, session })
        }
    })
    .await
    .inspect(|outcome| {
        let label = if matches!(outcome, SignIn::Done { .. }) { "success" } else { "second_factor" };
        count_attempt(app, tenant, label);
    })
}

/// Finishes a sign-in waiting for a code: a TOTP code or a recovery code. Returns the new cookie value.
/// Wrong codes are counted on their own (`mfa_failures`) and lock the account with the password lockout's limit
/// and backoff; a correct password does not clear them, only a correct code.
pub async fn complete_mfa(
    app: &App,
    tenant: &Tenant,
    db: &TenantDb,
    session: &Session,
    code: String,
    origin: Origin,
) -> Result<String> {
    if session.stage != Stage::Mfa {
        return Err(Error::Conflict("this sign-in is not waiting for a code".into()));
    }
    let key = app.master_key.clone();
    let slug = tenant.slug.to_string();
    let settings = tenant.settings.clone();
    let session = session.clone();
    let now = crate::now_unix();
    let ip = origin.ip.clone().unwrap_or_default();
    let outcome = db
        .write(move |tx| {
            let mut origin = origin;
            origin.actor = format!("user:{}", session.user_id);
            let creds = users::credentials_by_id(tx, &session.user_id)?.ok_or(Error::InvalidCredentials)?;
            if creds.locked(now) || !creds.active {
                audit::record(tx, "login_failed", Some(&creds.id), &origin, json!({ "reason": "locked" }))?;
                return Ok(Err(Error::InvalidToken));
            }
            match mfa::verify(tx, &key, &slug, &creds.id, &code)? {
                Some(proof) => {
                    let cookie = sessions::promote(tx, &session.id, "pwd otp", &settings)?;
                    users::record_login(tx, &creds.id, now)?;
                    users::record_mfa_success(tx, &creds.id)?;
                    let how = if proof == mfa::Proof::Totp { "totp" } else { "recovery_code" };
                    audit::record(
                        tx,
                        "login_succeeded",
                        Some(&creds.id),
                        &origin,
                        json!({ "session": session.id, "mfa": how }),
                    )?;
                    outbox::enqueue_event(tx, Event::UserLogin { user_id: creds.id, ip, client_id: None })?;
                    Ok(Ok(cookie))
                }
                None => {
                    audit::record(tx, "login_failed", Some(&creds.id), &origin, json!({ "reason": "wrong_code" }))?;
                    if let Some(until) = users::record_mfa_failure(tx, &creds.id, &settings.lockout, now)? {
                        audit::record(
                            tx,
                            "locked_out",
                            Some(&creds.id),
                            &origin,
                            json!({ "until": crate::format_time(until) }),
                        )?;
                    }
                    outbox::enqueue_event(
                        tx,
                        Event::UserLoginFailed { email: creds.email, ip, reason: "wrong_code".into() },
                    )?;
                    Ok(Err(Error::InvalidToken))
                }
            }
        })
        .await?;
    count_attempt(app, tenant, if outcome.is_ok() { "success" } else { "wrong_code" });
    outcome
}

/// Starts TOTP enrolment for the session's user (a fresh secret, not active until confirmed).
pub async fn start_totp(app: &App, tenant: &Tenant, db: &TenantDb, user_id: &str) -> Result<()> {
    let key = app.master_key.clone();
    let slug = tenant.slug.to_string();
    let user_id = user_id.to_owned();
    db.write(move |tx| mfa::start(tx, &key, &slug, &user_id)).await
}

/// Confirms a TOTP enrolment with a first code. Returns the recovery codes (shown once) and, when this finished a
/// sign-in that was waiting for enrolment, the new cookie value.
pub async fn confirm_totp(
    app: &App,
    tenant: &Tenant,
    db: &TenantDb,
    session: &Session,
    code: String,
    origin: Origin,
) -> Result<(Vec<String>, Option<String>)> {
    let key = app.master_key.clone();
    let slug = tenant.slug.to_string();
    let settings = tenant.settings.clone();
    let session = session.clone();
    let ip = origin.ip.clone().unwrap_or_default();
    db.write(move |tx| {
        let mut origin = origin;
        origin.actor = format!("user:{}", session.user_id);
        let codes = mfa::confirm(tx, &key, &slug, &session.user_id, &code)?;
        audit::record(tx, "mfa_enabled", Some(&session.user_id), &origin, json!({ "method": "totp" }))?;
        let cookie = if session.stage == Stage::Enrol {
            let cookie = sessions::promote(tx, &session.id, "pwd otp", &settings)?;
            users::record_login(tx, &session.user_id, crate::now_unix())?;
            audit::record(
                tx,
                "login_succeeded",
                Some(&session.user_id),
                &origin,
                json!({ "session": session.id, "mfa": "enrolled" }),
            )?;
            outbox::enqueue_event(tx, Event::UserLogin { user_id: session.user_id.clone(), ip, client_id: None })?;
            Some(cookie)
        } else {
            None
        };
        Ok((codes, cookie))
    })
    .await
}

/// Turns TOTP off for the signed-in user after checking the password (the policy `required` refuses).
pub async fn disable_totp(
    app: &App,
    tenant: &Tenant,
    db: &TenantDb,
    session: &Session,
    password: String,
    origin: Origin,
) -> Result<()> {
    if tenant.settings.mfa == MfaPolicy::Required {
        return Err(Error::Forbidden("this site requires two-factor authentication; it cannot be turned off"));
    }
    check_current_password(app, db, &session.user_id, password).await?;
    let user_id = session.user_id.clone();
    db.write(move |tx| {
        let mut origin = origin;
        origin.actor = format!("user:{user_id}");
        if mfa::disable(tx, &user_id)? {
            audit::record(tx, "mfa_disabled", Some(&user_id), &origin, json!({ "by": "self" }))?;
        }
        Ok(())
    })
    .await
}

async fn check_current_password(app: &App, db: &TenantDb, user_id: &str, password: String) -> Result<()> {
    let id = user_id.to_owned();
    let creds = db::with_conn(&db.pool, move |conn| users::credentials_by_id(conn, &id)).await?;
    let hash = creds.and_then(|c| c.password_hash);
    if app.passwords.verify(hash, &Secret::new(password)).await? {
        Ok(())
    } else {
        Err(Error::validation("the current password is not right"))
    }
}

/// Ends a session.
pub async fn logout(db: &TenantDb, session: &Session, origin: Origin) -> Result<()> {
    let session = session.clone();
    db.write(move |tx| {
        let mut origin = origin;
        origin.actor = format!("user:{}", session.user_id);
        if sessions::revoke(tx, &session.user_id, &session.id)? {
            audit::record(tx, "logout", Some(&session.user_id), &origin, json!({ "session": session.id }))?;
        }
        Ok(())
    })
    .await
}

// ---- passwords ----

/// Mails a reset link to `email` if it belongs to an active account (at most one mail a minute). Returns at
/// once: the lookup and the mail happen after the answer, so the answer's timing says nothing either.
pub fn forgot_password(app: &App, tenant: &Tenant, db: &TenantDb, email: &str, origin: Origin) {
    let Ok(email) = users::normalize_email(email) else { return };
    let reset_base = tenant_url(app, tenant.slug.as_str(), "reset?token=");
    let db = db.clone();
    tokio::spawn(async move {
        let result = db
            .write(move |tx| {
                let Some(creds) = users::credentials_by_email(tx, &email)? else { return Ok(()) };
                let now = crate::now_unix();
                let recent = tokens::last_issued(tx, &creds.id, Purpose::ResetPassword)?.is_some_and(|t| now - t < 60);
                if !creds.active || recent {
                    return Ok(());
                }
                let token = tokens::issue(tx, &creds.id, Purpose::ResetPassword, tokens::RESET_SECS)?;
                outbox::enqueue_email(
                    tx,
                    EmailKind::ResetPassword {
                        to: creds.email,
                        name: creds.name,
                        link: format!("{reset_base}{token}"),
                        expires_minutes: (tokens::RESET_SECS / 60) as u32,
                    },
                )?;
                let mut origin = origin;
                origin.actor = format!("user:{}", creds.id);
                audit::record(tx, "password_reset_requested", Some(&creds.id), &origin, json!({ "by": "self" }))?;
                Ok(())
            })
            .await;
        if let Err(err) = result {
            tracing::warn!(error = %err, "password reset request failed");
        }
    });
}

/// The public URLs of a tenant's pages, computed before entering a transaction.
pub struct Links {
    base: String,
}

impl Links {
    pub fn new(app: &App, slug: &str) -> Self {
        Links { base: tenant_url(app, slug, "") }
    }

    pub fn page(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// Issues a reset (or, for a user without a password, an invitation) link and mails it: the admin action.
pub fn mail_reset_link(tx: &outbox::TenantTx<'_>, links: &Links, user: &users::User, invite: bool) -> Result<()> {
    let (purpose, ttl) =
        if invite { (Purpose::Invite, tokens::INVITE_SECS) } else { (Purpose::ResetPassword, tokens::RESET_SECS) };
    let token = tokens::issue(tx, &user.id, purpose, ttl)?;
    let link = links.page(&format!("reset?token={token}"));
    let expires_minutes = (ttl / 60) as u32;
    let (to, name) = (user.email.clone(), user.name.clone());
    let mail = if invite {
        EmailKind::Invite { to, name, link, expires_minutes }
    } else {
        EmailKind::ResetPassword { to, name, link, expires_minutes }
    };
    outbox::enqueue_email(tx, mail)?;
    Ok(())
}

/// Sets a new password with a reset or invitation link. Every session and every OAuth grant of the user ends,
/// the lockout is cleared and the email counts as verified (the link proved the mailbox).
pub async fn reset_password(
    app: &App,
    tenant: &Tenant,
    db: &TenantDb,
    token: String,
    new_password: String,
    origin: Origin,
) -> Result<()> {
    password::check(&new_password, tenant.settings.password_min_length)?;
    let peek = token.clone();
    db::with_conn(&db.pool, move |conn| tokens::peek(conn, &peek, &[Purpose::ResetPassword, Purpose::Invite]))
        .await?
        .ok_or(Error::InvalidToken)?;
    let hash = app.passwords.hash(&Secret::new(new_password)).await?;
    db.write(move |tx| {
        let (user_id, purpose) = tokens::consume(tx, &token, &[Purpose::ResetPassword, Purpose::Invite])?;
        users::set_password(tx, &user_id, &hash, true)?;
        users::update(tx, &user_id, None, Some(true), None, None)?;
        let ended = sessions::revoke_all(tx, &user_id, None)?;
        // Whoever held the old password may hold tokens too: a recovered account starts with no grants.
        let grants = crate::oidc::store::revoke_user_families(tx, &user_id, None, "password_reset", crate::now_unix())?;
        let mut origin = origin;
        origin.actor = format!("user:{user_id}");
        let via = if purpose == Purpose::Invite { "invite" } else { "reset" };
        audit::record(
            tx,
            "password_changed",
            Some(&user_id),
            &origin,
            json!({ "via": via, "sessions_ended": ended, "grants_revoked": grants }),
        )?;
        outbox::enqueue_event(tx, Event::UserPasswordChanged { user_id })?;
        Ok(())
    })
    .await
}

/// Changes the signed-in user's password; every other session of the user ends, with the OAuth grants not
/// tied to this session.
pub async fn change_password(
    app: &App,
    tenant: &Tenant,
    db: &TenantDb,
    session: &Session,
    current: String,
    new_password: String,
    origin: Origin,
) -> Result<()> {
    check_current_password(app, db, &session.user_id, current).await?;
    password::check(&new_password, tenant.settings.password_min_length)?;
    let hash = app.passwords.hash(&Secret::new(new_password)).await?;
    let session = session.clone();
    db.write(move |tx| {
        users::set_password(tx, &session.user_id, &hash, false)?;
        let ended = sessions::revoke_all(tx, &session.user_id, Some(&session.id))?;
        let grants = crate::oidc::store::revoke_user_families(
            tx,
            &session.user_id,
            Some(&session.id),
            "password_changed",
            crate::now_unix(),
        )?;
        let mut origin = origin;
        origin.actor = format!("user:{}", session.user_id);
        audit::record(
            tx,
            "password_changed",
            Some(&session.user_id),
            &origin,
            json!({ "via": "self", "sessions_ended": ended, "grants_revoked": grants }),
        )?;
        outbox::enqueue_event(tx, Event::UserPasswordChanged { user_id: session.user_id.clone() })?;
        Ok(())
    })
    .await
}

/// The session behind the request's `gh_session` cookie, if it is live; refreshes its idle expiry now and then.
pub async fn current_session(
    tenant: &Tenant,
    db: &TenantDb,
    headers: &axum::http::HeaderMap,
) -> Result<Option<Session>> {
    let Some(cookie) = crate::http::cookies::get(headers, sessions::COOKIE) else { return Ok(None) };
    let now = crate::now_unix();
    let found = db::with_conn(&db.pool, move |conn| sessions::find(conn, &cookie, now)).await?;
    if let Some(session) = &found
        && sessions::needs_touch(session, now)
    {
        let (id, settings) = (session.id.clone(), tenant.settings.clone());
        db.write(move |tx| sessions::touch(tx, &id, &settings, now)).await?;
    }
    Ok(found)
}

// ---- the account: profile, own sessions, consents ----

/// A user as the APIs show it: the account, its roles and whether TOTP is on.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct UserProfile {
    #[serde(flatten)]
    pub user: users::User,
    /// The names of the user's roles, sorted.
    pub roles: Vec<String>,
    pub mfa_enabled: bool,
    /// The session's CSRF token, for `X-CSRF-Token` on body-less writes; only in `GET me` under the cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

/// The user as the APIs show it: the account, its roles and whether TOTP is on (no `csrf_token`). Read by the
/// end-user API (`me`) and the admin API alike.
pub async fn profile(db: &TenantDb, user_id: &str) -> Result<UserProfile> {
    let id = user_id.to_owned();
    db::with_conn(&db.pool, move |conn| {
        let user = users::get(conn, &id)?;
        let roles = roles::of_user(conn, &id)?;
        let mfa_enabled = mfa::is_enrolled(conn, &id)?;
        Ok(UserProfile { user, roles, mfa_enabled, csrf_token: None })
    })
    .await
}

/// Changes the signed-in user's name and custom fields (merged into the current ones, then checked whole).
pub async fn update_profile(
    tenant: &Tenant,
    db: &TenantDb,
    session: &Session,
    name: Option<String>,
    fields: Option<serde_json::Map<String, serde_json::Value>>,
    mut origin: Origin,
) -> Result<()> {
    let name = name.map(|n| n.trim().to_owned());
    if let Some(name) = name.as_deref().filter(|n| !n.is_empty()) {
        users::check_name(name)?;
    }
    let defined = tenant.settings.custom_fields.clone();
    let user_id = session.user_id.clone();
    origin.actor = format!("user:{user_id}");
    db.write(move |tx| {
        let current = users::get(tx, &user_id)?;
        let fields = match fields {
            Some(changes) => {
                let mut merged = current.fields.as_object().cloned().unwrap_or_default();
                for (key, value) in changes {
                    if value.is_null() {
                        merged.remove(&key);
                    } else {
                        merged.insert(key, value);
                    }
                }
                let merged = serde_json::Value::Object(merged);
                users::check_fields(&merged, &defined)?;
                Some(merged)
            }
            None => None,
        };
        let name = name.as_deref().map(|n| if n.is_empty() { None } else { Some(n) });
        users::update(tx, &user_id, None, None, name, fields.as_ref())?;
        audit::record(tx, "user_updated", Some(&user_id), &origin, json!({ "by": "self" }))?;
        Ok(())
    })
    .await
}

/// The user's own open sessions.
pub async fn own_sessions(db: &TenantDb, user_id: &str) -> Result<Vec<Session>> {
    let id = user_id.to_owned();
    db::with_conn(&db.pool, move |conn| sessions::list(conn, &id)).await
}

/// Ends one of the user's own sessions, audited as `logout`; `NotFound("session")` when the id is not a session
/// of this user (already ended, expired, or someone else's). The JSON API answers that as 404; the account page
/// treats it as done.
pub async fn revoke_own_session(db: &TenantDb, user_id: &str, session_id: String, mut origin: Origin) -> Result<()> {
    let user_id = user_id.to_owned();
    origin.actor = format!("user:{user_id}");
    db.write(move |tx| {
        if !sessions::revoke(tx, &user_id, &session_id)? {
            return Err(Error::NotFound("session"));
        }
        audit::record(tx, "logout", Some(&user_id), &origin, json!({ "session": session_id, "revoked": true }))
    })
    .await
}

/// Withdraws the user's consent to an application and revokes its tokens (audited as `consent_revoked` when
/// there was one); a client without a consent is left as it is.
pub async fn withdraw_consent(db: &TenantDb, user_id: &str, client_id: String, mut origin: Origin) -> Result<()> {
    let user_id = user_id.to_owned();
    origin.actor = format!("user:{user_id}");
    let now = crate::now_unix();
    db.write(move |tx| {
        if crate::oidc::store::revoke_consent(tx, &user_id, &client_id, now)? {
            audit::record(tx, "consent_revoked", Some(&user_id), &origin, json!({ "client_id": client_id }))?;
        }
        Ok(())
    })
    .await
}
