-- A client that is a resource server may introspect the tokens of every client of its tenant (RFC 7662 §4);
-- any other client sees only its own tokens as active.
ALTER TABLE oauth_clients ADD COLUMN resource_server INTEGER NOT NULL DEFAULT 0;
