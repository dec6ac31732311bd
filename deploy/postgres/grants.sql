-- Least-privilege role for replytime (SPEC 6). Run once per database as a superuser
-- (or the owner of the application's tables with CREATEROLE), with psql connected
-- to the CRM database:
--
--   psql "postgres://admin@db/crm" -v ON_ERROR_STOP=1 -f deploy/postgres/grants.sql
--   psql "postgres://admin@db/crm" -c '\password replytime'
--
-- What replytime does on the source, and the privilege each needs:
--
--   what                                              needs
--   ------------------------------------------------  ----------------------------------
--   replication connection, CREATE_REPLICATION_SLOT   LOGIN, REPLICATION
--     (pg_create_logical_replication_slot), reading
--     the slot, pg_drop_replication_slot (teardown)
--   initial load / backfill: SELECT the five tables   SELECT on the tables, USAGE on
--     at the slot's exported snapshot                   the schema
--   CREATE PUBLICATION ... FOR TABLE                  ownership of every listed table:
--                                                       done by an admin, below
--   DROP PUBLICATION (teardown, only of a             ownership of the publication
--     publication replytime created)
--   pg_logical_emit_message heartbeat                 nothing: EXECUTE is PUBLIC's
--   pg_control_system(), pg_current_wal_lsn(),        nothing: PUBLIC
--     pg_replication_slots (failover and lag checks)
--   sink migration (schema/sink.sql on every start:   CREATE on the schema, ownership of
--     CREATE TABLE/INDEX IF NOT EXISTS), upserts,       its four tables
--     deletes, progress row
--
-- pg_hba.conf: a logical replication connection matches entries for the database
-- name (like an ordinary connection), not the `replication` keyword, which is for
-- physical replication only. Use hostssl with scram-sha-256.
--
-- Names: role replytime, schema public, the reference table names, publication
-- replytime. Adjust them to REPLYTIME_PUBLICATION and the [tables] mapping.

-- The role. REPLICATION is what pg_create_logical_replication_slot and the
-- walsender check; it does not bypass table privileges. No password here: set it
-- with \password so it never lands in a file or the shell history.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'replytime') THEN
        CREATE ROLE replytime WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE;
    ELSE
        ALTER ROLE replytime WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;

-- CONNECT for the connection; CREATE on the database only so the role can own the
-- publication below (PostgreSQL requires it of a publication's owner). It allows
-- creating schemas and publications, nothing on existing objects.
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT, CREATE ON DATABASE %I TO replytime', current_database());
END
$$;

-- Source tables: read-only, and only the five replytime reads. The initial load and
-- `replytime backfill` read them; streaming does not need SELECT, but a missing
-- grant would surface only at the first backfill.
GRANT USAGE ON SCHEMA public TO replytime;
GRANT SELECT ON TABLE
    public."Lead",
    public."EmailCampaign",
    public."Message",
    public."AIDraft",
    public."BackgroundJob"
TO replytime;

-- The publication. Adding a table to a publication requires owning the table,
-- which replytime must not (it could then ALTER or DROP the application's data),
-- so an admin creates it here and replytime finds it on start. Never add
-- "ResponseTimingEvent" or replytime_* tables (no feedback loop).
--
-- Column lists: only the columns replytime reads are published, so message
-- bodies, draft contents and other content never leave the server. A column list
-- must cover the table's replica identity, else the application's own UPDATE and
-- DELETE fail ("Column list used by the publication does not cover the replica
-- identity", SPEC 5), so a table whose replica identity the list does not cover
-- (REPLICA IDENTITY FULL, which sharding needs, or an identity index on other
-- columns) is published with every column: then only TLS protects its content.
-- The lists are the reference column names; adjust them with the [tables] mapping.
--
-- An existing publication is left alone. To give one made by an earlier version
-- of this script its column lists, run the ALTER PUBLICATION replytime SET TABLE
-- ... that the NOTICE below prints (with a running replytime: changes written
-- before the ALTER are still sent with every column).
DO $$
DECLARE
    wanted constant jsonb := '{
        "Lead":          ["id", "clientId", "emailCampaignId"],
        "EmailCampaign": ["id", "aiAutoSendDelayMinSeconds", "aiAutoSendDelayMaxSeconds",
                          "responseMode"],
        "Message":       ["id", "leadId", "channel", "direction", "sentBy", "sentByUserId",
                          "aiDraftId", "sentAt"],
        "AIDraft":       ["id", "leadId", "triggerMessageId", "channel",
                          "responseDisposition"],
        "BackgroundJob": ["id", "type", "leadId", "messageId", "draftId", "runAt",
                          "startedAt", "finishedAt", "createdAt"]
    }';
    entries text[] := '{}';
    tbl text;
    cols text[];
    identity "char";
    identity_cols text[];
BEGIN
    FOR tbl, cols IN
        SELECT key, ARRAY(SELECT jsonb_array_elements_text(value)) FROM jsonb_each(wanted)
    LOOP
        SELECT c.relreplident,
               coalesce((SELECT array_agg(a.attname::text) FROM pg_index i
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                         WHERE i.indrelid = c.oid
                           AND ((c.relreplident = 'd' AND i.indisprimary)
                             OR (c.relreplident = 'i' AND i.indisreplident))), '{}')
          INTO identity, identity_cols
          FROM pg_class c
         WHERE c.oid = format('public.%I', tbl)::regclass;
        IF identity <> 'f' AND identity_cols <@ cols THEN
            entries := entries || format('public.%I (%s)', tbl,
                (SELECT string_agg(format('%I', col), ', ') FROM unnest(cols) AS col));
        ELSE
            RAISE NOTICE 'replytime: % is published with every column (its replica identity is not covered by the columns replytime reads); only TLS protects its content', tbl;
            entries := entries || format('public.%I', tbl);
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'replytime') THEN
        RAISE NOTICE 'replytime: publication replytime exists and is left as it is; to publish only replytime''s columns: ALTER PUBLICATION replytime SET TABLE %',
            array_to_string(entries, ', ');
    ELSE
        EXECUTE format('CREATE PUBLICATION replytime FOR TABLE %s WITH (publish = %L)',
                       array_to_string(entries, ', '), 'insert, update, delete, truncate');
    END IF;
END
$$;
-- `replytime teardown` drops only a publication replytime created (it records
-- that in the publication's comment): this one stays, and `replytime backfill` /
-- `run` find it again. Retiring replytime, an admin drops it
-- (`DROP PUBLICATION replytime`). Owned by replytime so the role can alter it if
-- needed. Stricter alternative: skip this and the CREATE grant above.
ALTER PUBLICATION replytime OWNER TO replytime;

-- Sink tables. replytime applies schema/sink.sql on every start (idempotent
-- CREATE ... IF NOT EXISTS), which needs CREATE on the schema even when the
-- tables exist, and ownership of the tables for their indexes. With CREATE it
-- creates and owns "ResponseTimingEvent", replytime_progress,
-- replytime_schema_version and replytime_writers (the sink's writers) itself.
GRANT CREATE ON SCHEMA public TO replytime;

-- If the application (e.g. a Prisma migration) already created
-- "ResponseTimingEvent", hand it over; ownership includes ALL privileges.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['ResponseTimingEvent', 'replytime_progress', 'replytime_schema_version', 'replytime_writers'] LOOP
        IF to_regclass(format('public.%I', t)) IS NOT NULL THEN
            EXECUTE format('ALTER TABLE public.%I OWNER TO replytime', t);
        END IF;
    END LOOP;
END
$$;

-- Readers of the derived rows (analysts, the application) need only SELECT; grant
-- it from the owner once the table exists, e.g.:
--   SET ROLE replytime;
--   GRANT SELECT ON "ResponseTimingEvent" TO crm_app;
--   RESET ROLE;
