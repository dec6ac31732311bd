-- The sink schema (SPEC section 2): the derived `"ResponseTimingEvent"` table and
-- replytime's own bookkeeping tables. Applied by `Sink::migrate` (src/sink), which
-- checks `replytime_schema_version` first: this file is schema version 1 of the
-- component 'sink'. Idempotent: safe to re-run.
--
-- None of these tables may be in replytime's publication (no feedback loop).

CREATE TABLE IF NOT EXISTS "ResponseTimingEvent" (
    id                        uuid PRIMARY KEY,
    "clientId"                text NOT NULL,
    "leadId"                  text NOT NULL,
    channel                   text NOT NULL,
    "inboundMessageId"        text NOT NULL,
    "inboundSentAt"           timestamptz NOT NULL,

    "setterResponseMessageId" text,
    "setterResponseSentAt"    timestamptz,
    "setterSentByUserId"      text,
    "setterResponseMs"        bigint,

    "aiDraftId"               text,
    "aiResponseMessageId"     text,
    "aiResponseSentAt"        timestamptz,
    "aiResponseMs"            bigint,

    "aiDelayMinSeconds"       integer,
    "aiDelayMaxSeconds"       integer,
    "aiChosenDelaySeconds"    integer,
    "aiActualDelaySeconds"    bigint,
    "aiScheduledRunAt"        timestamptz,
    "aiBackgroundJobId"       text,
    "aiJobStartedAt"          timestamptz,
    "aiJobFinishedAt"         timestamptz,

    "createdAt"               timestamptz NOT NULL DEFAULT now(),
    "updatedAt"               timestamptz NOT NULL DEFAULT now(),
    -- End LSN of the commit of the source transaction that last changed the content.
    "sourceLsn"               pg_lsn
);

-- The upsert key (`ON CONFLICT ("inboundMessageId")`). A unique index rather than a
-- constraint, named as Prisma names it, so an app-created table converges too.
CREATE UNIQUE INDEX IF NOT EXISTS "ResponseTimingEvent_inboundMessageId_key"
    ON "ResponseTimingEvent" ("inboundMessageId");

CREATE INDEX IF NOT EXISTS "ResponseTimingEvent_clientId_inboundSentAt_idx"
    ON "ResponseTimingEvent" ("clientId", "inboundSentAt");
CREATE INDEX IF NOT EXISTS "ResponseTimingEvent_leadId_channel_inboundSentAt_idx"
    ON "ResponseTimingEvent" ("leadId", channel, "inboundSentAt");
CREATE INDEX IF NOT EXISTS "ResponseTimingEvent_setterSentByUserId_idx"
    ON "ResponseTimingEvent" ("setterSentByUserId");
CREATE INDEX IF NOT EXISTS "ResponseTimingEvent_clientId_aiChosenDelaySeconds_idx"
    ON "ResponseTimingEvent" ("clientId", "aiChosenDelaySeconds");

-- The LSN the sink reflects, per slot: written in the same transaction as the rows,
-- and only ever moved forward.
CREATE TABLE IF NOT EXISTS replytime_progress (
    slot       text PRIMARY KEY,
    lsn        pg_lsn NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per component ('sink' here); a version other than the binary's is a
-- fatal error that names the migration or `replytime rebuild`.
CREATE TABLE IF NOT EXISTS replytime_schema_version (
    component text PRIMARY KEY,
    version   int NOT NULL
);
