-- Test and verification support for the batch oracle (src/oracle). NOT part of the
-- application schema and never installed by `replytime run`.
--
-- The delay bounds of SPEC 3.6 are those of the campaign of a job's lead *when the
-- job was inserted*: history that a snapshot of the tables cannot give. These
-- triggers record them per job, exactly as `oracle::SourceTables::apply` does:
--   * insert of a job: record the lead's campaign's bounds (180/420 when the lead
--     or the campaign is unknown; a NULL bound uses 180 resp. 420);
--   * delete: forget the record; truncate: forget every record;
--   * update that changes the id: a new job for the record (delete + insert, with
--     the bounds in force now); any other update leaves the record alone.
-- Campaign and lead changes never touch the records.
--
-- The table must not be in replytime's publication. Idempotent: safe to re-run.

CREATE TABLE IF NOT EXISTS replytime_oracle_job_delay (
    job_id      text PRIMARY KEY,
    min_seconds int  NOT NULL,
    max_seconds int  NOT NULL
);

CREATE OR REPLACE FUNCTION replytime_oracle_record_job_delay(p_job_id text, p_lead_id text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_min int;
    v_max int;
BEGIN
    SELECT c."aiAutoSendDelayMinSeconds", c."aiAutoSendDelayMaxSeconds"
      INTO v_min, v_max
      FROM "Lead" l
      JOIN "EmailCampaign" c ON c.id = l."emailCampaignId"
     WHERE l.id = p_lead_id;
    INSERT INTO replytime_oracle_job_delay (job_id, min_seconds, max_seconds)
    VALUES (p_job_id, coalesce(v_min, 180), coalesce(v_max, 420))
    ON CONFLICT (job_id) DO UPDATE
       SET min_seconds = EXCLUDED.min_seconds, max_seconds = EXCLUDED.max_seconds;
END
$$;

CREATE OR REPLACE FUNCTION replytime_oracle_job_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM replytime_oracle_record_job_delay(NEW.id, NEW."leadId");
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION replytime_oracle_job_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM replytime_oracle_job_delay WHERE job_id = OLD.id;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION replytime_oracle_job_renamed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM replytime_oracle_job_delay WHERE job_id = OLD.id;
    PERFORM replytime_oracle_record_job_delay(NEW.id, NEW."leadId");
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION replytime_oracle_jobs_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM replytime_oracle_job_delay;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER replytime_oracle_job_inserted
    AFTER INSERT ON "BackgroundJob"
    FOR EACH ROW EXECUTE FUNCTION replytime_oracle_job_inserted();

CREATE OR REPLACE TRIGGER replytime_oracle_job_deleted
    AFTER DELETE ON "BackgroundJob"
    FOR EACH ROW EXECUTE FUNCTION replytime_oracle_job_deleted();

CREATE OR REPLACE TRIGGER replytime_oracle_job_renamed
    AFTER UPDATE OF id ON "BackgroundJob"
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION replytime_oracle_job_renamed();

CREATE OR REPLACE TRIGGER replytime_oracle_jobs_truncated
    AFTER TRUNCATE ON "BackgroundJob"
    FOR EACH STATEMENT EXECUTE FUNCTION replytime_oracle_jobs_truncated();
