//! `apply`: the one function that changes control.db, one arm per `Mutation`, deterministic (everything it writes
//! comes from the mutation or the rows it finds), so the same log gives the same file on every node.

use rusqlite::{Connection, params};

use super::{Mutation, mutation, none_if_no_rows};
use crate::error::{Error, Result};
use crate::tenants::TenantSlug;

/// The one function that changes control.db; answers the value it assigned, if the mutation assigns one.
pub fn apply(tx: &Connection, mutation: &Mutation) -> Result<Option<u64>> {
    match mutation {
        Mutation::InitKeyCheck { value } => {
            tx.execute("INSERT INTO meta (key, value) VALUES ('key_check', ?1)", [value])?;
        }
        Mutation::CreateTenant { slug, name, settings, at, home_node, incarnation } => {
            let exists: bool =
                tx.query_row("SELECT EXISTS(SELECT 1 FROM tenants WHERE slug = ?1)", [slug.as_str()], |r| r.get(0))?;
            if exists {
                return Err(Error::Conflict(format!("a tenant with slug {slug} exists")));
            }
            tx.execute(
                "INSERT INTO tenants (slug, name, status, settings, created_at, updated_at, home_node, incarnation)
                 VALUES (?1, ?2, 'active', ?3, ?4, ?4, ?5, ?6)",
                params![slug.as_str(), name, to_json(settings)?, at, home_node.map(|n| n as i64), incarnation],
            )?;
        }
        Mutation::AdoptTenants { node } => {
            tx.execute("UPDATE tenants SET home_node = ?1 WHERE home_node IS NULL", [*node as i64])?;
        }
        Mutation::UpdateTenant { slug, name, settings_patch, at } => {
            let settings = match settings_patch {
                Some(patch) => {
                    let current: Option<String> = tx
                        .query_row("SELECT settings FROM tenants WHERE slug = ?1", [slug.as_str()], |r| r.get(0))
                        .map(Some)
                        .or_else(none_if_no_rows)?;
                    let Some(current) = current else { return Err(Error::TenantNotFound) };
                    let current: crate::tenants::TenantSettings =
                        serde_json::from_str(&current).map_err(Error::internal)?;
                    Some(to_json(&current.merged(patch)?)?)
                }
                None => None,
            };
            let changed = tx.execute(
                "UPDATE tenants SET name = COALESCE(?2, name), settings = COALESCE(?3, settings), updated_at = ?4
                 WHERE slug = ?1",
                params![slug.as_str(), name, settings, at],
            )?;
            require_row(changed)?;
        }
        Mutation::SetTenantStatus { slug, status, at } => {
            let changed = tx.execute(
                "UPDATE tenants SET status = ?2, updated_at = ?3 WHERE slug = ?1",
                params![slug.as_str(), status.as_str(), at],
            )?;
            require_row(changed)?;
        }
        Mutation::ArchiveTenant { slug, file, at, incarnation } => {
            let row: Option<(String, Option<String>)> = tx
                .query_row("SELECT name, incarnation FROM tenants WHERE slug = ?1", [slug.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map(Some)
                .or_else(none_if_no_rows)?;
            let Some((name, current)) = row else { return Err(Error::TenantNotFound) };
            // The proposer saw another incarnation (a restore or re-creation came between): its listener would not
            // move this file, so the record must not go either.
            if incarnation.is_some() && *incarnation != current {
                return Err(Error::Conflict(format!(
                    "tenant {slug} changed (restored or re-created) meanwhile; try again"
                )));
            }
            tx.execute(
                "INSERT INTO tenant_archive (slug, name, file, archived_at) VALUES (?1, ?2, ?3, ?4)",
                params![slug.as_str(), name, file, at],
            )?;
            tx.execute("DELETE FROM operators WHERE scope = ?1", [format!("tenant:{slug}")])?;
            tx.execute("DELETE FROM api_tokens WHERE scope = ?1", [format!("tenant:{slug}")])?;
            tx.execute("DELETE FROM tenants WHERE slug = ?1", [slug.as_str()])?;
        }
        Mutation::RestoreTenant { slug, incarnation, previous, at, .. } => {
            let current: Option<Option<String>> = tx
                .query_row("SELECT incarnation FROM tenants WHERE slug = ?1", [slug.as_str()], |r| r.get(0))
                .map(Some)
                .or_else(none_if_no_rows)?;
            let Some(current) = current else { return Err(Error::TenantNotFound) };
            if current != *previous {
                return Err(Error::Conflict(format!(
                    "tenant {slug} was re-created or restored while this restore ran; nothing changed"
                )));
            }
            tx.execute(
                "UPDATE tenants SET incarnation = ?2, updated_at = ?3 WHERE slug = ?1",
                params![slug.as_str(), incarnation, at],
            )?;
        }
        Mutation::CreateOperator { id, email, password_hash, scope, at } => {
            let exists: bool =
                tx.query_row("SELECT EXISTS(SELECT 1 FROM operators WHERE email = ?1)", [email], |r| r.get(0))?;
            if exists {
                return Err(Error::Conflict(format!("an admin account for {email} exists")));
            }
            tx.execute(
                "INSERT INTO operators (id, email, password_hash, scope, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, email, password_hash, scope.to_string(), at],
            )?;
        }
        Mutation::CreateApiToken { id, name, token_hash, scope, created_by, at, expires_at } => {
            tx.execute(
                "INSERT INTO api_tokens (id, name, token_hash, scope, created_by, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![id, name, token_hash, scope.to_string(), created_by, at, expires_at],
            )?;
        }
        Mutation::SetBootstrapToken { token_hash, at } => {
            tx.execute(
                "INSERT INTO api_tokens (id, name, token_hash, scope, created_by, created_at, expires_at)
                 VALUES ('bootstrap', 'GATEHOUSE_BOOTSTRAP_TOKEN', ?1, 'operator', NULL, ?2, NULL)
                 ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash",
                params![token_hash, at],
            )?;
        }
        Mutation::DeleteApiToken { id } => {
            require_row(tx.execute("DELETE FROM api_tokens WHERE id = ?1", [id])?)
                .map_err(|_| Error::NotFound("token"))?;
        }
        Mutation::CreateAdminSession { id_hash, operator_id, csrf_token, at, expires_at } => {
            tx.execute(
                "INSERT INTO admin_sessions (id_hash, operator_id, csrf_token, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id_hash, operator_id, csrf_token, at, expires_at],
            )?;
        }
        Mutation::DeleteOperator { id } => {
            require_row(tx.execute("DELETE FROM operators WHERE id = ?1", [id])?)?;
        }
        Mutation::DeleteAdminSession { id_hash } => {
            tx.execute("DELETE FROM admin_sessions WHERE id_hash = ?1", [id_hash])?;
        }
        Mutation::PurgeExpiredSessions { now } => {
            tx.execute("DELETE FROM admin_sessions WHERE expires_at <= ?1", [now])?;
        }
        Mutation::SetTenantIntegration { slug, kind, integration: None } => {
            tx.execute("DELETE FROM tenant_integrations WHERE slug = ?1 AND kind = ?2", params![slug.as_str(), kind])?;
        }
        Mutation::SetTenantIntegration { slug, kind, integration: Some(i) } => {
            let exists: bool =
                tx.query_row("SELECT EXISTS(SELECT 1 FROM tenants WHERE slug = ?1)", [slug.as_str()], |r| r.get(0))?;
            if !exists {
                return Err(Error::TenantNotFound);
            }
            tx.execute(
                "INSERT OR REPLACE INTO tenant_integrations (slug, kind, config, secrets_sealed, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![slug.as_str(), kind, i.config.to_string(), i.secrets_sealed, i.updated_at],
            )?;
        }
        Mutation::SetTenantSmtp { slug, smtp: None } => {
            tx.execute("DELETE FROM tenant_smtp WHERE slug = ?1", [slug.as_str()])?;
        }
        Mutation::SetTenantSmtp { slug, smtp: Some(s) } => {
            let exists: bool =
                tx.query_row("SELECT EXISTS(SELECT 1 FROM tenants WHERE slug = ?1)", [slug.as_str()], |r| r.get(0))?;
            if !exists {
                return Err(Error::TenantNotFound);
            }
            tx.execute(
                "INSERT OR REPLACE INTO tenant_smtp
                   (slug, host, port, tls, username, password_sealed, from_email, from_name, updated_at, guarded)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    slug.as_str(),
                    s.host,
                    s.port,
                    s.tls.as_str(),
                    s.username,
                    s.password_sealed,
                    s.from_email,
                    s.from_name,
                    s.updated_at,
                    s.guarded
                ],
            )?;
        }
        Mutation::PutPlugin { slug, plugin, at } => {
            require_tenant(tx, slug)?;
            crate::plugins::records::put(tx, slug, plugin, *at)?;
        }
        Mutation::PutBlobChunk { slug, upload, sha256, seq, total, data, at } => {
            let id_ok = (1..=64).contains(&upload.len()) && upload.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
            if !id_ok
                || !is_sha256_hex(sha256)
                || seq >= total
                || data.len() > mutation::CHUNK_BYTES
                || (*total as usize).saturating_mul(mutation::CHUNK_BYTES) > mutation::MAX_BLOB_BYTES
            {
                return Err(Error::validation(
                    "a blob chunk needs an upload id, a SHA-256 name, seq < total, at most 512 KiB and a blob of at most 64 MiB",
                ));
            }
            require_tenant(tx, slug)?;
            let pending: i64 = tx.query_row(
                "SELECT COALESCE(SUM(length(data)), 0) FROM blob_chunks WHERE slug = ?1",
                [slug.as_str()],
                |r| r.get(0),
            )?;
            if pending as usize + data.len() > mutation::MAX_PENDING_BYTES {
                return Err(Error::Conflict(format!("{slug} has 64 MiB of unfinished uploads; retry within the hour")));
            }
            tx.execute(
                "INSERT OR REPLACE INTO blob_chunks (upload, seq, slug, sha256, total, data, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![upload, seq, slug.as_str(), sha256, total, data, at],
            )?;
        }
        Mutation::PurgeBlobChunks { before } => {
            tx.execute("DELETE FROM blob_chunks WHERE created_at < ?1", [before])?;
        }
        Mutation::AddPluginVersion { slug, name, upload, sha256, at } => {
            let component = take_blob(tx, slug, upload, sha256)?;
            let version = crate::plugins::records::add_version(tx, slug, name, sha256, &component, *at)?;
            return Ok(Some(u64::from(version)));
        }
        Mutation::SetPluginActive { slug, name, version, at } => {
            crate::plugins::records::set_active(tx, slug, name, *version, *at)?;
        }
        Mutation::DeletePlugin { slug, name } => crate::plugins::records::delete(tx, slug, name)?,
        Mutation::PutOAuthClient { slug, client } => {
            require_tenant(tx, slug)?;
            crate::oidc::clients::put(tx, slug, client)?;
        }
        Mutation::DeleteOAuthClient { slug, client_id } => {
            let gone = tx.execute(
                "DELETE FROM oauth_clients WHERE slug = ?1 AND client_id = ?2",
                params![slug.as_str(), client_id],
            )?;
            if gone == 0 {
                return Err(Error::NotFound("client"));
            }
        }
        Mutation::AddSigningKey { slug, kid, alg, public_jwk, private_sealed, at, retire_previous_at, replaces } => {
            let settings: Option<String> = tx
                .query_row("SELECT settings FROM tenants WHERE slug = ?1", [slug.as_str()], |r| r.get(0))
                .map(Some)
                .or_else(none_if_no_rows)?;
            let settings = settings.ok_or(Error::TenantNotFound)?;
            if let Some(replaces) = replaces {
                let wanted = serde_json::from_str::<crate::tenants::TenantSettings>(&settings)
                    .map_err(Error::internal)?
                    .oidc
                    .signing_alg;
                if wanted != *alg {
                    return Err(Error::Conflict(format!("{slug} now signs with {wanted}, not {alg}")));
                }
                let mut stmt = tx.prepare("SELECT kid FROM signing_keys WHERE slug = ?1 AND expires_at IS NULL")?;
                let active: Vec<String> =
                    stmt.query_map([slug.as_str()], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
                let current = match replaces {
                    None => active.is_empty(),
                    Some(kid) => active.contains(kid),
                };
                if !current {
                    return Err(Error::Conflict(format!("the signing key of {slug} changed meanwhile")));
                }
            }
            tx.execute(
                "UPDATE signing_keys SET expires_at = ?2 WHERE slug = ?1 AND expires_at IS NULL",
                params![slug.as_str(), retire_previous_at],
            )?;
            tx.execute(
                "INSERT INTO signing_keys (kid, slug, alg, public_jwk, private_sealed, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)",
                params![kid, slug.as_str(), alg.as_str(), public_jwk, private_sealed, at],
            )?;
        }
        Mutation::PurgeSigningKeys { now } => {
            tx.execute("DELETE FROM signing_keys WHERE expires_at IS NOT NULL AND expires_at <= ?1", [now])?;
        }
    }
    Ok(None)
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The blob of upload `upload` by `slug`, assembled from its chunks (which it consumes) and checked against
/// `sha256`. Refused when a chunk is missing or the bytes do not hash to the name.
fn take_blob(tx: &Connection, slug: &TenantSlug, upload: &str, sha256: &str) -> Result<Vec<u8>> {
    use sha2::{Digest, Sha256};
    let mut stmt =
        tx.prepare("SELECT seq, total, data FROM blob_chunks WHERE upload = ?1 AND slug = ?2 ORDER BY seq")?;
    let chunks: Vec<(u32, u32, Vec<u8>)> = stmt
        .query_map(params![upload, slug.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let complete = !chunks.is_empty()
        && chunks.iter().enumerate().all(|(i, (seq, total, _))| *seq as usize == i && *total as usize == chunks.len());
    if !complete {
        return Err(Error::validation(format!("the chunks of upload {upload} are not all in")));
    }
    tx.execute("DELETE FROM blob_chunks WHERE upload = ?1", [upload])?;
    let bytes: Vec<u8> = chunks.into_iter().flat_map(|(_, _, data)| data).collect();
    if crate::plugins::artifacts::hex(&Sha256::digest(&bytes)) != sha256 {
        return Err(Error::validation(format!("the chunks of upload {upload} do not hash to {sha256}")));
    }
    Ok(bytes)
}

fn require_tenant(tx: &Connection, slug: &TenantSlug) -> Result<()> {
    let exists: bool =
        tx.query_row("SELECT EXISTS(SELECT 1 FROM tenants WHERE slug = ?1)", [slug.as_str()], |r| r.get(0))?;
    if exists { Ok(()) } else { Err(Error::TenantNotFound) }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(Error::internal)
}

fn require_row(changed: usize) -> Result<()> {
    if changed == 0 { Err(Error::TenantNotFound) } else { Ok(()) }
}
