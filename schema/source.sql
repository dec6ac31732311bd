-- Reference schema of the CRM's source tables (SPEC section 1), as a Prisma app
-- would create them: quoted camelCase identifiers, `text` ids, `timestamptz` times,
-- no foreign keys (rows may arrive in any order).
--
-- replytime reads only the columns listed in SPEC section 1; the others (message
-- bodies, booking columns) exist so tests exercise what a real deployment has:
-- columns dropped at decode, TOASTed bodies, analytics joins.
--
-- Only `id` is NOT NULL: a real CRM can hold rows replytime cannot place (a
-- message without a lead), and those must reach the quarantine, not fail here.
-- Replica identity stays DEFAULT (the primary key): replytime never changes it.
--
-- Idempotent: safe to re-run.

CREATE TABLE IF NOT EXISTS "EmailCampaign" (
    id                          text PRIMARY KEY,
    name                        text,
    "aiAutoSendDelayMinSeconds" integer DEFAULT 180,
    "aiAutoSendDelayMaxSeconds" integer DEFAULT 420,
    "responseMode"              text,
    "createdAt"                 timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS "Lead" (
    id                          text PRIMARY KEY,
    "clientId"                  text,
    "emailCampaignId"           text,
    "appointmentBookedAt"       timestamptz,
    "appointmentCanceledAt"     timestamptz,
    "ghlAppointmentId"          text,
    "calendlyInviteeUri"        text,
    "calendlyScheduledEventUri" text,
    "createdAt"                 timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS "Message" (
    id             text PRIMARY KEY,
    "leadId"       text,
    channel        text,
    direction      text,
    "sentBy"       text,
    "sentByUserId" text,
    "aiDraftId"    text,
    "sentAt"       timestamptz,
    body           text,
    "createdAt"    timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS "AIDraft" (
    id                    text PRIMARY KEY,
    "leadId"              text,
    "triggerMessageId"    text,
    channel               text,
    "responseDisposition" text,
    content               text,
    "createdAt"           timestamptz DEFAULT now()
);

-- One draft per (inbound, channel): the AI response rule of SPEC 3.5 relies on it.
CREATE UNIQUE INDEX IF NOT EXISTS "AIDraft_triggerMessageId_channel_key"
    ON "AIDraft" ("triggerMessageId", channel);

CREATE TABLE IF NOT EXISTS "BackgroundJob" (
    id           text PRIMARY KEY,
    type         text,
    "leadId"     text,
    "messageId"  text,
    "draftId"    text,
    "runAt"      timestamptz,
    "startedAt"  timestamptz,
    "finishedAt" timestamptz,
    "createdAt"  timestamptz DEFAULT now()
);

-- What the app's own queries use (and what a CRM of this shape has anyway).
CREATE INDEX IF NOT EXISTS "Message_leadId_channel_sentAt_idx"
    ON "Message" ("leadId", channel, "sentAt");
CREATE INDEX IF NOT EXISTS "Message_aiDraftId_idx" ON "Message" ("aiDraftId");
CREATE INDEX IF NOT EXISTS "BackgroundJob_messageId_idx" ON "BackgroundJob" ("messageId");
