//! The analytics SQL of one deployment: `schema/analytics.sql` with its "source
//! tables" part rendered from the `[tables]` mapping. Pure: a mapping in, SQL out.
//!
//! ```text
//!  analytics.sql ─┬─ header, "source tables" comment
//!                 ├─ replytime_source_* functions  ◀── rendered from [tables]
//!                 ├─ everything else (reads the application's tables only
//!                 │  through replytime_source_*)
//!                 └─ index marker ─ CREATE INDEX …  ◀── rendered (the "Message" one)
//! ```
//!
//! The file as written is the rendering of the default mapping (a unit test
//! holds them equal), so `psql -f schema/analytics.sql` and `replytime report`
//! install the same functions on the reference schema. Every name is quoted as an
//! identifier, so mapped names in any case, or with spaces or quotes, work.

use crate::tables::TableMapping;

pub(super) const ANALYTICS_SQL: &str = include_str!("../../../schema/analytics.sql");
/// Everything below this line of analytics.sql is CREATE INDEX statements.
pub(super) const INDEX_MARKER: &str = "-- ---- indexes";
/// The rendered part starts at the first source function and ends before this.
const SOURCE_START: &str = "CREATE OR REPLACE FUNCTION replytime_source_leads()";
const SOURCE_END: &str = "-- ---- helpers: time";
/// The index on the sink table (its name is not configurable).
const SINK_INDEX: &str = "CREATE INDEX CONCURRENTLY IF NOT EXISTS \
     \"ResponseTimingEvent_inboundSentAt_idx\" ON \"ResponseTimingEvent\" (\"inboundSentAt\")";
const SINK_INDEX_NAME: &str = "\"ResponseTimingEvent_inboundSentAt_idx\"";
/// Postgres truncates identifiers to 63 bytes.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// One index the report makes sure of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct IndexSpec {
    /// Quoted, schema-qualified when the table is: what `to_regclass` takes.
    pub qualified_name: String,
    pub statement: String,
}

/// The SQL `report` applies for a mapping.
#[derive(Clone, Debug)]
pub(super) struct AnalyticsSql {
    /// The function part, in one transaction.
    pub functions: String,
    pub indexes: Vec<IndexSpec>,
}

/// `name` as a quoted identifier (`"` doubled).
pub(super) fn quote_ident(name: &str) -> String {
    crate::source::admin::quote_ident(name)
}

/// The mapped timestamp columns whose type is `timestamp` without time zone,
/// read as UTC (Prisma's convention, as the daemon reads them, SPEC 8); the
/// others are `timestamptz`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct NaiveColumns {
    pub lead: Vec<String>,
    pub message: Vec<String>,
}

/// `t."col"`, or `(t."col" AT TIME ZONE 'UTC')` for a `timestamp` column, so a
/// naive time means UTC whatever the session's time zone (the report sets it
/// to --tz).
fn instant(column: &str, naive: &[String]) -> String {
    if naive.iter().any(|c| c == column) {
        format!("(t.{} AT TIME ZONE 'UTC')", quote_ident(column))
    } else {
        format!("t.{}", quote_ident(column))
    }
}

/// The analytics SQL with the source functions and indexes of `mapping`.
pub(super) fn render(mapping: &TableMapping, naive: &NaiveColumns) -> anyhow::Result<AnalyticsSql> {
    check_names(mapping)?;
    let (functions, _) = ANALYTICS_SQL
        .split_once(INDEX_MARKER)
        .expect("schema/analytics.sql has the index marker");
    let start = functions
        .find(SOURCE_START)
        .expect("analytics.sql defines replytime_source_leads");
    let end = functions
        .find(SOURCE_END)
        .expect("analytics.sql has the time helpers");
    let functions = format!(
        "{}{}{}",
        &functions[..start],
        source_functions(mapping, naive),
        &functions[end..]
    );
    Ok(AnalyticsSql {
        functions,
        indexes: index_specs(mapping),
    })
}

/// Names that would end the `$$` quoting of a function body cannot be rendered.
fn check_names(mapping: &TableMapping) -> anyhow::Result<()> {
    let b = &mapping.lead_booking;
    let names = [
        ("tables.schema", &mapping.schema),
        ("tables.lead.table", &mapping.lead.table),
        ("tables.lead.id", &mapping.lead.id),
        ("tables.lead.client_id", &mapping.lead.client_id),
        (
            "tables.lead_booking.appointment_booked_at",
            &b.appointment_booked_at,
        ),
        (
            "tables.lead_booking.appointment_canceled_at",
            &b.appointment_canceled_at,
        ),
        (
            "tables.lead_booking.ghl_appointment_id",
            &b.ghl_appointment_id,
        ),
        (
            "tables.lead_booking.calendly_invitee_uri",
            &b.calendly_invitee_uri,
        ),
        (
            "tables.lead_booking.calendly_scheduled_event_uri",
            &b.calendly_scheduled_event_uri,
        ),
        ("tables.ai_draft.table", &mapping.ai_draft.table),
        ("tables.ai_draft.id", &mapping.ai_draft.id),
        ("tables.ai_draft.lead_id", &mapping.ai_draft.lead_id),
        ("tables.ai_draft.channel", &mapping.ai_draft.channel),
        (
            "tables.ai_draft.response_disposition",
            &mapping.ai_draft.response_disposition,
        ),
        ("tables.message.table", &mapping.message.table),
        ("tables.message.ai_draft_id", &mapping.message.ai_draft_id),
        ("tables.message.sent_at", &mapping.message.sent_at),
        ("tables.message.direction", &mapping.message.direction),
    ];
    for (key, name) in names {
        if name.is_empty() || name.contains("$$") || name.contains('\0') {
            anyhow::bail!(
                "bad config: {key}: {name:?} cannot be used by the analytics SQL (empty, or holds \"$$\" or a NUL)"
            );
        }
    }
    Ok(())
}

/// The three `replytime_source_*` functions: the only SQL that names the
/// application's tables and columns.
fn source_functions(mapping: &TableMapping, naive: &NaiveColumns) -> String {
    let q = quote_ident;
    let (lead, b, draft, message) = (
        &mapping.lead,
        &mapping.lead_booking,
        &mapping.ai_draft,
        &mapping.message,
    );
    let table = |name: &str| format!("{}.{}", q(&mapping.schema), q(name));
    format!(
        r#"CREATE OR REPLACE FUNCTION replytime_source_leads()
RETURNS TABLE (id text, "clientId" text, "appointmentBookedAt" timestamptz,
               "appointmentCanceledAt" timestamptz, "ghlAppointmentId" text,
               "calendlyInviteeUri" text, "calendlyScheduledEventUri" text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT t.{}::text, t.{}::text, {},
           {}, t.{}::text,
           t.{}::text, t.{}::text
    FROM {} t
$$;

CREATE OR REPLACE FUNCTION replytime_source_drafts()
RETURNS TABLE (id text, "leadId" text, channel text, "responseDisposition" text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT t.{}::text, t.{}::text, t.{}::text,
           t.{}::text
    FROM {} t
$$;

-- Outbound messages sent from a draft (the partial index below covers them).
CREATE OR REPLACE FUNCTION replytime_source_draft_sends()
RETURNS TABLE ("aiDraftId" text, "sentAt" timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT t.{}::text, {}
    FROM {} t
    WHERE t.{} IS NOT NULL AND t.{} = 'outbound'
$$;

"#,
        q(&lead.id),
        q(&lead.client_id),
        instant(&b.appointment_booked_at, &naive.lead),
        instant(&b.appointment_canceled_at, &naive.lead),
        q(&b.ghl_appointment_id),
        q(&b.calendly_invitee_uri),
        q(&b.calendly_scheduled_event_uri),
        table(&lead.table),
        q(&draft.id),
        q(&draft.lead_id),
        q(&draft.channel),
        q(&draft.response_disposition),
        table(&draft.table),
        q(&message.ai_draft_id),
        instant(&message.sent_at, &naive.message),
        table(&message.table),
        q(&message.ai_draft_id),
        q(&message.direction),
    )
}

/// The sink table's window index and the partial index of draft sends on the
/// mapped message table (created in that table's schema).
fn index_specs(mapping: &TableMapping) -> Vec<IndexSpec> {
    let q = quote_ident;
    let message = &mapping.message;
    let name = truncate(&format!("{}_draftSend_sentAt_idx", message.table));
    let statement = format!(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {}.{} ({}) INCLUDE ({}) WHERE {} IS NOT NULL AND {} = 'outbound'",
        q(&name),
        q(&mapping.schema),
        q(&message.table),
        q(&message.sent_at),
        q(&message.ai_draft_id),
        q(&message.ai_draft_id),
        q(&message.direction),
    );
    vec![
        IndexSpec {
            qualified_name: SINK_INDEX_NAME.to_string(),
            statement: SINK_INDEX.to_string(),
        },
        IndexSpec {
            qualified_name: format!("{}.{}", q(&mapping.schema), q(&name)),
            statement,
        },
    ]
}

/// At most 63 bytes, cut at a character boundary.
fn truncate(name: &str) -> String {
    let mut end = name.len().min(MAX_IDENTIFIER_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

/// The names of the functions `sql` defines (what an upgrade drops first).
pub(super) fn function_names(sql: &str) -> Vec<String> {
    let mut names: Vec<String> = sql
        .split("CREATE OR REPLACE FUNCTION ")
        .skip(1)
        .filter_map(|rest| rest.split('(').next())
        .map(|name| name.trim().to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statements below the index marker of the file, whitespace normalized.
    fn file_index_statements() -> Vec<String> {
        let (_, part) = ANALYTICS_SQL.split_once(INDEX_MARKER).unwrap();
        let code: String = part
            .lines()
            .filter(|line| !line.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        code.split(';')
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|s| !s.is_empty())
            .collect()
    }

    #[test]
    fn the_file_is_the_rendering_of_the_default_mapping() {
        let sql = render(&TableMapping::default(), &NaiveColumns::default()).unwrap();
        let (file_functions, _) = ANALYTICS_SQL.split_once(INDEX_MARKER).unwrap();
        assert_eq!(sql.functions, file_functions);
        let rendered: Vec<String> = sql.indexes.iter().map(|i| i.statement.clone()).collect();
        assert_eq!(rendered, file_index_statements());
    }

    #[test]
    fn a_renamed_mapping_leaves_no_reference_table_name() {
        let mapping: TableMapping = toml::from_str(
            "schema = 'crm'\n\
             [lead]\ntable = 'leads'\nid = 'lead_id'\nclient_id = 'client'\n\
             [lead_booking]\nappointment_booked_at = 'booked_at'\n\
             [ai_draft]\ntable = 'ai \"drafts\"'\nresponse_disposition = 'disposition'\n\
             [message]\ntable = 'messages'\nsent_at = 'sent_at'\nai_draft_id = 'draft_id'",
        )
        .unwrap();
        let sql = render(&mapping, &NaiveColumns::default()).unwrap();
        for reference in ["\"Lead\"", "\"AIDraft\"", "\"Message\"", "\"public\""] {
            assert!(
                !sql.functions.contains(reference),
                "{reference} left in the functions"
            );
        }
        assert!(
            sql.functions
                .contains("FROM \"crm\".\"ai \"\"drafts\"\"\" t")
        );
        assert!(
            sql.functions
                .contains("t.\"booked_at\",\n           t.\"appointmentCanceledAt\"")
        );
        assert_eq!(
            sql.indexes[1].qualified_name,
            "\"crm\".\"messages_draftSend_sentAt_idx\""
        );
        assert!(
            sql.indexes[1]
                .statement
                .contains("ON \"crm\".\"messages\" (\"sent_at\") INCLUDE (\"draft_id\")")
        );
    }

    #[test]
    fn naive_timestamps_are_read_as_utc() {
        let naive = NaiveColumns {
            lead: vec!["appointmentBookedAt".into()],
            message: vec!["sentAt".into()],
        };
        let sql = render(&TableMapping::default(), &naive).unwrap();
        assert!(sql.functions.contains(
            "(t.\"appointmentBookedAt\" AT TIME ZONE 'UTC'),\n           t.\"appointmentCanceledAt\","
        ));
        assert!(
            sql.functions
                .contains("SELECT t.\"aiDraftId\"::text, (t.\"sentAt\" AT TIME ZONE 'UTC')")
        );
    }

    #[test]
    fn names_that_break_the_quoting_are_refused_with_their_key() {
        let mut mapping = TableMapping::default();
        mapping.message.sent_at = "sent$$at".into();
        let err = render(&mapping, &NaiveColumns::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("tables.message.sent_at"), "{err}");
    }

    #[test]
    fn index_names_fit_in_63_bytes() {
        let long = "é".repeat(40);
        let name = truncate(&format!("{long}_draftSend_sentAt_idx"));
        assert!(name.len() <= 63 && name.starts_with("éé"));
    }

    #[test]
    fn function_names_are_found() {
        let names = function_names(ANALYTICS_SQL);
        for expected in [
            "replytime_setter_buckets",
            "replytime_source_leads",
            "replytime_ai_drafts",
        ] {
            assert!(names.iter().any(|n| n == expected), "{names:?}");
        }
        assert!(names.iter().all(|n| n.starts_with("replytime_")));
    }
}
