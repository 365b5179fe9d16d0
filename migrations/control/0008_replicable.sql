-- Cluster I: a deterministic, replicable control plane.
-- * Every log entry records its outcome: a refused mutation (a conflict, a missing tenant) is an entry like any
--   other, applied as "nothing changed", so every node's last_applied moves alike.
-- * A tenant names its home node (the node that keeps its file; NULL for tenants made before this column,
--   adopted by the first node that starts on this file) and carries an incarnation id, written into its file,
--   so start-up reconciliation tells a live tenant's file from one left by an archived tenant of the same slug.
-- * Plugin components reach the log in chunks of at most 512 KiB, grouped by an upload id the proposer made
--   (two tenants uploading the same bytes at once never share chunks), and are assembled and checked against
--   the whole component's SHA-256 by the AddPluginVersion entry that consumes them.
ALTER TABLE control_log ADD COLUMN outcome TEXT NOT NULL DEFAULT '{"result":"applied"}';
ALTER TABLE tenants ADD COLUMN home_node INTEGER;
ALTER TABLE tenants ADD COLUMN incarnation TEXT;
CREATE TABLE blob_chunks (
    upload     TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    slug       TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    total      INTEGER NOT NULL,
    data       BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (upload, seq)
);
CREATE INDEX blob_chunks_slug ON blob_chunks (slug);
