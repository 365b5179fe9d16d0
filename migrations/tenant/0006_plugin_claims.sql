-- Claims a post-login plugin added: kept with the session, copied into the OAuth token family at code exchange
-- so refreshed tokens carry them too. JSON objects.
ALTER TABLE sessions ADD COLUMN claims TEXT NOT NULL DEFAULT '{}';
ALTER TABLE oauth_families ADD COLUMN claims TEXT NOT NULL DEFAULT '{}';
