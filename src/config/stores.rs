//! `GATEHOUSE_BACKUP_*` and `GATEHOUSE_S3_*`: where continuous backups go and how often.

use std::time::Duration;

use super::{Env, parse_flag};

/// `GATEHOUSE_BACKUP_*` and `GATEHOUSE_S3_*`; `None` without a backup URL.
pub(super) fn backup_config<F: Fn(&str) -> Option<String>>(env: &mut Env<F>) -> Option<crate::backup::BackupConfig> {
    use crate::backup::BackupConfig;
    let interval_raw = env.value("GATEHOUSE_BACKUP_INTERVAL", 0);
    let interval = BackupConfig::parse_interval(&interval_raw).unwrap_or_else(|why| {
        env.problem("GATEHOUSE_BACKUP_INTERVAL", format!("{why}, got {interval_raw:?}"));
        Duration::from_secs(1)
    });
    let endpoint = env.get("GATEHOUSE_S3_ENDPOINT").map(|e| e.trim().trim_end_matches('/').to_owned());
    if let Some(endpoint) = &endpoint
        && reqwest::Url::parse(endpoint).map_or(true, |u| !matches!(u.scheme(), "http" | "https"))
    {
        env.refuse("GATEHOUSE_S3_ENDPOINT", "an http(s) URL", endpoint);
    }
    let path_style = env.get("GATEHOUSE_S3_PATH_STYLE").and_then(|raw| {
        let flag = parse_flag(raw.trim());
        if flag.is_none() {
            env.refuse("GATEHOUSE_S3_PATH_STYLE", "true or false", raw.trim());
        }
        flag
    });
    let region = env.get("GATEHOUSE_S3_REGION").map(|r| r.trim().to_owned());
    let max_spool_mb: u64 = env.number("GATEHOUSE_BACKUP_MAX_SPOOL_MB");
    let snapshot_hours: u64 = env.number("GATEHOUSE_BACKUP_SNAPSHOT_HOURS");
    let retention_hours: u64 = env.number("GATEHOUSE_BACKUP_RETENTION_HOURS");
    let levels_raw = env.value("GATEHOUSE_BACKUP_LEVELS", 0);
    let levels = BackupConfig::parse_levels(&levels_raw).unwrap_or_else(|why| {
        env.problem("GATEHOUSE_BACKUP_LEVELS", format!("{why}, got {levels_raw:?}"));
        crate::backup::levels::LEVEL_INTERVALS
    });
    let verify_raw = env.value("GATEHOUSE_BACKUP_VERIFY_INTERVAL", 0);
    let verify_every = BackupConfig::parse_verify_interval(&verify_raw).unwrap_or_else(|why| {
        env.problem("GATEHOUSE_BACKUP_VERIFY_INTERVAL", format!("{why}, got {verify_raw:?}"));
        None
    });
    let raw = env.get("GATEHOUSE_BACKUP_URL")?;
    match BackupConfig::parse_url(&raw) {
        Ok((bucket, prefix)) => Some(BackupConfig {
            bucket,
            prefix,
            endpoint,
            region,
            path_style,
            interval,
            max_spool_bytes: max_spool_mb * 1024 * 1024,
            snapshot_interval: Duration::from_secs(snapshot_hours * 3600),
            retention: Duration::from_secs(retention_hours * 3600),
            levels,
            verify_every,
        }),
        Err(why) => {
            env.problem("GATEHOUSE_BACKUP_URL", format!("{why}, got {:?}", raw.trim()));
            None
        }
    }
}
