-- The log of applied mutations: each one's index (the caller's: a local counter now, the Raft log index later),
-- kind and JSON, for the last entries (trimmed by apply). `meta.last_applied` is written in the same
-- transaction as the mutation, so a restart knows exactly what control.db holds. This is the seam openraft
-- will replace.
CREATE TABLE control_log (
    idx      INTEGER PRIMARY KEY,
    kind     TEXT NOT NULL,
    mutation TEXT NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('last_applied', '0');
