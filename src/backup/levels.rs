//! Compaction and retention, as Litestream 0.5 lays a replica out.
//!
//! Uploaded L0, L1 and L2 files are kept locally (`data/backup/levels/{root}/{level}/`) until they are merged
//! into the next level: L0 into L1 every 30 s, L1 into L2 every 5 min, L2 into L3 every hour (newest page wins,
//! pages above the last commit dropped). A merge takes the contiguous run of TXIDs from the oldest local file on,
//! so a compacted file never spans a TXID that only a snapshot holds.
//!
//! Retention keeps every snapshot younger than the retention window and always the newest; L0 files go 5 min
//! after an L1 file covers them; files of any level below the oldest kept snapshot go. Every deletion leaves one
//! contiguous chain from each kept snapshot to the newest file (the gap check `litestream restore` runs).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::backup::capture::{SNAPSHOT_LEVEL, Spool, Spooled};
use crate::backup::ltx::{self, Encoder, Header};
use crate::error::{Error, Result};

/// How often level 1, 2 and 3 take in the level below (`GATEHOUSE_BACKUP_LEVELS`, Litestream's defaults).
pub const LEVEL_INTERVALS: [Duration; 3] =
    [Duration::from_secs(30), Duration::from_secs(5 * 60), Duration::from_secs(60 * 60)];
/// An L0 file stays in the bucket this many L1 intervals once an L1 file covers it (5 min with the defaults):
/// a restore can pick any sync point that recent.
pub const L0_KEPT_INTERVALS: u32 = 10;

/// The run of files to merge: contiguous TXIDs from the first file on.
pub fn contiguous_run(files: &[Spooled]) -> Vec<Spooled> {
    let mut run: Vec<Spooled> = Vec::new();
    for file in files {
        match run.last() {
            None if file.min_txid > 1 => run.push(file.clone()),
            Some(last) if file.min_txid == last.max_txid + 1 => run.push(file.clone()),
            _ => break,
        }
    }
    run
}

/// Merges `run` (files of one level, read from `local`) into one file of `level`, written to `spool`.
pub fn merge(local: &Spool, spool: &Spool, root: &str, level: u8, run: &[Spooled]) -> Result<Spooled> {
    let (Some(first), Some(last)) = (run.first(), run.last()) else {
        return Err(Error::internal("an empty compaction"));
    };
    let mut pages: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut head: Option<Header> = None;
    for file in run {
        let bytes = std::fs::read(local.path(file)).map_err(Error::internal)?;
        let decoded = ltx::decode(&bytes)?;
        if head.is_some_and(|h| h.page_size != decoded.header.page_size) {
            return Err(Error::internal(format!("{root}: page size changed within a compaction")));
        }
        head = Some(decoded.header);
        pages.extend(decoded.pages);
    }
    let last_header = head.ok_or_else(|| Error::internal("an empty compaction"))?;
    let header = Header { min_txid: first.min_txid, max_txid: last.max_txid, ..last_header };
    let mut encoder = Encoder::new(header)?;
    for (pgno, data) in pages.range(..=header.commit) {
        encoder.page(*pgno, data)?;
    }
    spool.write(root, level, &header, &encoder.finish()?)
}

/// What retention deletes from a root's objects `(level, min, max, created_ms)` at `now_ms`.
pub fn expired(
    objects: &[(u8, u64, u64, i64)],
    now_ms: i64,
    retention: Duration,
    l0_retention: Duration,
) -> Vec<(u8, u64, u64)> {
    let snapshots: Vec<&(u8, u64, u64, i64)> = objects.iter().filter(|o| o.0 == SNAPSHOT_LEVEL).collect();
    let Some(newest) = snapshots.iter().map(|o| o.2).max() else { return Vec::new() };
    let horizon = now_ms - retention.as_millis() as i64;
    // The newest snapshot made before the window starts is kept too: a restore to any point in the window
    // starts from it.
    let base = snapshots.iter().filter(|o| o.3 < horizon).map(|o| o.2).max();
    let kept = |o: &(u8, u64, u64, i64)| o.2 == newest || o.3 >= horizon || Some(o.2) == base;
    let oldest_kept = snapshots.iter().filter(|o| kept(o)).map(|o| o.2).min().unwrap_or(newest);
    let l1: Vec<(u64, u64)> = objects.iter().filter(|o| o.0 == 1).map(|o| (o.1, o.2)).collect();
    let covered = |o: &(u8, u64, u64, i64)| l1.iter().any(|(min, max)| *min <= o.1 && o.2 <= *max);
    let l0_horizon = now_ms - l0_retention.as_millis() as i64;
    objects
        .iter()
        .filter(|o| match o.0 {
            SNAPSHOT_LEVEL => !kept(o),
            0 => o.2 < oldest_kept || (covered(o) && o.3 < l0_horizon),
            _ => o.2 < oldest_kept,
        })
        .map(|o| (o.0, o.1, o.2))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(min: u64, max: u64) -> Spooled {
        Spooled { root: "r".into(), level: 0, min_txid: min, max_txid: max, bytes: 1 }
    }

    #[test]
    fn a_run_stops_at_a_hole() {
        let run = contiguous_run(&[file(2, 2), file(3, 3), file(4, 5), file(7, 7)]);
        assert_eq!(run.iter().map(|f| f.max_txid).collect::<Vec<_>>(), [2, 3, 5]);
        assert!(contiguous_run(&[]).is_empty());
    }

    #[test]
    fn retention_keeps_the_chain_from_every_kept_snapshot() {
        let hour = 3_600_000;
        let now = 100 * hour;
        let objects = vec![
            (9, 1, 5, now - 60 * hour),   // older than the window, with a newer one before it: goes
            (9, 1, 10, now - 50 * hour),  // the newest before the window: the base of restores into it, kept
            (9, 1, 40, now - 2 * hour),   // kept (within 24 h)
            (9, 1, 90, now - hour),       // newest
            (0, 6, 6, now - 55 * hour),   // below the oldest kept snapshot: goes
            (0, 41, 41, now - 2 * hour),  // covered by L1 and older than 5 min: goes
            (0, 95, 95, now - 1000),      // covered but young: stays
            (0, 96, 96, now - hour),      // not covered by L1: stays
            (0, 99, 99, now - hour),      // below the highest L1 TXID but not inside an L1 file: stays
            (1, 6, 9, now - 55 * hour),   // below the oldest kept snapshot: goes
            (1, 11, 30, now - 49 * hour), // needed from the base snapshot on: stays
            (1, 41, 95, now - 1000),      // stays
            (1, 100, 120, now - 1000),    // stays
        ];
        let (day, five) = (Duration::from_secs(24 * 3600), Duration::from_secs(300));
        let gone = expired(&objects, now, day, five);
        assert_eq!(gone, vec![(9, 1, 5), (0, 6, 6), (0, 41, 41), (1, 6, 9)]);
        // The newest snapshot stays however old it is.
        let old = vec![(9, 1, 5, 0), (0, 6, 6, 0)];
        assert!(expired(&old, now, Duration::from_secs(3600), five).is_empty());
    }
}
