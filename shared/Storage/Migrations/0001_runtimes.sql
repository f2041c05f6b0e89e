-- Runtimes: worker agents that register once and then heartbeat.
-- HOT updates: the flush changes only last_seen_at, so last_seen_at is in no index, and fillfactor
-- leaves room on each page for the new row version. Only a status change (rare) touches an index.
CREATE TABLE runtimes (
    id           uuid        PRIMARY KEY,
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status       text        NOT NULL DEFAULT 'offline' CONSTRAINT runtimes_status_check CHECK (status IN ('online', 'offline')),
    last_seen_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    metadata     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    token_hash   text        NOT NULL CHECK (token_hash ~ '^[0-9a-f]{64}$')
) WITH (fillfactor = 70);

-- The sweeper walks the online runtimes in id order; status is the predicate, never last_seen_at.
CREATE INDEX runtimes_online_id ON runtimes (id) WHERE status = 'online';
