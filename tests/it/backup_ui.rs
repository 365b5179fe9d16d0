//! The Backups page in headless Chromium against a real server replicating into moto: the databases and the lag
//! plot are shown; a tenant is restored to a time before a user was deleted, through the typed confirmation
//! (a wrong slug is refused with nothing changed), the page follows the restore to its end, and the user is back.

use std::time::Duration;

use fantoccini::Locator;
use reqwest::Method;
use serde_json::{Value, json};

use crate::admin_ui::{EMAIL, PASSWORD, start_browser};
use crate::backup_s3::{Moto, admin, caught_up, serve, stop, tools, users};
use crate::support::require_tool;

async fn emails(server: &crate::support::BinServer) -> Vec<String> {
    let (status, body) = admin(server, Method::GET, "/admin/api/v1/tenants/acme/users", Value::Null).await;
    assert_eq!(status, 200, "{body}");
    let mut all: Vec<String> =
        body["items"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap().to_owned()).collect();
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_restores_a_tenant_to_before_a_user_was_deleted() {
    if !tools() || !require_tool("chromedriver") {
        return;
    }
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server =
        serve(dir.path(), &moto, &[("GATEHOUSE_ADMIN_EMAIL", EMAIL), ("GATEHOUSE_ADMIN_PASSWORD", PASSWORD)]).await;
    let (status, body) =
        admin(&server, Method::POST, "/admin/api/v1/tenants", json!({"slug": "acme", "name": "Acme"})).await;
    assert_eq!(status, 201, "{body}");
    users(&server, "acme", "keep", 2).await;
    caught_up(&server).await;
    let (_, list) = admin(&server, Method::GET, "/admin/api/v1/tenants/acme/users", Value::Null).await;
    let doomed = list["items"][0]["id"].as_str().unwrap().to_owned();
    let doomed_email = list["items"][0]["email"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let before = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, body) =
        admin(&server, Method::DELETE, &format!("/admin/api/v1/tenants/acme/users/{doomed}"), Value::Null).await;
    assert!(status == 200 || status == 204, "{status} {body}");
    caught_up(&server).await;
    assert_eq!(emails(&server).await.len(), 1);

    let (driver, browser) = start_browser().await;
    browser.goto(&format!("{}/admin/login", server.base)).await.unwrap();
    browser.wait().for_element(Locator::Id("email")).await.unwrap().send_keys(EMAIL).await.unwrap();
    browser.find(Locator::Id("password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    browser.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
    browser.wait().for_element(Locator::Css("nav a[href='/admin/backups']")).await.unwrap().click().await.unwrap();
    let row = browser.wait().for_element(Locator::Id("db-tenants-acme")).await.unwrap();
    assert!(row.text().await.unwrap().contains("tenants/acme"));
    browser.find(Locator::Id("plot-backup-lag")).await.unwrap();
    browser.find(Locator::Css("a[href='/admin/backups/restore/acme']")).await.unwrap().click().await.unwrap();
    browser.wait().for_element(Locator::Id("restore-window")).await.unwrap();

    // A wrong slug in the confirmation: refused, the typed time kept, nothing restored.
    browser.find(Locator::Id("timestamp")).await.unwrap().send_keys(&before).await.unwrap();
    browser.find(Locator::Id("confirm")).await.unwrap().send_keys("acm").await.unwrap();
    browser.find(Locator::Css("form.grid-form button[type=submit]")).await.unwrap().click().await.unwrap();
    let error = browser.wait().for_element(Locator::Id("confirm-error")).await.unwrap();
    assert!(error.text().await.unwrap().contains("acme"));
    assert_eq!(
        browser.find(Locator::Id("timestamp")).await.unwrap().prop("value").await.unwrap().as_deref(),
        Some(before.as_str())
    );
    assert_eq!(emails(&server).await.len(), 1, "nothing changed");

    browser.find(Locator::Id("confirm")).await.unwrap().clear().await.unwrap();
    browser.find(Locator::Id("confirm")).await.unwrap().send_keys("acme").await.unwrap();
    browser.find(Locator::Css("form.grid-form button[type=submit]")).await.unwrap().click().await.unwrap();
    let result =
        browser.wait().at_most(Duration::from_secs(60)).for_element(Locator::Id("restore-result")).await.unwrap();
    assert!(result.text().await.unwrap().contains("Restored to TXID"), "{}", result.text().await.unwrap());
    assert_eq!(browser.find(Locator::Id("restore-phase")).await.unwrap().text().await.unwrap(), "done");
    assert!(emails(&server).await.contains(&doomed_email), "the deleted user is back");
    assert_eq!(emails(&server).await.len(), 2);
    // Both pages with real data pass axe, light and dark.
    let pages = ["/admin/backups".to_owned(), "/admin/backups/restore/acme".to_owned()];
    let found = crate::axe::audit(&driver, &browser, &server.base, &pages).await;
    crate::axe::judge(&found);
    browser.close().await.unwrap();
    stop(server);
}
