-- PostgreSQL re-evaluates every CHECK constraint of a table on every updated row, also when an UPDATE only
-- sets last_seen_at, so the heartbeat flush paid for the name and token_hash checks on each runtime it wrote
-- (about 1.4 µs a row, 12% of the flush's PostgreSQL CPU on the benchmark machine). A domain's check runs
-- only when a value is assigned to the column (INSERT, or an UPDATE that sets it), so the same rules, as
-- domains, cost the flush nothing. status keeps its table CHECK: it is cheap, and the flush never sets it.
-- Changing a column to a domain with a check rewrites the table once, under an exclusive lock.
CREATE DOMAIN runtime_name AS text
    CONSTRAINT runtime_name_length CHECK (length(VALUE) BETWEEN 1 AND 200);
CREATE DOMAIN sha256_hex AS text
    CONSTRAINT sha256_hex_format CHECK (length(VALUE) = 64 AND VALUE ~ '^[0-9a-f]+$');

ALTER TABLE runtimes
    DROP CONSTRAINT runtimes_name_check,
    DROP CONSTRAINT runtimes_token_hash_check,
    ALTER COLUMN name TYPE runtime_name,
    ALTER COLUMN token_hash TYPE sha256_hex;
