-- Analytics over the derived rows (SPEC section 7): read-only SQL functions that
-- correlate response times with booking outcomes. The app's dashboard calls them
-- directly; `replytime report` prints them. Documented in the README (Analytics).
--
--   "ResponseTimingEvent" (window on "inboundSentAt", optional "clientId")
--        │ replytime_window_events
--        ├─▶ replytime_section_picks ── one row per lead: its earliest qualifying
--        │        │                     response r (by r, then anchor id) and bucket
--        │        └─▶ ⋈ leads ─▶ replytime_outcome(r) ─▶ replytime_tally per bucket
--        ├─▶ replytime_period_stats ── daily / weekly counts and percentiles
--        └─▶ replytime_weekly_top_setters, replytime_lead_anchors
--   draft sends ⋈ drafts ⋈ leads ─▶ replytime_ai_drafts (first send of each draft)
--
-- The application's tables are read only through replytime_source_leads,
-- replytime_source_drafts and replytime_source_draft_sends (the "source tables"
-- part below), which `replytime report` renders from the [tables] mapping, so a
-- deployment whose tables or columns have other names runs the same functions.
--
-- They run where the source tables and "ResponseTimingEvent" both live (the
-- default deployment: the sink is the source). Every function is STABLE or
-- IMMUTABLE and reads only; the body of each public one is one SELECT in
-- LANGUAGE sql, so the planner inlines it into the caller's query and sees the
-- actual window (index scans on the window, not a generic plan).
--
-- Conventions shared by every function:
--   * window [p_from, p_to) on "inboundSentAt" (p_to exclusive); p_client_id NULL
--     means every client;
--   * p_tz is an IANA zone name; days, weeks, business hours and the day parts of
--     the attribution window and maturity buffer are counted in it (30 days after
--     10:00 is 10:00 thirty local days later, whatever DST did meanwhile), so the
--     results never depend on the session's TimeZone;
--   * ids are compared as bytes (COLLATE "C"), as in SPEC 3.1.
--
-- Idempotent: `CREATE OR REPLACE` everywhere. `replytime report` applies the part
-- above the index marker in one transaction, then the index statements one at a
-- time (CREATE INDEX CONCURRENTLY cannot run in a transaction, and must not block
-- the application's writes on its own tables). It records a digest of what it
-- applied (replytime_analytics_version) and, when the digest differs (another
-- replytime version or mapping), first drops the functions this file defines, so
-- a changed result type never fails CREATE OR REPLACE. `psql -f` runs it as is
-- on a fresh database (after an upgrade, drop the replytime_* functions first).

-- ---- source tables ---------------------------------------------------------
-- The only place that names the application's tables and columns. `replytime
-- report` renders this part from the [tables] config (mapped, quoted names);
-- as written here it is the reference schema. Each function is one inlinable
-- SELECT, so the planner sees through it to the table and its indexes.

CREATE OR REPLACE FUNCTION replytime_source_leads()
RETURNS TABLE (id text, "clientId" text, "appointmentBookedAt" timestamptz,
               "appointmentCanceledAt" timestamptz, "ghlAppointmentId" text,
               "calendlyInviteeUri" text, "calendlyScheduledEventUri" text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT t."id"::text, t."clientId"::text, t."appointmentBookedAt",
           t."appointmentCanceledAt", t."ghlAppointmentId"::text,
           t."calendlyInviteeUri"::text, t."calendlyScheduledEventUri"::text
    FROM "public"."Lead" t
$$;

CREATE OR REPLACE FUNCTION replytime_source_drafts()
RETURNS TABLE (id text, "leadId" text, channel text, "responseDisposition" text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT t."id"::text, t."leadId"::text, t."channel"::text,
           t."responseDisposition"::text
    FROM "public"."AIDraft" t
$$;

-- Outbound messages sent from a draft (the partial index below covers them).
CREATE OR REPLACE FUNCTION replytime_source_draft_sends()
RETURNS TABLE ("aiDraftId" text, "sentAt" timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT t."aiDraftId"::text, t."sentAt"
    FROM "public"."Message" t
    WHERE t."aiDraftId" IS NOT NULL AND t."direction" = 'outbound'
$$;

-- ---- helpers: time ---------------------------------------------------------

-- p_ts + p_interval, with the day/month part added in local time of p_tz and
-- the rest (hours, minutes, ...) as elapsed time.
CREATE OR REPLACE FUNCTION replytime_add_local(p_ts timestamptz, p_interval interval, p_tz text)
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT ((p_ts AT TIME ZONE p_tz) + date_trunc('day', p_interval)) AT TIME ZONE p_tz
           + (p_interval - date_trunc('day', p_interval))
$$;

-- Midnight at the start of p_day in p_tz: what `report --from/--to` mean.
CREATE OR REPLACE FUNCTION replytime_local_midnight(p_day date, p_tz text)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT p_day::timestamp AT TIME ZONE p_tz
$$;

-- Whether p_ts falls in business hours in p_tz: an ISO weekday of p_days
-- (1 = Monday … 7 = Sunday) and a local time in [p_start, p_end); when p_start >
-- p_end the hours wrap past midnight (22:00–06:00).
CREATE OR REPLACE FUNCTION replytime_in_business_hours(
    p_ts timestamptz, p_tz text, p_days integer[], p_start time, p_end time)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT extract(isodow FROM p_ts AT TIME ZONE p_tz)::integer = ANY (p_days)
       AND CASE
               WHEN p_start <= p_end
                   THEN (p_ts AT TIME ZONE p_tz)::time >= p_start
                    AND (p_ts AT TIME ZONE p_tz)::time < p_end
               ELSE (p_ts AT TIME ZONE p_tz)::time >= p_start
                 OR (p_ts AT TIME ZONE p_tz)::time < p_end
           END
$$;

-- Whether an anchor has a setter time that counts: a setter response, and with the
-- business-hours filter on, both the inbound and the response inside the hours.
CREATE OR REPLACE FUNCTION replytime_setter_timed(
    p_inbound_at timestamptz, p_setter_at timestamptz, p_tz text,
    p_business_hours boolean, p_days integer[], p_start time, p_end time)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT p_setter_at IS NOT NULL
       AND (NOT coalesce(p_business_hours, false)
            OR (replytime_in_business_hours(p_inbound_at, p_tz, p_days, p_start, p_end)
                AND replytime_in_business_hours(p_setter_at, p_tz, p_days, p_start, p_end)))
$$;

-- Who answered an anchor first: 'setter', 'ai' or NULL (unanswered); a tie goes
-- to the setter.
CREATE OR REPLACE FUNCTION replytime_first_responder_of(p_setter_at timestamptz, p_ai_at timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
               WHEN p_setter_at IS NOT NULL AND (p_ai_at IS NULL OR p_setter_at <= p_ai_at)
                   THEN 'setter'
               WHEN p_ai_at IS NOT NULL THEN 'ai'
           END
$$;

-- ---- helpers: buckets (lower-inclusive, upper-exclusive) -------------------

CREATE OR REPLACE FUNCTION replytime_setter_bucket(p_ms bigint)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
               WHEN p_ms IS NULL THEN NULL
               WHEN p_ms < 5 * 60000 THEN '< 5 min'
               WHEN p_ms < 15 * 60000 THEN '5-15 min'
               WHEN p_ms < 60 * 60000 THEN '15-60 min'
               WHEN p_ms < 4 * 3600000 THEN '1-4 h'
               WHEN p_ms < 24 * 3600000 THEN '4-24 h'
               ELSE '>= 24 h'
           END
$$;

-- 180–420 s in 60 s steps; the last bucket includes 420.
CREATE OR REPLACE FUNCTION replytime_delay_bucket(p_seconds integer)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
               WHEN p_seconds IS NULL THEN 'unknown'
               WHEN p_seconds < 180 OR p_seconds > 420 THEN 'outside'
               WHEN p_seconds < 240 THEN '180-239 s'
               WHEN p_seconds < 300 THEN '240-299 s'
               WHEN p_seconds < 360 THEN '300-359 s'
               ELSE '360-420 s'
           END
$$;

-- Drift = "aiResponseSentAt" − "aiScheduledRunAt"; a negative drift is '< 30 s'.
CREATE OR REPLACE FUNCTION replytime_drift_bucket(p_drift interval)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
               WHEN p_drift IS NULL THEN NULL
               WHEN p_drift < interval '30 seconds' THEN '< 30 s'
               WHEN p_drift < interval '1 minute' THEN '30-60 s'
               WHEN p_drift < interval '2 minutes' THEN '1-2 min'
               WHEN p_drift < interval '5 minutes' THEN '2-5 min'
               WHEN p_drift < interval '15 minutes' THEN '5-15 min'
               ELSE '>= 15 min'
           END
$$;

-- Every bucket of a section in display order, so empty buckets show as zeros. The
-- labels come from the bucket functions applied to each bucket's lower bound:
-- one source of truth.
CREATE OR REPLACE FUNCTION replytime_bucket_labels(p_section text)
RETURNS TABLE (bucket text, "bucketOrder" integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT replytime_setter_bucket(v.ms), v.ord
    FROM (VALUES (0::bigint, 1), (300000, 2), (900000, 3), (3600000, 4), (14400000, 5),
                 (86400000, 6)) AS v (ms, ord)
    WHERE p_section = 'setter'
    UNION ALL
    SELECT replytime_delay_bucket(v.s), v.ord
    FROM (VALUES (180, 1), (240, 2), (300, 3), (360, 4), (0, 5), (NULL::integer, 6)) AS v (s, ord)
    WHERE p_section = 'ai_delay'
    UNION ALL
    SELECT replytime_drift_bucket(v.d), v.ord
    FROM (VALUES (interval '0', 1), (interval '30 s', 2), (interval '1 min', 3),
                 (interval '2 min', 4), (interval '5 min', 5), (interval '15 min', 6)) AS v (d, ord)
    WHERE p_section = 'ai_drift'
    UNION ALL
    SELECT v.responder, v.ord
    FROM (VALUES ('setter', 1), ('ai', 2)) AS v (responder, ord)
    WHERE p_section = 'first_responder'
$$;

-- ---- helpers: booking outcome ----------------------------------------------

-- Outcome of a lead relative to its response time p_r (SPEC 7), first match
-- wins: 'excluded' (booked at or before r), 'pending' (r after p_to − maturity),
-- 'booked' / 'canceled' (booked in (r, min(p_to, r + window)]; canceled when
-- canceled at or after the booking), 'bookedNoTimestamp' (no booking time but a
-- GHL or Calendly id; empty strings count as no id), else 'notBooked'. The
-- lead's booking columns come as arguments (from replytime_source_leads).
CREATE OR REPLACE FUNCTION replytime_outcome(
    p_r timestamptz, p_booked_at timestamptz, p_canceled_at timestamptz,
    p_ghl_id text, p_invitee_uri text, p_event_uri text, p_to timestamptz,
    p_window interval, p_maturity interval, p_tz text)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE
               WHEN p_booked_at <= p_r THEN 'excluded'
               WHEN p_r > replytime_add_local(p_to, -p_maturity, p_tz) THEN 'pending'
               WHEN p_booked_at <= least(p_to, replytime_add_local(p_r, p_window, p_tz))
                   THEN CASE WHEN p_canceled_at >= p_booked_at THEN 'canceled' ELSE 'booked' END
               WHEN p_booked_at IS NULL
                    AND (nullif(p_ghl_id, '') IS NOT NULL
                         OR nullif(p_invitee_uri, '') IS NOT NULL
                         OR nullif(p_event_uri, '') IS NOT NULL)
                   THEN 'bookedNoTimestamp'
               ELSE 'notBooked'
           END
$$;

-- The counts of one bucket from its leads' outcomes (one per lead). 'canceled'
-- leads are in notBooked too (canceled is a subset of notBooked); leads booked
-- at or before their response are counted in `excluded` only, so booked +
-- notBooked + bookedNoTimestamp + pending + excluded = the bucket's leads.
CREATE OR REPLACE FUNCTION replytime_tally(p_outcomes text[])
RETURNS TABLE (booked bigint, "notBooked" bigint, "bookedNoTimestamp" bigint, pending bigint,
               canceled bigint, eligible bigint, "bookingRate" double precision,
               excluded bigint)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT c.booked, c.not_booked, c.no_timestamp, c.pending, c.canceled,
           c.booked + c.not_booked,
           c.booked::double precision / nullif(c.booked + c.not_booked, 0),
           c.excluded
    FROM (SELECT count(*) FILTER (WHERE u.outcome = 'booked') AS booked,
                 count(*) FILTER (WHERE u.outcome IN ('notBooked', 'canceled')) AS not_booked,
                 count(*) FILTER (WHERE u.outcome = 'bookedNoTimestamp') AS no_timestamp,
                 count(*) FILTER (WHERE u.outcome = 'pending') AS pending,
                 count(*) FILTER (WHERE u.outcome = 'canceled') AS canceled,
                 count(*) FILTER (WHERE u.outcome = 'excluded') AS excluded
          FROM unnest(coalesce(p_outcomes, '{}'::text[])) AS u (outcome)) AS c
$$;

-- ---- helpers: anchors of a window and the per-lead pick --------------------

-- The anchors with "inboundSentAt" in [p_from, p_to), of one client or all. Two
-- branches behind one-time filters, so each uses its own index.
CREATE OR REPLACE FUNCTION replytime_window_events(
    p_from timestamptz, p_to timestamptz, p_client_id text DEFAULT NULL)
RETURNS SETOF "ResponseTimingEvent"
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT e.*
    FROM "ResponseTimingEvent" e
    WHERE p_client_id IS NULL
      AND e."inboundSentAt" >= p_from AND e."inboundSentAt" < p_to
    UNION ALL
    SELECT e.*
    FROM "ResponseTimingEvent" e
    WHERE e."clientId" = p_client_id
      AND e."inboundSentAt" >= p_from AND e."inboundSentAt" < p_to
$$;

-- One row per lead for a section ('setter', 'ai_delay', 'ai_drift',
-- 'first_responder'): its earliest qualifying response r, by r then anchor id,
-- and the bucket of that anchor. The business-hours filter (setter section only)
-- applies before the pick.
CREATE OR REPLACE FUNCTION replytime_section_picks(
    p_section text, p_from timestamptz, p_to timestamptz, p_client_id text, p_tz text,
    p_business_hours boolean, p_business_days integer[], p_business_start time,
    p_business_end time)
RETURNS TABLE (bucket text, "leadId" text, r timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT DISTINCT ON (q."leadId") q.bucket, q."leadId", q.r
    FROM (
        SELECT replytime_setter_bucket(e."setterResponseMs") AS bucket, e."leadId",
               e."setterResponseSentAt" AS r, e."inboundMessageId" AS anchor
        FROM replytime_window_events(p_from, p_to, p_client_id) e
        WHERE p_section = 'setter'
          AND replytime_setter_timed(e."inboundSentAt", e."setterResponseSentAt", p_tz,
                                     p_business_hours, p_business_days, p_business_start,
                                     p_business_end)
        UNION ALL
        SELECT replytime_delay_bucket(e."aiChosenDelaySeconds"), e."leadId",
               e."aiResponseSentAt", e."inboundMessageId"
        FROM replytime_window_events(p_from, p_to, p_client_id) e
        WHERE p_section = 'ai_delay' AND e."aiResponseSentAt" IS NOT NULL
        UNION ALL
        SELECT replytime_drift_bucket(e."aiResponseSentAt" - e."aiScheduledRunAt"), e."leadId",
               e."aiResponseSentAt", e."inboundMessageId"
        FROM replytime_window_events(p_from, p_to, p_client_id) e
        WHERE p_section = 'ai_drift'
          AND e."aiResponseSentAt" IS NOT NULL AND e."aiScheduledRunAt" IS NOT NULL
        UNION ALL
        SELECT replytime_first_responder_of(e."setterResponseSentAt", e."aiResponseSentAt"),
               e."leadId", least(e."setterResponseSentAt", e."aiResponseSentAt"),
               e."inboundMessageId"
        FROM replytime_window_events(p_from, p_to, p_client_id) e
        WHERE p_section = 'first_responder'
          AND (e."setterResponseSentAt" IS NOT NULL OR e."aiResponseSentAt" IS NOT NULL)
    ) AS q
    ORDER BY q."leadId", q.r, q.anchor COLLATE "C"
$$;

-- Every bucket of a section with its outcome counts.
CREATE OR REPLACE FUNCTION replytime_section_buckets(
    p_section text, p_from timestamptz, p_to timestamptz, p_client_id text,
    p_window interval, p_maturity interval, p_tz text, p_business_hours boolean,
    p_business_days integer[], p_business_start time, p_business_end time)
RETURNS TABLE (bucket text, "bucketOrder" integer, booked bigint, "notBooked" bigint,
               "bookedNoTimestamp" bigint, pending bigint, canceled bigint, eligible bigint,
               "bookingRate" double precision, excluded bigint)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    WITH outcomes AS (
        SELECT p.bucket,
               array_agg(replytime_outcome(p.r, l."appointmentBookedAt",
                                           l."appointmentCanceledAt", l."ghlAppointmentId",
                                           l."calendlyInviteeUri", l."calendlyScheduledEventUri",
                                           p_to, p_window, p_maturity, p_tz)) AS outcomes
        FROM replytime_section_picks(p_section, p_from, p_to, p_client_id, p_tz,
                                     p_business_hours, p_business_days, p_business_start,
                                     p_business_end) p
        JOIN replytime_source_leads() l ON l.id = p."leadId"
        GROUP BY p.bucket
    )
    SELECT b.bucket, b."bucketOrder", t.*
    FROM replytime_bucket_labels(p_section) b
    LEFT JOIN outcomes o ON o.bucket = b.bucket
    CROSS JOIN LATERAL replytime_tally(o.outcomes) t
    ORDER BY b."bucketOrder"
$$;

-- ---- public: booking outcome by bucket -------------------------------------

-- Setter response time ("setterResponseMs") vs booking outcome.
CREATE OR REPLACE FUNCTION replytime_setter_buckets(
    p_from timestamptz, p_to timestamptz, p_client_id text DEFAULT NULL,
    p_window interval DEFAULT '30 days', p_maturity interval DEFAULT '7 days',
    p_tz text DEFAULT 'UTC', p_business_hours boolean DEFAULT false,
    p_business_days integer[] DEFAULT '{1,2,3,4,5}', p_business_start time DEFAULT '09:00',
    p_business_end time DEFAULT '17:00')
RETURNS TABLE (bucket text, "bucketOrder" integer, booked bigint, "notBooked" bigint,
               "bookedNoTimestamp" bigint, pending bigint, canceled bigint, eligible bigint,
               "bookingRate" double precision, excluded bigint)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT * FROM replytime_section_buckets('setter', p_from, p_to, p_client_id, p_window,
                                            p_maturity, p_tz, p_business_hours,
                                            p_business_days, p_business_start, p_business_end)
$$;

-- AI chosen delay ("aiChosenDelaySeconds") vs booking outcome.
CREATE OR REPLACE FUNCTION replytime_ai_delay_buckets(
    p_from timestamptz, p_to timestamptz, p_client_id text DEFAULT NULL,
    p_window interval DEFAULT '30 days', p_maturity interval DEFAULT '7 days',
    p_tz text DEFAULT 'UTC')
RETURNS TABLE (bucket text, "bucketOrder" integer, booked bigint, "notBooked" bigint,
               "bookedNoTimestamp" bigint, pending bigint, canceled bigint, eligible bigint,
               "bookingRate" double precision, excluded bigint)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT * FROM replytime_section_buckets('ai_delay', p_from, p_to, p_client_id, p_window,
                                            p_maturity, p_tz, false, NULL, NULL, NULL)
$$;

-- AI drift ("aiResponseSentAt" − "aiScheduledRunAt") vs booking outcome.
CREATE OR REPLACE FUNCTION replytime_ai_drift_buckets(
    p_from timestamptz, p_to timestamptz, p_client_id text DEFAULT NULL,
    p_window interval DEFAULT '30 days', p_maturity interval DEFAULT '7 days',
    p_tz text DEFAULT 'UTC')
RETURNS TABLE (bucket text, "bucketOrder" integer, booked bigint, "notBooked" bigint,
               "bookedNoTimestamp" bigint, pending bigint, canceled bigint, eligible bigint,
               "bookingRate" double precision, excluded bigint)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT * FROM replytime_section_buckets('ai_drift', p_from, p_to, p_client_id, p_window,
                                            p_maturity, p_tz, false, NULL, NULL, NULL)
$$;

-- Setter vs AI: each lead attributed to whoever answered its picked anchor first.
CREATE OR REPLACE FUNCTION replytime_first_responder(
    p_from timestamptz, p_to timestamptz, p_client_id text DEFAULT NULL,
    p_window interval DEFAULT '30 days', p_maturity interval DEFAULT '7 days',
    p_tz text DEFAULT 'UTC')
RETURNS TABLE (bucket text, "bucketOrder" integer, booked bigint, "notBooked" bigint,
               "bookedNoTimestamp" bigint, pending bigint, canceled bigint, eligible bigint,
               "bookingRate" double precision, excluded bigint)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT * FROM replytime_section_buckets('first_responder', p_from, p_to, p_client_id,
                                            p_window, p_maturity, p_tz, false, NULL, NULL,
                                            NULL)
$$;

-- AI drafts by channel × "responseDisposition" vs booking outcome: every draft
-- whose first outbound send falls in [p_from, p_to), r = that send, each lead
-- once per cell at its earliest draft send there. Every cell of the channels
-- email, linkedin and sms (and of any other channel with a counted draft) by the
-- three dispositions is listed, zeros included, like the bucket sections.
CREATE OR REPLACE FUNCTION replytime_ai_drafts(
    p_from timestamptz, p_to timestamptz, p_client_id text DEFAULT NULL,
    p_window interval DEFAULT '30 days', p_maturity interval DEFAULT '7 days',
    p_tz text DEFAULT 'UTC')
RETURNS TABLE (channel text, "responseDisposition" text, booked bigint, "notBooked" bigint,
               "bookedNoTimestamp" bigint, pending bigint, canceled bigint, eligible bigint,
               "bookingRate" double precision, excluded bigint)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    WITH window_sends AS (
        SELECT m."aiDraftId", min(m."sentAt") AS sent_at
        FROM replytime_source_draft_sends() m
        WHERE m."sentAt" >= p_from AND m."sentAt" < p_to
        GROUP BY m."aiDraftId"
    ), first_sends AS (
        SELECT s."aiDraftId", s.sent_at
        FROM window_sends s
        WHERE NOT EXISTS (SELECT 1 FROM replytime_source_draft_sends() m
                          WHERE m."aiDraftId" = s."aiDraftId" AND m."sentAt" < s.sent_at)
    ), picks AS (
        SELECT DISTINCT ON (d.channel, d."responseDisposition", d."leadId")
               d.channel, d."responseDisposition", d."leadId", f.sent_at AS r
        FROM first_sends f
        JOIN replytime_source_drafts() d ON d.id = f."aiDraftId"
        WHERE d."responseDisposition" IN ('AUTO_SENT', 'APPROVED', 'EDITED')
        ORDER BY d.channel, d."responseDisposition", d."leadId", f.sent_at
    ), cells AS (
        SELECT p.channel, p."responseDisposition",
               array_agg(replytime_outcome(p.r, l."appointmentBookedAt",
                                           l."appointmentCanceledAt", l."ghlAppointmentId",
                                           l."calendlyInviteeUri", l."calendlyScheduledEventUri",
                                           p_to, p_window, p_maturity, p_tz)) AS outcomes
        FROM picks p
        JOIN replytime_source_leads() l ON l.id = p."leadId"
        WHERE p_client_id IS NULL OR l."clientId" = p_client_id
        GROUP BY p.channel, p."responseDisposition"
    ), grid AS (
        SELECT ch.channel, disp.disposition, disp.ord
        FROM (SELECT unnest(ARRAY['email', 'linkedin', 'sms']) AS channel
              UNION
              SELECT c.channel FROM cells c) AS ch
        CROSS JOIN unnest(ARRAY['AUTO_SENT', 'APPROVED', 'EDITED'])
                   WITH ORDINALITY AS disp (disposition, ord)
    )
    SELECT g.channel, g.disposition, t.*
    FROM grid g
    LEFT JOIN cells c ON c.channel = g.channel AND c."responseDisposition" = g.disposition
    CROSS JOIN LATERAL replytime_tally(c.outcomes) t
    ORDER BY g.channel COLLATE "C", g.ord
$$;

-- ---- public: timelines and aggregates --------------------------------------

-- One lead's most recent anchors (newest first), optionally inside [p_from, p_to).
CREATE OR REPLACE FUNCTION replytime_lead_anchors(
    p_lead_id text, p_from timestamptz DEFAULT NULL, p_to timestamptz DEFAULT NULL,
    p_limit integer DEFAULT 50)
RETURNS TABLE ("inboundMessageId" text, channel text, "inboundSentAt" timestamptz,
               "firstResponder" text, "setterResponseMs" bigint, "setterSentByUserId" text,
               "setterResponseSentAt" timestamptz, "aiResponseMs" bigint,
               "aiResponseSentAt" timestamptz, "aiChosenDelaySeconds" integer,
               "aiActualDelaySeconds" bigint, "aiScheduledRunAt" timestamptz, "aiDriftMs" bigint)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT e."inboundMessageId", e.channel, e."inboundSentAt",
           replytime_first_responder_of(e."setterResponseSentAt", e."aiResponseSentAt"),
           e."setterResponseMs", e."setterSentByUserId", e."setterResponseSentAt",
           e."aiResponseMs", e."aiResponseSentAt", e."aiChosenDelaySeconds",
           e."aiActualDelaySeconds", e."aiScheduledRunAt",
           floor(extract(epoch FROM e."aiResponseSentAt" - e."aiScheduledRunAt") * 1000)::bigint
    FROM "ResponseTimingEvent" e
    WHERE e."leadId" = p_lead_id
      AND (p_from IS NULL OR e."inboundSentAt" >= p_from)
      AND (p_to IS NULL OR e."inboundSentAt" < p_to)
    ORDER BY e."inboundSentAt" DESC, e."inboundMessageId" COLLATE "C" DESC
    LIMIT p_limit
$$;

-- Anchor counts and response-time percentiles per local day ('day') or ISO week
-- ('week', starting Monday), per client when p_by_client. The setter count and
-- percentiles honour the business-hours filter (both ends inside the hours);
-- the other counts do not.
CREATE OR REPLACE FUNCTION replytime_period_stats(
    p_period text, p_by_client boolean, p_from timestamptz, p_to timestamptz,
    p_client_id text, p_tz text, p_business_hours boolean, p_business_days integer[],
    p_business_start time, p_business_end time)
RETURNS TABLE (period date, "clientId" text, anchors bigint, answered bigint,
               "answeredShare" double precision, "setterAnswered" bigint, "aiAnswered" bigint,
               "setterP50Ms" double precision, "setterP90Ms" double precision,
               "aiP50Ms" double precision, "aiP90Ms" double precision)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT s.period, s.client_id, s.anchors, s.answered,
           s.answered::double precision / nullif(s.anchors, 0),
           s.setter_answered, s.ai_answered, s.setter_p50, s.setter_p90, s.ai_p50, s.ai_p90
    FROM (
        SELECT date_trunc(p_period, e."inboundSentAt" AT TIME ZONE p_tz)::date AS period,
               CASE WHEN p_by_client THEN e."clientId" END AS client_id,
               count(*) AS anchors,
               count(*) FILTER (WHERE e."setterResponseSentAt" IS NOT NULL
                                   OR e."aiResponseSentAt" IS NOT NULL) AS answered,
               count(*) FILTER (WHERE e.setter_timed) AS setter_answered,
               count(*) FILTER (WHERE e."aiResponseSentAt" IS NOT NULL) AS ai_answered,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY e."setterResponseMs")
                   FILTER (WHERE e.setter_timed) AS setter_p50,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY e."setterResponseMs")
                   FILTER (WHERE e.setter_timed) AS setter_p90,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY e."aiResponseMs") AS ai_p50,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY e."aiResponseMs") AS ai_p90
        FROM (SELECT w.*,
                     replytime_setter_timed(w."inboundSentAt", w."setterResponseSentAt", p_tz,
                                            p_business_hours, p_business_days,
                                            p_business_start, p_business_end) AS setter_timed
              FROM replytime_window_events(p_from, p_to, p_client_id) w) AS e
        GROUP BY 1, 2
    ) AS s
$$;

-- Per local day of the window (every day, zeros included): anchors, answered
-- share, p50/p90 of setter and AI response times in ms.
CREATE OR REPLACE FUNCTION replytime_daily(
    p_from timestamptz, p_to timestamptz, p_client_id text DEFAULT NULL,
    p_tz text DEFAULT 'UTC', p_business_hours boolean DEFAULT false,
    p_business_days integer[] DEFAULT '{1,2,3,4,5}', p_business_start time DEFAULT '09:00',
    p_business_end time DEFAULT '17:00')
RETURNS TABLE (day date, anchors bigint, answered bigint, "answeredShare" double precision,
               "setterAnswered" bigint, "aiAnswered" bigint, "setterP50Ms" double precision,
               "setterP90Ms" double precision, "aiP50Ms" double precision,
               "aiP90Ms" double precision)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT d.day, coalesce(s.anchors, 0), coalesce(s.answered, 0), s."answeredShare",
           coalesce(s."setterAnswered", 0), coalesce(s."aiAnswered", 0),
           s."setterP50Ms", s."setterP90Ms", s."aiP50Ms", s."aiP90Ms"
    FROM (SELECT g::date AS day
          FROM generate_series((p_from AT TIME ZONE p_tz)::date::timestamp,
                               ((p_to - interval '1 microsecond') AT TIME ZONE p_tz)::date::timestamp,
                               interval '1 day') AS g) AS d
    LEFT JOIN replytime_period_stats('day', false, p_from, p_to, p_client_id, p_tz,
                                     p_business_hours, p_business_days, p_business_start,
                                     p_business_end) s ON s.period = d.day
    ORDER BY d.day
$$;

-- Per client and ISO week (Monday start, local time; the first and last weeks
-- hold only the part inside the window): anchors, answered share, percentiles.
CREATE OR REPLACE FUNCTION replytime_weekly_summary(
    p_from timestamptz, p_to timestamptz, p_client_id text DEFAULT NULL,
    p_tz text DEFAULT 'UTC', p_business_hours boolean DEFAULT false,
    p_business_days integer[] DEFAULT '{1,2,3,4,5}', p_business_start time DEFAULT '09:00',
    p_business_end time DEFAULT '17:00')
RETURNS TABLE ("weekStart" date, "clientId" text, anchors bigint, answered bigint,
               "answeredShare" double precision, "setterAnswered" bigint, "aiAnswered" bigint,
               "setterP50Ms" double precision, "setterP90Ms" double precision,
               "aiP50Ms" double precision, "aiP90Ms" double precision)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT s.*
    FROM replytime_period_stats('week', true, p_from, p_to, p_client_id, p_tz,
                                p_business_hours, p_business_days, p_business_start,
                                p_business_end) s
    ORDER BY s.period, s."clientId" COLLATE "C"
$$;

-- Per client and ISO week, the p_top setters by answered anchors (more first),
-- then median setter response time (faster first), then user id.
CREATE OR REPLACE FUNCTION replytime_weekly_top_setters(
    p_from timestamptz, p_to timestamptz, p_client_id text DEFAULT NULL,
    p_tz text DEFAULT 'UTC', p_business_hours boolean DEFAULT false,
    p_business_days integer[] DEFAULT '{1,2,3,4,5}', p_business_start time DEFAULT '09:00',
    p_business_end time DEFAULT '17:00', p_top integer DEFAULT 5)
RETURNS TABLE ("weekStart" date, "clientId" text, rank bigint, "setterUserId" text,
               answered bigint, "medianMs" double precision)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT r.week, r."clientId", r.rank, r.setter, r.answered, r.median
    FROM (
        SELECT s.*,
               row_number() OVER (PARTITION BY s.week, s."clientId"
                                  ORDER BY s.answered DESC, s.median, s.setter COLLATE "C") AS rank
        FROM (
            SELECT date_trunc('week', e."inboundSentAt" AT TIME ZONE p_tz)::date AS week,
                   e."clientId", e."setterSentByUserId" AS setter, count(*) AS answered,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY e."setterResponseMs") AS median
            FROM replytime_window_events(p_from, p_to, p_client_id) e
            WHERE e."setterSentByUserId" IS NOT NULL
              AND replytime_setter_timed(e."inboundSentAt", e."setterResponseSentAt", p_tz,
                                         p_business_hours, p_business_days, p_business_start,
                                         p_business_end)
            GROUP BY 1, 2, 3
        ) AS s
    ) AS r
    WHERE r.rank <= p_top
    ORDER BY r.week, r."clientId" COLLATE "C", r.rank
$$;

-- ---- indexes ---------------------------------------------------------------
-- Below this marker: CREATE INDEX statements only, one per `;`, no `;` in comments.
-- sink.sql already has ("clientId", "inboundSentAt") for one client's window and
-- ("leadId", channel, "inboundSentAt") for a lead's timeline.

-- The window of every client (p_client_id NULL).
CREATE INDEX CONCURRENTLY IF NOT EXISTS "ResponseTimingEvent_inboundSentAt_idx"
    ON "ResponseTimingEvent" ("inboundSentAt");

-- Draft sends in a window (replytime_ai_drafts): small (only messages sent from a
-- draft), and covers the draft id for an index-only scan.
CREATE INDEX CONCURRENTLY IF NOT EXISTS "Message_draftSend_sentAt_idx"
    ON "public"."Message" ("sentAt") INCLUDE ("aiDraftId")
    WHERE "aiDraftId" IS NOT NULL AND "direction" = 'outbound';
