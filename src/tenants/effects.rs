//! What a tenant mutation does outside control.db, and the start-up pass that finishes what a crash interrupted.
//!
//! Invariants:
//! - Nothing but these `on_apply` listeners touches tenant files because of a mutation; handlers only propose.
//! - Tenant files live on the tenant's home node: a node creates a file only for `CreateTenant { home_node }`
//!   naming it, and archives only files it has.
//! - Every effect is idempotent: a file stamped with the tenant's incarnation is the tenant's (creating it again
//!   does nothing); archiving a file that is gone does nothing. So replaying an entry, or reconciling after a
//!   crash between an entry's commit and its listener, converges on the same files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::Rng;

use crate::control::{ControlStore, Mutation, tables};
use crate::db::registry::TenantRegistry;
use crate::email::outbox::Wakeups;
use crate::error::{Error, Result};
use crate::tenants::{TenantSlug, TenantStatus};

/// Node ids are random in 1..2^53 (they survive a JSON number) and never reused.
const NODE_ID_LIMIT: u64 = 1 << 53;

/// This node's id from `{data_dir}/node_id`, made (and written atomically) on first start: `wanted`
/// (`GATEHOUSE_NODE_ID`) or a random one. A data dir that holds another id than `wanted` is refused: an id names
/// one node's history, and a cluster must never see it come back with another.
pub fn node_id(data_dir: &Path, wanted: Option<u64>) -> Result<u64> {
    let path = data_dir.join("node_id");
    let io = |e: std::io::Error| Error::internal(format!("{}: {e}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|id| (1..NODE_ID_LIMIT).contains(id))
                .ok_or_else(|| Error::internal(format!("{} does not hold a node id (1..2^53)", path.display())))?;
            match wanted {
                Some(wanted) if wanted != id => Err(Error::internal(format!(
                    "GATEHOUSE_NODE_ID is {wanted} but this data dir belongs to node {id} ({}); a node keeps its id",
                    path.display()
                ))),
                _ => Ok(id),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = wanted.unwrap_or_else(|| rand::rng().random_range(1..NODE_ID_LIMIT));
            let tmp = data_dir.join("node_id.tmp");
            let mut file = std::fs::File::create(&tmp).map_err(io)?;
            std::io::Write::write_all(&mut file, format!("{id}\n").as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
            Ok(id)
        }
        Err(e) => Err(io(e)),
    }
}

/// The side effects of tenant mutations on this node.
pub struct TenantEffects {
    pub node: u64,
    pub registry: Arc<TenantRegistry>,
    pub outbox: Arc<Wakeups>,
}

impl TenantEffects {
    /// The `on_apply` listener.
    pub fn on_apply(&self, mutation: &Mutation) -> Result<()> {
        match mutation {
            // Entries from before nodes had ids name no home: the node applying them keeps the file.
            Mutation::CreateTenant { slug, home_node, incarnation, .. }
                if home_node.is_none_or(|home| home == self.node) =>
            {
                self.registry.create_file(slug, incarnation.as_deref())?;
            }
            Mutation::ArchiveTenant { slug, file, incarnation, .. } => {
                self.outbox.forget(slug);
                self.registry.archive_as(slug, file, incarnation.as_deref())?;
            }
            // Only the node holding the staged file (the tenant's home) swaps; elsewhere there is nothing to do.
            Mutation::RestoreTenant { slug, incarnation, archive, .. } => {
                self.registry.swap_in(slug, incarnation, archive)?;
            }
            // Mail queued while suspended goes out now rather than at the dispatcher's next check.
            Mutation::SetTenantStatus { slug, status: TenantStatus::Active, .. }
                if self.registry.path(slug).exists() =>
            {
                self.outbox.schedule(slug, crate::email::outbox::now_ms());
            }
            _ => {}
        }
        Ok(())
    }

    /// Brings the files in line with control.db after a crash between a commit and its listener: tenants with no
    /// home are adopted by this node; a tenant homed here gets its file if it has none; a file left at an
    /// archived tenant's path (its incarnation differs from the live tenant's, or no tenant of that slug lives)
    /// is moved to the archive name its entry recorded. One tenant's trouble is logged and skipped, never stops
    /// the start. Returns what it did, for the log.
    pub fn reconcile(&self, control: &ControlStore) -> Result<Vec<String>> {
        let mut done = Vec::new();
        let unhomed = control.read_blocking(|conn| {
            Ok(conn.query_row("SELECT COUNT(*) FROM tenants WHERE home_node IS NULL", [], |r| r.get::<_, i64>(0))?)
        })?;
        if unhomed > 0 {
            control.apply_blocking(Mutation::AdoptTenants { node: self.node })?;
            done.push(format!("adopted {unhomed} tenants made before nodes had ids"));
        }
        done.extend(self.reconcile_files(control)?);
        Ok(done)
    }

    /// The file part of `reconcile`, which proposes nothing: also what runs after a Raft snapshot replaced
    /// control.db (inside the state machine, where a proposal would wait for itself).
    pub fn reconcile_files(&self, control: &ControlStore) -> Result<Vec<String>> {
        let mut done = Vec::new();
        let (tenants, archived) = control.read_blocking(|conn| {
            let tenants = tables::list_tenants(conn, None, u32::MAX, None)?;
            let archived = tables::archived_tenants(conn, u32::MAX)?;
            Ok((tenants, archived))
        })?;
        // Archive entries whose file never left `tenants/` (newest first, so the latest archive name wins).
        for entry in &archived {
            let Ok(slug) = TenantSlug::parse(&entry.slug) else { continue };
            let step = || -> Result<Option<String>> {
                let path = self.registry.path(&slug);
                let target = archive_path(self.registry.data_dir(), &slug, &entry.file)?;
                if !path.exists() || target.exists() {
                    return Ok(None);
                }
                let stamp = self.registry.incarnation(&slug)?;
                let live = tenants.iter().find(|t| t.slug == slug);
                if live.is_some_and(|t| t.incarnation.is_none() || t.incarnation == stamp) {
                    return Ok(None);
                }
                self.registry.archive_as(&slug, &entry.file, None)?;
                Ok(Some(format!("archived {slug} to {}", entry.file)))
            };
            match step() {
                Ok(Some(what)) => done.push(what),
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(tenant = %slug, error = %err, "could not reconcile an archived tenant's file")
                }
            }
        }
        for tenant in tenants.iter().filter(|t| t.home_node == Some(self.node)) {
            let step = || -> Result<bool> {
                let path = self.registry.path(&tenant.slug);
                let stray = path.exists()
                    && tenant.incarnation.is_some()
                    && self.registry.incarnation(&tenant.slug)? != tenant.incarnation;
                if path.exists() && !stray {
                    return Ok(false);
                }
                // A live restore whose entry committed before its file was swapped in: finish the swap.
                if let Some(incarnation) = &tenant.incarnation
                    && self.registry.swap_in(
                        &tenant.slug,
                        incarnation,
                        &archive_name(&tenant.slug, crate::now_unix()),
                    )?
                {
                    return Ok(true);
                }
                self.registry.create_file(&tenant.slug, tenant.incarnation.as_deref())?;
                Ok(true)
            };
            match step() {
                Ok(true) => done.push(format!("put the file of {} in place", tenant.slug)),
                Ok(false) => {}
                Err(err) => tracing::warn!(tenant = %tenant.slug, error = %err, "could not reconcile a tenant's file"),
            }
        }
        // What restores interrupted before their entry committed left behind (the tenant kept its file).
        let live = |slug: &TenantSlug| tenants.iter().find(|t| t.slug == *slug).and_then(|t| t.incarnation.clone());
        for name in self.registry.clean_staged(live) {
            done.push(format!("removed restore/{name}, left by an interrupted restore"));
        }
        Ok(done)
    }
}

/// A fresh archive name for `slug`: `archive/{slug}-{unix}-{8 hex}.db` (unique even for deletes in one second).
pub fn archive_name(slug: &TenantSlug, at: i64) -> String {
    format!("archive/{slug}-{at}-{:08x}", rand::rng().random::<u32>()) + ".db"
}

/// `archive/{slug}-{digits}.db` or `archive/{slug}-{digits}-{8 hex}.db`: the only forms an `ArchiveTenant`
/// entry's file may have (it comes from the log, so it is checked before it becomes a path; the digits-first
/// suffix keeps `acme`'s names apart from `acme-5`'s).
pub fn archive_path(data_dir: &Path, slug: &TenantSlug, file: &str) -> Result<PathBuf> {
    let suffix = file
        .strip_prefix("archive/")
        .and_then(|rest| rest.strip_prefix(slug.as_str()))
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|rest| rest.strip_suffix(".db"));
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    let ok = suffix.is_some_and(|s| match s.split_once('-') {
        None => digits(s),
        Some((at, tag)) => digits(at) && tag.len() == 8 && tag.bytes().all(|b| b.is_ascii_hexdigit()),
    });
    if ok {
        Ok(data_dir.join(file))
    } else {
        Err(Error::internal(format!("archive file name {file:?} is not archive/{slug}-<unix>[-<8 hex>].db")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_persist_and_stay_in_range() {
        let dir = tempfile::tempdir().unwrap();
        let id = node_id(dir.path(), None).unwrap();
        assert!((1..NODE_ID_LIMIT).contains(&id));
        assert_eq!(node_id(dir.path(), None).unwrap(), id, "the id is kept");
        std::fs::write(dir.path().join("node_id"), "0\n").unwrap();
        assert!(node_id(dir.path(), None).is_err(), "0 is no node id");
    }

    #[test]
    fn archive_names_from_the_log_cannot_leave_the_archive_dir() {
        let slug = TenantSlug::parse("acme").unwrap();
        let dir = Path::new("/data");
        assert_eq!(
            archive_path(dir, &slug, "archive/acme-1700000000.db").unwrap(),
            dir.join("archive/acme-1700000000.db")
        );
        for bad in [
            "archive/acme-../../etc/passwd.db",
            "archive/beta-1.db",
            "../acme-1.db",
            "archive/acme-.db",
            "archive/acme-1/x.db",
        ] {
            assert!(archive_path(dir, &slug, bad).is_err(), "{bad}");
        }
    }
}
