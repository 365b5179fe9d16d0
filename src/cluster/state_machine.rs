//! control.db as openraft's state machine, with snapshots as files under `data/raft-snapshots/`.
//!
//! - Applying an entry runs its mutation through `ControlStore::apply_replicated` with the entry's log id (and
//!   membership, for a membership entry) written in the same transaction.
//! - A snapshot is a `VACUUM INTO` copy of control.db named `{index:020}-{term:020}-{random}.db`, so names sort by
//!   position; its metadata (last log id, membership) is read from the copy. The newest file is the current
//!   snapshot; older ones are removed once a newer one is in place.
//! - A snapshot being received is an unnamed file (it goes with its handle). Installing it copies it next to the
//!   others, checks that it holds what its metadata says, puts it in place (fsync, rename, directory fsync), then
//!   copies it into the live control.db (`ControlStore::restore_from`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError};

use super::{Entry, LogId, Peer, StorageError, StoredMembership, TypeConfig, storage_error};
use crate::control::ControlStore;
use crate::control::replica::{RaftMark, Replied};

/// The state machine: the control store and the directory of its snapshots.
#[derive(Clone)]
pub struct StateMachine {
    control: Arc<ControlStore>,
    snapshots: PathBuf,
}

impl StateMachine {
    /// Over `control`, keeping snapshots in `snapshots` (created if missing; partial files a crash left are
    /// removed).
    pub fn new(control: Arc<ControlStore>, snapshots: PathBuf) -> crate::Result<Self> {
        std::fs::create_dir_all(&snapshots)
            .map_err(|e| crate::Error::internal(format!("create {}: {e}", snapshots.display())))?;
        for entry in std::fs::read_dir(&snapshots).into_iter().flatten().flatten() {
            if entry.path().extension().is_some_and(|ext| ext != "db") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Self { control, snapshots })
    }

    fn newest(&self) -> Option<PathBuf> {
        newest_snapshot(&self.snapshots)
    }
}

/// The newest complete snapshot file in `dir`.
fn newest_snapshot(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "db"))
        .max()
}

/// Removes the complete snapshot files in `dir` older than `keep` (a newer one, put in place meanwhile, and files
/// being built or received stay).
fn remove_older(dir: &Path, keep: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path() < *keep && entry.path().extension().is_some_and(|ext| ext == "db") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn read_error(err: impl std::fmt::Display) -> StorageError {
    storage_error(StorageIOError::read_state_machine, err)
}

fn write_error(err: impl std::fmt::Display) -> StorageError {
    storage_error(StorageIOError::write_state_machine, err)
}

/// The applied log id and membership a mark records.
fn parse_mark(mark: &RaftMark) -> Result<(Option<LogId>, StoredMembership), StorageError> {
    let applied = mark.applied.as_deref().map(serde_json::from_str).transpose().map_err(read_error)?;
    let membership = mark.membership.as_deref().map(serde_json::from_str).transpose().map_err(read_error)?;
    Ok((applied, membership.unwrap_or_default()))
}

/// The metadata of the snapshot file at `path` (named by its id).
fn snapshot_meta(path: &Path) -> Result<SnapshotMeta<u64, Peer>, StorageError> {
    let mark = RaftMark::read_file(path).map_err(read_error)?;
    let (last_log_id, last_membership) = parse_mark(&mark)?;
    let snapshot_id = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(SnapshotMeta { last_log_id, last_membership, snapshot_id })
}

async fn open_snapshot(path: &Path) -> Result<Snapshot<TypeConfig>, StorageError> {
    let meta = snapshot_meta(path)?;
    let file = tokio::fs::File::open(path).await.map_err(read_error)?;
    Ok(Snapshot { meta, snapshot: Box::new(file) })
}

/// Runs blocking store work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f).await.map_err(write_error)?
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (control, dir) = (self.control.clone(), self.snapshots.clone());
        let path = blocking(move || {
            let building = dir.join(format!("{}.building", uuid::Uuid::now_v7().simple()));
            let made = control.snapshot_to(&building).map_err(write_error).and_then(|()| {
                let meta = snapshot_meta(&building)?;
                let (index, term) = meta.last_log_id.map_or((0, 0), |id| (id.index, id.leader_id.term));
                let path = dir.join(format!("{index:020}-{term:020}-{}.db", uuid::Uuid::now_v7().simple()));
                std::fs::File::open(&building).and_then(|f| f.sync_all()).map_err(write_error)?;
                std::fs::rename(&building, &path).map_err(write_error)?;
                std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(write_error)?;
                Ok(path)
            });
            if made.is_err() {
                let _ = std::fs::remove_file(&building);
            }
            let path = made?;
            remove_older(&dir, &path);
            Ok(path)
        })
        .await?;
        open_snapshot(&path).await
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let control = self.control.clone();
        let mark = blocking(move || control.raft_mark().map_err(read_error)).await?;
        parse_mark(&mark)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Option<Replied>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let control = self.control.clone();
        blocking(move || {
            let mut replies = Vec::with_capacity(entries.len());
            for entry in entries {
                let applied = Some(serde_json::to_string(&entry.log_id).map_err(write_error)?);
                let (mutation, membership) = match entry.payload {
                    EntryPayload::Blank => (None, None),
                    EntryPayload::Normal(mutation) => (Some(mutation), None),
                    EntryPayload::Membership(membership) => {
                        let stored = StoredMembership::new(Some(entry.log_id), membership);
                        (None, Some(serde_json::to_string(&stored).map_err(write_error)?))
                    }
                };
                let mark = RaftMark { applied, membership };
                let reply = control
                    .apply_replicated(mutation.as_ref(), &mark)
                    .map_err(|e| storage_error(|source| StorageIOError::apply(entry.log_id, source), e))?;
                replies.push(reply);
            }
            Ok(replies)
        })
        .await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        // A file without a name: it goes when its handle does, whether the transfer finishes or not.
        let path = self.snapshots.join(format!("{}.incoming", uuid::Uuid::now_v7().simple()));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(write_error)?;
        tokio::fs::remove_file(&path).await.map_err(write_error)?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, Peer>,
        mut snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        use tokio::io::{AsyncSeekExt, AsyncWriteExt};
        // The received bytes may live in a file this node did not name (openraft hands over the handle): copy
        // them to a file of their own, then put that in place under the snapshot's id.
        let part = self.snapshots.join(format!("{}.part", uuid::Uuid::now_v7().simple()));
        let name = meta.snapshot_id.replace(['/', '\\', '.'], "_");
        let path = self.snapshots.join(format!("{name}.db"));
        snapshot.flush().await.map_err(write_error)?;
        snapshot.seek(std::io::SeekFrom::Start(0)).await.map_err(write_error)?;
        let mut copy = tokio::fs::File::create(&part).await.map_err(write_error)?;
        tokio::io::copy(&mut snapshot, &mut copy).await.map_err(write_error)?;
        copy.sync_all().await.map_err(write_error)?;
        drop(copy);
        let (control, dir, wanted) = (self.control.clone(), self.snapshots.clone(), meta.last_log_id);
        tracing::info!(snapshot = %meta.snapshot_id, "installing a control-plane snapshot from the leader");
        blocking(move || {
            // Checked before it takes a snapshot's name, so no bad file ever is the newest snapshot.
            let found = snapshot_meta(&part)?.last_log_id;
            if found != wanted {
                let _ = std::fs::remove_file(&part);
                return Err(write_error(format!("snapshot {name} holds entries up to {found:?}, not {wanted:?}")));
            }
            std::fs::rename(&part, &path).map_err(write_error)?;
            std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(write_error)?;
            control.restore_from(&path).map_err(write_error)?;
            remove_older(&dir, &path);
            Ok(())
        })
        .await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        match self.newest() {
            Some(path) => open_snapshot(&path).await.map(Some),
            None => Ok(None),
        }
    }
}
