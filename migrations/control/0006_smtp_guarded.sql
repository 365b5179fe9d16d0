-- SMTP settings saved by a tenant-scoped admin (not an operator) are "guarded": at send time the host is resolved
-- and mail goes only to an address that passes the private-address guard, so a name that later resolves inward
-- (DNS rebinding) reaches nothing internal.
ALTER TABLE tenant_smtp ADD COLUMN guarded INTEGER NOT NULL DEFAULT 0;
