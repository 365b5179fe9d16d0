//! Unit tests of the audit log (`audit.rs`): the summaries and labels people read, and the filters over a small
//! in-memory table.

use serde_json::json;

use super::*;

#[test]
fn every_type_has_a_label() {
    for kind in TYPES {
        assert_ne!(label(kind), "Other event", "{kind}");
    }
    assert_eq!(label("login_failed"), "Sign-in failed");
    assert_eq!(label("something_new"), "Other event");
    assert_eq!(tone("login_failed"), "bad");
    assert_eq!(tone("login_succeeded"), "active");
    assert_eq!(tone("role_changed"), "neutral");
}

#[test]
fn summaries_read_the_detail_each_call_site_writes() {
    let cases = [
        ("login_succeeded", json!({ "session": "s1" }), "Signed in"),
        ("login_succeeded", json!({ "session": "s1", "mfa": "totp" }), "Signed in with an authenticator code"),
        ("login_failed", json!({ "reason": "wrong_password" }), "Sign-in failed: wrong password"),
        (
            "login_failed",
            json!({ "reason": "unknown_email", "email": "eve@example.com" }),
            "Sign-in failed: no account for eve@example.com",
        ),
        ("login_failed", json!({ "reason": "wrong_code" }), "Sign-in failed: wrong two-factor code"),
        ("login_failed", json!({ "reason": "too_many_things" }), "Sign-in failed: too many things"),
        ("login_failed", json!({}), "Sign-in failed"),
        ("locked_out", json!({ "until": "2026-11-23T08:05:00Z" }), "Locked out until 2026-11-23 08:05:00 UTC"),
        ("locked_out", json!({}), "Locked out"),
        ("logout", json!({ "session": "s1" }), "Signed out"),
        ("logout", json!({ "session": "s1", "revoked": true }), "Ended one of their sessions"),
        (
            "password_changed",
            json!({ "via": "self", "sessions_ended": 2, "grants_revoked": 1 }),
            "Password changed, 2 sessions ended, 1 app grant revoked",
        ),
        ("password_changed", json!({ "via": "reset", "sessions_ended": 0 }), "Password reset with an emailed link"),
        ("password_reset_requested", json!({ "by": "admin", "invite": true }), "Invitation mailed by an admin"),
        ("password_reset_requested", json!({ "by": "self" }), "Password reset requested"),
        ("mfa_enabled", json!({ "method": "totp" }), "Two-factor authentication turned on (authenticator app)"),
        ("mfa_disabled", json!({ "by": "admin" }), "Two-factor authentication removed by an admin"),
        ("user_created", json!({ "by": "self" }), "Signed up"),
        ("user_created", json!({ "by": "admin", "invited": true }), "Created by an admin and invited by email"),
        ("user_updated", json!({ "email_verified": true }), "Email address verified"),
        ("user_updated", json!({ "status": "active" }), "Enabled"),
        ("user_updated", json!({}), "Profile updated"),
        ("user_disabled", json!({ "sessions_ended": 1, "grants_revoked": 0 }), "Disabled, 1 session ended"),
        ("user_deleted", json!({ "email": "bob@example.com" }), "User bob@example.com deleted"),
        ("role_changed", json!({ "added": ["admin"], "removed": [] }), "Role admin granted"),
        (
            "role_changed",
            json!({ "added": ["admin", "editor"], "removed": ["viewer"] }),
            "Roles admin, editor granted; role viewer removed",
        ),
        ("role_changed", json!({ "added": [], "removed": ["viewer"] }), "Role viewer removed"),
        ("admin_action", json!({ "action": "role_created", "role": "support" }), "Role support created"),
        ("admin_action", json!({ "action": "session_revoked", "session": "s" }), "Session ended by an admin"),
        (
            "consent_granted",
            json!({ "client_id": "c1", "client_name": "Foo", "scopes": ["openid", "email"] }),
            "Consent granted to client Foo for openid, email",
        ),
        (
            "consent_granted",
            json!({ "client_id": "c1", "scopes": "openid profile" }),
            "Consent granted to client c1 for openid, profile",
        ),
        ("consent_revoked", json!({ "client_id": "c1" }), "Consent withdrawn from client c1"),
        (
            "token_reuse",
            json!({ "token": "refresh_token", "client_id": "c1", "family": "f" }),
            "Refresh token used twice by client c1; its token family was revoked",
        ),
        (
            "plugin_denied",
            json!({ "plugin": "geo", "version": 2, "function": "post-login", "reason": "not from here" }),
            "Plugin geo denied sign-in: not from here",
        ),
        (
            "plugin_failed",
            json!({ "plugin": "geo", "version": 2, "function": "pre-registration", "outcome": "timeout",
                    "policy": "fail_open" }),
            "Plugin geo v2 failed on sign-up (timeout); let through",
        ),
        ("brand_new_type", json!({}), "Brand new type"),
    ];
    for (kind, detail, want) in cases {
        assert_eq!(summary(kind, &detail), want, "{kind} {detail}");
    }
    // Whatever an old row holds, there is a line.
    assert_eq!(summary("role_changed", &Value::Null), "Roles changed");
    assert_eq!(summary("consent_granted", &json!("not an object")), "Consent granted to a client");
}

fn table() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(
        "CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT);
         CREATE TABLE audit_log (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, type TEXT NOT NULL, user_id TEXT,
             actor TEXT NOT NULL, ip TEXT, user_agent TEXT, request_id TEXT, detail TEXT NOT NULL DEFAULT '{}');
         INSERT INTO users VALUES ('u1', 'ann@example.com', 'Ann'), ('u2', 'bob_x@example.com', NULL);",
    )
    .unwrap();
    let rows = [
        (100, "login_failed", None, "", json!({ "reason": "unknown_email", "email": "ann.old@example.com" })),
        (200, "login_succeeded", Some("u1"), "user:u1", json!({})),
        (300, "user_updated", Some("u2"), "operator:o1", json!({})),
        (400, "role_changed", Some("u1"), "token:t1", json!({ "added": ["a"] })),
        (500, "login_failed", Some("u2"), "user:u2", json!({ "reason": "wrong_password" })),
        (600, "user_deleted", Some("u9"), "operator:o1", json!({ "email": "gone@example.com" })),
        (700, "plugin_failed", None, "system", json!({})),
    ];
    for (at, kind, user, actor, detail) in rows {
        conn.execute(
            "INSERT INTO audit_log (at, type, user_id, actor, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![at, kind, user, actor, detail.to_string()],
        )
        .unwrap();
    }
    conn
}

fn ids(conn: &Connection, filter: Filter) -> Vec<i64> {
    let filter = Filter { limit: if filter.limit == 0 { 50 } else { filter.limit }, ..filter };
    let (entries, _) = list(conn, &filter).unwrap();
    assert_eq!(count(conn, &filter).unwrap() as usize, entries.len(), "the count agrees");
    entries.iter().map(|e| e.id).collect()
}

#[test]
fn filters_by_email_actor_and_time() {
    let conn = table();
    assert_eq!(ids(&conn, Filter::default()), [7, 6, 5, 4, 3, 2, 1]);
    // Part of an email: the users it matches, and entries naming such an email; `_` is no wildcard.
    assert_eq!(ids(&conn, Filter { email: Some("ann".into()), ..Default::default() }), [4, 2, 1]);
    assert_eq!(ids(&conn, Filter { email: Some("b_x".into()), ..Default::default() }), [5, 3]);
    assert_eq!(ids(&conn, Filter { email: Some("bob x".into()), ..Default::default() }), Vec::<i64>::new());
    assert_eq!(ids(&conn, Filter { email: Some("gone@".into()), ..Default::default() }), [6]);
    assert_eq!(ids(&conn, Filter { email: Some("n_x".into()), ..Default::default() }), Vec::<i64>::new());
    // Actors: exact, or by kind.
    assert_eq!(ids(&conn, Filter { actor: Some("operator:o1".into()), ..Default::default() }), [6, 3]);
    assert_eq!(ids(&conn, Filter { actor_kind: Some(ActorKind::User), ..Default::default() }), [5, 2]);
    assert_eq!(ids(&conn, Filter { actor_kind: Some(ActorKind::Token), ..Default::default() }), [4]);
    assert_eq!(ids(&conn, Filter { actor_kind: Some(ActorKind::System), ..Default::default() }), [7]);
    assert_eq!(ids(&conn, Filter { actor_kind: Some(ActorKind::Anonymous), ..Default::default() }), [1]);
    // Time range, both ends inclusive; with a type.
    assert_eq!(ids(&conn, Filter { since: Some(200), until: Some(500), ..Default::default() }), [5, 4, 3, 2]);
    let failed = Filter { kind: Some("login_failed".into()), until: Some(499), ..Default::default() };
    assert_eq!(ids(&conn, failed.clone()), [1]);
    assert_eq!(count(&conn, &failed).unwrap(), 1);
    assert_eq!(count(&conn, &Filter::default()).unwrap(), 7);
}

#[test]
fn pages_go_both_ways() {
    let conn = table();
    let first = Filter { limit: 3, ..Default::default() };
    let (page, next) = list(&conn, &first).unwrap();
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), [7, 6, 5]);
    assert_eq!(next, Some(5));
    let (page, _) = list(&conn, &Filter { cursor: Some(5), ..first.clone() }).unwrap();
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), [4, 3, 2]);
    // Back: the three just newer than 2, still newest first.
    let (page, _) = list(&conn, &Filter { after: Some(2), ..first.clone() }).unwrap();
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), [5, 4, 3]);
    assert!(has_newer(&conn, &first, 5).unwrap());
    assert!(!has_newer(&conn, &first, 7).unwrap());
    assert!(has_older(&conn, &first, 2).unwrap());
    assert!(!has_older(&conn, &first, 1).unwrap());
    let only_system = Filter { actor_kind: Some(ActorKind::System), ..first };
    assert!(!has_older(&conn, &only_system, 7).unwrap());
}

#[test]
fn user_names_come_in_one_query_without_the_deleted() {
    let conn = table();
    let (entries, _) = list(&conn, &Filter { limit: 50, ..Default::default() }).unwrap();
    let names = user_names(&conn, &entries).unwrap();
    assert_eq!(names.len(), 2, "u9 was deleted");
    assert_eq!(names["u1"].email, "ann@example.com");
    assert_eq!(names["u1"].name.as_deref(), Some("Ann"));
    assert_eq!(names["u2"].name, None);
    assert!(user_names(&conn, &[]).unwrap().is_empty());
}
