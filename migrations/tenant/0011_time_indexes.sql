-- Dashboards: the tenant overview plots rows per hour of the last 24 hours or per day of the last 30 days. With
-- these indexes each count reads only the rows of its range, not the whole table (the audit log and the outbox
-- only grow).
--   audit_by_type_at  sign-ins succeeded / failed by time (type IN (...) AND at in range); also serves the
--                     audit log filtered by type and time
--   outbox_created    messages queued by time
--   outbox_settled    messages sent or dead by when they settled (status IN (...) AND updated_at in range);
--                     partial, so rows waiting or being sent are not in it and claiming one costs nothing more
CREATE INDEX audit_by_type_at ON audit_log (type, at);
CREATE INDEX outbox_created ON outbox (created_at);
CREATE INDEX outbox_settled ON outbox (status, updated_at) WHERE status IN ('sent', 'dead');
