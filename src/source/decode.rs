//! pgoutput messages to the typed changes of [`crate::change`]: the one place that
//! knows how source tables and columns are named, what their Relation messages must
//! look like, and which rows cannot be placed.
//!
//! ```text
//!  bytes ─▶ pgoutput::decode ─▶ PgOutputMessage ─▶ Decoder ─▶ Decoded::{Begin, Change, Quarantine, Commit, …}
//!                                                    │
//!                          relation cache: id ─▶ mapped table + column positions
//!                          (replaced by every Relation message: schema changes)
//! ```
//!
//! Pure (no IO). What happens to bad input follows SPEC sections 4 and 8:
//!
//! - a Relation of a mapped table without a required column, or with an
//!   incompatible type, is a *structural* [`DecodeError`]: the pipeline stops and
//!   confirms nothing, because carrying on would derive wrong rows;
//! - bytes that are not pgoutput are a *malformed* [`DecodeError`];
//! - a row that cannot be placed (null `id`; a message without `leadId`, `channel`
//!   or `direction`) is [`Decoded::Quarantine`]: data problems never stop the stream.
//!
//! Only the columns of SPEC section 1 are read. Other columns (message bodies) are
//! dropped here, never parsed, stored or logged.

use std::collections::HashMap;

use super::pgoutput::{
    self, ColumnValue, DeleteBody, InsertBody, OldTuple, PgOutputError, PgOutputMessage,
    RelationBody, TruncateBody, TupleData, UpdateBody,
};
use crate::change::{Change, Row, Table, TimeError, Timestamp};
use crate::lsn::Lsn;
use crate::tables::{LogicalColumn, TableMapping, Value, ValueKind};

// ── what the decoder returns ─────────────────────────────────────────────────────

/// One decoded pgoutput message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    Begin {
        final_lsn: Lsn,
        commit_time: Timestamp,
        xid: u32,
    },
    Commit {
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: Timestamp,
    },
    Change(Change),
    /// A row that cannot be placed: kept aside, the stream goes on.
    Quarantine(Quarantined),
    /// `pg_logical_emit_message` (the heartbeat).
    LogicalMessage {
        transactional: bool,
        lsn: Lsn,
        prefix: String,
        content: Vec<u8>,
    },
    /// Origin, Type, Relation, and changes of tables replytime does not read.
    Ignored,
}

/// A change of a row that cannot be placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Quarantined {
    pub table: Table,
    /// Which columns were wrong; names, never values.
    pub reason: String,
    /// The row's id, when it has one. For a message, the engine removes this id
    /// from its threads (the row it knew is no longer placeable).
    pub row_id: Option<String>,
}

/// Whether a [`DecodeError`] is about the bytes or about the schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// Not valid pgoutput, or inconsistent with the stream's own Relation messages.
    Malformed,
    /// The source schema does not fit the mapping: fix the schema or the config.
    Structural,
}

/// Why a message could not be decoded. Every variant names what and where.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Malformed(#[from] PgOutputError),
    #[error(
        "pgoutput {message} message for relation id {relation_id}, which no Relation message described"
    )]
    UnknownRelation {
        message: &'static str,
        relation_id: u32,
    },
    #[error(
        "pgoutput {message} message for {table} (relation id {relation_id}) carries {found} columns, its Relation message announced {expected}"
    )]
    TupleWidth {
        message: &'static str,
        table: String,
        relation_id: u32,
        expected: usize,
        found: usize,
    },
    #[error(
        "pgoutput {message} message for {table}: column {column:?} sent as an unchanged TOAST value, which only updates may do"
    )]
    UnexpectedUnchanged {
        message: &'static str,
        table: String,
        column: String,
    },
    #[error(
        "source table {table} has no column {column:?}, which replytime reads: add it back or map another column in the [tables] config"
    )]
    MissingColumn { table: String, column: String },
    #[error(
        "source table {table}: column {column:?} has type {} (OID {type_oid}), which replytime cannot read (timestamps need timestamptz or timestamp, integers int2, int4 or int8)",
        type_name(*type_oid)
    )]
    IncompatibleType {
        table: String,
        column: String,
        type_oid: u32,
    },
    #[error(
        "source table {table}: column {column:?} is not part of the replica identity ({identity}), so deletes cannot name their row: give the table a primary key on it (REPLICA IDENTITY DEFAULT) or an identity index that includes it"
    )]
    IdNotInReplicaIdentity {
        table: String,
        column: String,
        identity: char,
    },
    #[error("source table {table}: column {column:?} of row {row_id:?}: {problem}")]
    BadValue {
        table: String,
        column: String,
        row_id: Option<String>,
        problem: &'static str,
    },
}

impl DecodeError {
    pub fn kind(&self) -> DecodeErrorKind {
        match self {
            DecodeError::Malformed(_)
            | DecodeError::UnknownRelation { .. }
            | DecodeError::TupleWidth { .. }
            | DecodeError::UnexpectedUnchanged { .. } => DecodeErrorKind::Malformed,
            DecodeError::MissingColumn { .. }
            | DecodeError::IncompatibleType { .. }
            | DecodeError::IdNotInReplicaIdentity { .. }
            | DecodeError::BadValue { .. } => DecodeErrorKind::Structural,
        }
    }
}

const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const TIMESTAMP: u32 = 1114;
const TIMESTAMPTZ: u32 = 1184;

fn type_name(oid: u32) -> &'static str {
    match oid {
        16 => "bool",
        17 => "bytea",
        INT8 => "int8",
        INT2 => "int2",
        INT4 => "int4",
        25 => "text",
        114 => "json",
        700 => "float4",
        701 => "float8",
        1042 => "bpchar",
        1043 => "varchar",
        1082 => "date",
        1083 => "time",
        TIMESTAMP => "timestamp",
        TIMESTAMPTZ => "timestamptz",
        1700 => "numeric",
        2950 => "uuid",
        3802 => "jsonb",
        _ => "a non-built-in type",
    }
}

// ── the decoder ──────────────────────────────────────────────────────────────────

/// A relation of a mapped table, as its last Relation message described it.
#[derive(Debug)]
struct MappedRelation {
    table: Table,
    /// `schema.name` as Postgres sent it, for errors.
    name: String,
    /// Number of columns in each of its tuples.
    width: usize,
    id: ColumnSlot,
    /// The other columns replytime reads, in [`Table::logical_columns`] order.
    columns: Vec<ColumnSlot>,
}

#[derive(Debug)]
struct ColumnSlot {
    logical: LogicalColumn,
    /// The source column's name (for errors) and position in tuples.
    source: String,
    position: usize,
}

/// Decodes a session's pgoutput messages, following its Relation messages.
#[derive(Debug)]
pub(crate) struct Decoder {
    mapping: TableMapping,
    /// Relation id → its mapped table, or `None` for a table replytime does not read.
    relations: HashMap<u32, Option<MappedRelation>>,
}

/// Why a change yields no [`Change`]: a quarantined row or an error.
enum Reject {
    Quarantine(Quarantined),
    Error(DecodeError),
}

impl From<DecodeError> for Reject {
    fn from(e: DecodeError) -> Self {
        Reject::Error(e)
    }
}

impl Decoder {
    pub(crate) fn new(mapping: TableMapping) -> Self {
        Decoder {
            mapping,
            relations: HashMap::new(),
        }
    }

    /// Decodes one pgoutput message (one `XLogData` payload).
    pub(crate) fn decode(&mut self, bytes: &[u8]) -> Result<Decoded, DecodeError> {
        let change = match pgoutput::decode(bytes)? {
            PgOutputMessage::Begin(b) => {
                return Ok(Decoded::Begin {
                    final_lsn: b.final_lsn,
                    commit_time: b.commit_time,
                    xid: b.xid,
                });
            }
            PgOutputMessage::Commit(c) => {
                return Ok(Decoded::Commit {
                    commit_lsn: c.commit_lsn,
                    end_lsn: c.end_lsn,
                    commit_time: c.commit_time,
                });
            }
            PgOutputMessage::Message(m) => {
                return Ok(Decoded::LogicalMessage {
                    transactional: m.transactional,
                    lsn: m.lsn,
                    prefix: m.prefix,
                    content: m.content,
                });
            }
            PgOutputMessage::Origin(_) | PgOutputMessage::Type(_) => return Ok(Decoded::Ignored),
            PgOutputMessage::Relation(relation) => {
                self.on_relation(relation)?;
                return Ok(Decoded::Ignored);
            }
            PgOutputMessage::Insert(insert) => self.on_insert(&insert),
            PgOutputMessage::Update(update) => self.on_update(&update),
            PgOutputMessage::Delete(delete) => self.on_delete(&delete),
            PgOutputMessage::Truncate(truncate) => self.on_truncate(&truncate),
        };
        match change {
            Ok(Some(change)) => Ok(Decoded::Change(change)),
            Ok(None) => Ok(Decoded::Ignored),
            Err(Reject::Quarantine(q)) => Ok(Decoded::Quarantine(q)),
            Err(Reject::Error(e)) => Err(e),
        }
    }

    /// Replaces the cached shape of the relation. A mapped relation that does not
    /// fit is forgotten, so its changes cannot be decoded with a stale shape.
    fn on_relation(&mut self, relation: RelationBody) -> Result<(), DecodeError> {
        let mapped = match self
            .mapping
            .table_named(&relation.namespace, &relation.name)
        {
            None => None,
            Some(table) => match map_relation(&self.mapping, table, &relation) {
                Ok(mapped) => Some(mapped),
                Err(e) => {
                    self.relations.remove(&relation.id);
                    return Err(e);
                }
            },
        };
        self.relations.insert(relation.id, mapped);
        Ok(())
    }

    /// The mapped relation of a change, `None` for a table replytime does not read.
    fn mapped(
        &self,
        message: &'static str,
        relation_id: u32,
    ) -> Result<Option<&MappedRelation>, DecodeError> {
        match self.relations.get(&relation_id) {
            Some(mapped) => Ok(mapped.as_ref()),
            None => Err(DecodeError::UnknownRelation {
                message,
                relation_id,
            }),
        }
    }

    fn on_insert(&self, insert: &InsertBody) -> Result<Option<Change>, Reject> {
        let Some(rel) = self.mapped("Insert", insert.relation_id)? else {
            return Ok(None);
        };
        inserted_row(rel, "Insert", insert.relation_id, &insert.new).map(Some)
    }

    fn on_update(&self, update: &UpdateBody) -> Result<Option<Change>, Reject> {
        const MESSAGE: &str = "Update";
        let Some(rel) = self.mapped(MESSAGE, update.relation_id)? else {
            return Ok(None);
        };
        let old_id = match &update.old {
            Some(old) => Tuple::new(rel, MESSAGE, update.relation_id, old.tuple(), None)?
                .id()?
                .into_text(),
            None => None,
        };
        let full_old = match &update.old {
            Some(OldTuple::Full(tuple)) => Some(tuple),
            _ => None,
        };
        let tuple = Tuple::new(rel, MESSAGE, update.relation_id, &update.new, full_old)?;
        let id = match (tuple.id()?, &old_id) {
            (IdValue::Text(id), _) => id,
            (IdValue::Unchanged, Some(old_id)) => old_id.clone(),
            (IdValue::Unchanged, None) => {
                let reason = "id sent as an unchanged TOAST value without an old key";
                return Err(quarantine(rel, None, reason.into()));
            }
            (IdValue::Null, _) => return Err(quarantine(rel, old_id, "null id".into())),
        };
        let old_id = old_id.filter(|old_id| *old_id != id);
        let values = tuple.values(&id)?;
        // The engine knows the row by its old id when the key changed.
        check_placeable(rel, &values, old_id.as_deref().unwrap_or(&id))?;
        let unchanged = values
            .unchanged
            .iter()
            .map(|slot| slot.logical.name.to_string())
            .collect();
        Ok(Some(Change::Update {
            row: values.row(id),
            old_id,
            unchanged,
        }))
    }

    fn on_delete(&self, delete: &DeleteBody) -> Result<Option<Change>, Reject> {
        const MESSAGE: &str = "Delete";
        let Some(rel) = self.mapped(MESSAGE, delete.relation_id)? else {
            return Ok(None);
        };
        let old = Tuple::new(rel, MESSAGE, delete.relation_id, delete.old.tuple(), None)?;
        match old.id()?.into_text() {
            Some(id) => Ok(Some(Change::Delete {
                table: rel.table,
                id,
            })),
            None => Err(quarantine(rel, None, "delete without an id".into())),
        }
    }

    fn on_truncate(&self, truncate: &TruncateBody) -> Result<Option<Change>, Reject> {
        let mut tables = Vec::new();
        for &relation_id in &truncate.relation_ids {
            if let Some(rel) = self.mapped("Truncate", relation_id)?
                && !tables.contains(&rel.table)
            {
                tables.push(rel.table);
            }
        }
        Ok((!tables.is_empty()).then_some(Change::Truncate(tables)))
    }
}

/// The change of a row inserted (a pgoutput Insert, or a row of the initial load).
fn inserted_row(
    rel: &MappedRelation,
    message: &'static str,
    relation_id: u32,
    new: &TupleData,
) -> Result<Change, Reject> {
    let tuple = Tuple::new(rel, message, relation_id, new, None)?;
    let id = match tuple.id()? {
        IdValue::Text(id) => id,
        IdValue::Null => return Err(quarantine(rel, None, "null id".into())),
        IdValue::Unchanged => {
            return Err(Reject::Error(tuple.unexpected_unchanged(&rel.id)));
        }
    };
    let values = tuple.values(&id)?;
    if let Some(unchanged) = values.unchanged.first() {
        return Err(Reject::Error(tuple.unexpected_unchanged(unchanged)));
    }
    check_placeable(rel, &values, &id)?;
    Ok(Change::Insert(values.row(id)))
}

/// One source table as the initial load reads it: the text of the columns
/// replytime reads, in [`TableMapping::column_names`] order (`id` first). Rows go
/// through the stream's own decoding ([`inserted_row`]), so a value is derived,
/// quarantined or refused the same way whichever path it took.
#[derive(Debug)]
pub(crate) struct LoadShape {
    rel: MappedRelation,
}

impl LoadShape {
    pub(crate) fn new(mapping: &TableMapping, table: Table) -> LoadShape {
        let mut columns = table
            .logical_columns()
            .iter()
            .zip(mapping.column_names(table))
            .enumerate()
            .map(|(position, (&logical, source))| ColumnSlot {
                logical,
                source: source.to_string(),
                position,
            });
        let id = columns.next().expect("every table has an id column");
        let columns: Vec<ColumnSlot> = columns.collect();
        LoadShape {
            rel: MappedRelation {
                table,
                name: format!("{}.{}", mapping.schema, mapping.table_name(table)),
                width: columns.len() + 1,
                id,
                columns,
            },
        }
    }

    /// The SQL text of a column (quoted `column`, e.g. `"sentAt"`) that this shape
    /// reads at `position`: every value as its text output, timestamps as
    /// `timestamptz` (the load's session is in UTC with `DateStyle = ISO`, so a
    /// `timestamp` column reads as UTC, as in the stream).
    pub(crate) fn select_text(&self, position: usize, column: &str) -> String {
        let kind = match position {
            0 => ValueKind::Text,
            _ => self.rel.columns[position - 1].logical.kind,
        };
        match kind {
            ValueKind::Timestamp => format!("{column}::timestamptz::text"),
            ValueKind::Text | ValueKind::Int => format!("{column}::text"),
        }
    }

    /// Decodes one loaded row: the change to apply, or the row to quarantine.
    pub(crate) fn decode(&self, values: Vec<Option<&str>>) -> Result<Decoded, DecodeError> {
        let tuple = TupleData(
            values
                .into_iter()
                .map(|value| match value {
                    Some(text) => ColumnValue::Text(text.as_bytes().to_vec()),
                    None => ColumnValue::Null,
                })
                .collect(),
        );
        match inserted_row(&self.rel, "initial load", 0, &tuple) {
            Ok(change) => Ok(Decoded::Change(change)),
            Err(Reject::Quarantine(q)) => Ok(Decoded::Quarantine(q)),
            Err(Reject::Error(e)) => Err(e),
        }
    }
}

/// Checks a mapped table's Relation message against the mapping.
fn map_relation(
    mapping: &TableMapping,
    table: Table,
    relation: &RelationBody,
) -> Result<MappedRelation, DecodeError> {
    let name = format!("{}.{}", relation.namespace, relation.name);
    let mut columns = table
        .logical_columns()
        .iter()
        .zip(mapping.column_names(table))
        .map(|(&logical, source)| column_slot(&name, relation, logical, source))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter();
    // `id` comes first in every table's list.
    let Some(id) = columns.next() else {
        return Err(DecodeError::MissingColumn {
            table: name,
            column: "id".into(),
        });
    };
    let id_is_key = relation
        .columns
        .get(id.position)
        .is_some_and(|column| column.is_key());
    if !id_is_key {
        return Err(DecodeError::IdNotInReplicaIdentity {
            table: name,
            column: id.source.clone(),
            identity: char::from(relation.replica_identity),
        });
    }
    Ok(MappedRelation {
        table,
        name,
        width: relation.columns.len(),
        id,
        columns: columns.collect(),
    })
}

fn column_slot(
    table: &str,
    relation: &RelationBody,
    logical: LogicalColumn,
    source: &str,
) -> Result<ColumnSlot, DecodeError> {
    let Some((position, column)) = relation
        .columns
        .iter()
        .enumerate()
        .find(|(_, column)| column.name == source)
    else {
        return Err(DecodeError::MissingColumn {
            table: table.to_string(),
            column: source.to_string(),
        });
    };
    let fits = match logical.kind {
        ValueKind::Text => true,
        ValueKind::Int => matches!(column.type_oid, INT2 | INT4 | INT8),
        ValueKind::Timestamp => matches!(column.type_oid, TIMESTAMP | TIMESTAMPTZ),
    };
    if !fits {
        return Err(DecodeError::IncompatibleType {
            table: table.to_string(),
            column: source.to_string(),
            type_oid: column.type_oid,
        });
    }
    Ok(ColumnSlot {
        logical,
        source: source.to_string(),
        position,
    })
}

fn quarantine(rel: &MappedRelation, row_id: Option<String>, reason: String) -> Reject {
    Reject::Quarantine(Quarantined {
        table: rel.table,
        reason,
        row_id,
    })
}

/// A message must have a thread to be placed in (SPEC 4): `leadId`, `channel` and
/// `direction` are not null (unchanged TOAST values are not null).
fn check_placeable(rel: &MappedRelation, values: &Values<'_>, row_id: &str) -> Result<(), Reject> {
    if rel.table != Table::Message {
        return Ok(());
    }
    let null: Vec<&str> = ["leadId", "channel", "direction"]
        .into_iter()
        .filter(|name| values.is_null(name))
        .collect();
    if null.is_empty() {
        return Ok(());
    }
    let reason = format!("null {}", null.join(", "));
    Err(quarantine(rel, Some(row_id.to_string()), reason))
}

// ── reading values ───────────────────────────────────────────────────────────────

/// One tuple of a mapped relation, checked against its width. `fallback` is the
/// full old tuple (`REPLICA IDENTITY FULL`), which supplies unchanged TOAST values.
struct Tuple<'a> {
    rel: &'a MappedRelation,
    message: &'static str,
    values: &'a [ColumnValue],
    fallback: Option<&'a [ColumnValue]>,
}

enum IdValue {
    Text(String),
    Null,
    Unchanged,
}

impl IdValue {
    fn into_text(self) -> Option<String> {
        match self {
            IdValue::Text(id) => Some(id),
            IdValue::Null | IdValue::Unchanged => None,
        }
    }
}

impl<'a> Tuple<'a> {
    fn new(
        rel: &'a MappedRelation,
        message: &'static str,
        relation_id: u32,
        tuple: &'a TupleData,
        fallback: Option<&'a TupleData>,
    ) -> Result<Self, DecodeError> {
        for found in [Some(tuple), fallback].into_iter().flatten() {
            if found.0.len() != rel.width {
                return Err(DecodeError::TupleWidth {
                    message,
                    table: rel.name.clone(),
                    relation_id,
                    expected: rel.width,
                    found: found.0.len(),
                });
            }
        }
        Ok(Tuple {
            rel,
            message,
            values: &tuple.0,
            fallback: fallback.map(|t| t.0.as_slice()),
        })
    }

    /// The value of a column, from the full old tuple when the new one says
    /// "unchanged". Positions were checked by [`Tuple::new`].
    fn raw(&self, slot: &ColumnSlot) -> &'a ColumnValue {
        let value = self.values.get(slot.position).unwrap_or(&ColumnValue::Null);
        match (value, self.fallback.and_then(|f| f.get(slot.position))) {
            (ColumnValue::UnchangedToast, Some(old)) => old,
            _ => value,
        }
    }

    fn id(&self) -> Result<IdValue, DecodeError> {
        let slot = &self.rel.id;
        match self.raw(slot) {
            ColumnValue::Null => Ok(IdValue::Null),
            ColumnValue::UnchangedToast => Ok(IdValue::Unchanged),
            ColumnValue::Text(bytes) => Ok(IdValue::Text(self.text(slot, bytes, None)?.into())),
            ColumnValue::Binary(_) => Err(self.binary(slot, None)),
        }
    }

    fn text(
        &self,
        slot: &ColumnSlot,
        bytes: &'a [u8],
        row_id: Option<&str>,
    ) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(bytes).map_err(|_| bad_value(self.rel, slot, row_id, "not valid UTF-8"))
    }

    fn binary(&self, slot: &ColumnSlot, row_id: Option<&str>) -> DecodeError {
        let problem = "binary value: replytime asks pgoutput for text values";
        bad_value(self.rel, slot, row_id, problem)
    }

    /// The values of every column replytime reads except `id`.
    fn values(&self, row_id: &str) -> Result<Values<'a>, Reject> {
        let mut values = Values {
            table: self.rel.table,
            items: Vec::with_capacity(self.rel.columns.len()),
            unchanged: Vec::new(),
        };
        for slot in &self.rel.columns {
            let value = match self.raw(slot) {
                ColumnValue::Null => Value::Null,
                ColumnValue::UnchangedToast => {
                    values.unchanged.push(slot);
                    Value::Null
                }
                ColumnValue::Text(bytes) => {
                    self.parse(slot, self.text(slot, bytes, Some(row_id))?, row_id)?
                }
                ColumnValue::Binary(_) => return Err(self.binary(slot, Some(row_id)).into()),
            };
            values.items.push((slot.logical.name, value));
        }
        Ok(values)
    }

    fn parse(&self, slot: &ColumnSlot, text: &str, row_id: &str) -> Result<Value, Reject> {
        let bad = |problem| Reject::Error(bad_value(self.rel, slot, Some(row_id), problem));
        match slot.logical.kind {
            ValueKind::Text => Ok(Value::Text(text.to_string())),
            // `timestamp` prints no offset, which reads as UTC.
            ValueKind::Timestamp => match Timestamp::parse_pg(text) {
                Ok(time) => Ok(Value::Time(time)),
                Err(TimeError::NotFinite) => {
                    let reason = format!("no finite time in {}", slot.logical.name);
                    Err(quarantine(self.rel, Some(row_id.to_string()), reason))
                }
                Err(e @ TimeError::Malformed) => Err(bad(e.message())),
            },
            ValueKind::Int => match text.parse::<i32>() {
                Ok(int) => Ok(Value::Int(int)),
                Err(_) if text.parse::<i64>().is_ok() => {
                    let reason = format!("{} out of the int4 range", slot.logical.name);
                    Err(quarantine(self.rel, Some(row_id.to_string()), reason))
                }
                Err(_) => Err(bad("not an integer")),
            },
        }
    }

    fn unexpected_unchanged(&self, slot: &ColumnSlot) -> DecodeError {
        DecodeError::UnexpectedUnchanged {
            message: self.message,
            table: self.rel.name.clone(),
            column: slot.source.clone(),
        }
    }
}

fn bad_value(
    rel: &MappedRelation,
    slot: &ColumnSlot,
    row_id: Option<&str>,
    problem: &'static str,
) -> DecodeError {
    DecodeError::BadValue {
        table: rel.name.clone(),
        column: slot.source.clone(),
        row_id: row_id.map(str::to_string),
        problem,
    }
}

/// Parsed values of a row by logical column name, `id` excluded. Unchanged TOAST
/// values are `Null` placeholders, listed in `unchanged`.
struct Values<'a> {
    table: Table,
    items: Vec<(&'static str, Value)>,
    unchanged: Vec<&'a ColumnSlot>,
}

impl Values<'_> {
    fn is_null(&self, name: &str) -> bool {
        let unchanged = self.unchanged.iter().any(|slot| slot.logical.name == name);
        !unchanged
            && self
                .items
                .iter()
                .any(|(n, v)| *n == name && matches!(v, Value::Null))
    }

    /// The typed row: the values go in description order ([`Row::from_values`]).
    fn row(self, id: String) -> Row {
        Row::from_values(
            self.table,
            id,
            self.items.into_iter().map(|(_, value)| value),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{CampaignRow, DraftRow, JobRow, LeadRow, MessageRow};
    use crate::source::pgoutput::test_support::{
        BINARY, MISSING_COLUMN, SCHEMA_CHANGE, STREAM, fixture,
    };

    fn ts(text: &str) -> Option<Timestamp> {
        Some(Timestamp::parse_pg_text(text).expect("test timestamp"))
    }

    fn some(text: &str) -> Option<String> {
        Some(text.to_string())
    }

    /// Decodes a captured fixture in order with the default mapping.
    fn decode_fixture(text: &str) -> Vec<Result<Decoded, DecodeError>> {
        let mut decoder = Decoder::new(TableMapping::default());
        fixture(text).iter().map(|b| decoder.decode(b)).collect()
    }

    fn stream() -> Vec<Decoded> {
        decode_fixture(STREAM)
            .into_iter()
            .enumerate()
            .map(|(i, d)| d.unwrap_or_else(|e| panic!("line {}: {e}", i + 1)))
            .collect()
    }

    fn message(id: &str, lead: &str, channel: &str, direction: &str) -> MessageRow {
        MessageRow {
            id: id.into(),
            lead_id: some(lead),
            channel: some(channel),
            direction: some(direction),
            sent_by: None,
            sent_by_user_id: None,
            ai_draft_id: None,
            sent_at: None,
        }
    }

    fn insert(row: Row) -> Decoded {
        Decoded::Change(Change::Insert(row))
    }

    fn update(row: Row, old_id: Option<String>, unchanged: &[&str]) -> Decoded {
        let unchanged = unchanged.iter().map(|c| c.to_string()).collect();
        Decoded::Change(Change::Update {
            row,
            old_id,
            unchanged,
        })
    }

    #[test]
    fn captured_transactions_frame_their_changes() {
        let d = stream();
        let Decoded::Begin {
            final_lsn,
            commit_time,
            xid,
        } = d[0]
        else {
            panic!("expected Begin, got {:?}", d[0]);
        };
        assert!(xid > 0 && commit_time > ts("2024-01-01 00:00:00+00").unwrap());
        let Decoded::Commit {
            commit_lsn,
            end_lsn,
            commit_time: committed,
        } = d[5]
        else {
            panic!("expected Commit, got {:?}", d[5]);
        };
        assert_eq!((commit_lsn, committed), (final_lsn, commit_time));
        assert!(end_lsn > commit_lsn);
        assert_eq!(d[1], Decoded::Ignored, "Relation");
    }

    #[test]
    fn captured_inserts_of_every_table() {
        let d = stream();
        let campaign = CampaignRow {
            id: "camp_1".into(),
            delay_min_seconds: Some(120),
            delay_max_seconds: Some(300),
            response_mode: some("AUTO"),
        };
        assert_eq!(d[2], insert(Row::Campaign(campaign)));
        let lead = LeadRow {
            id: "lead_1".into(),
            client_id: some("client_1"),
            email_campaign_id: some("camp_1"),
        };
        assert_eq!(d[4], insert(Row::Lead(lead)));
        let inbound = MessageRow {
            sent_at: ts("2024-03-01 10:00:00.123456+00"),
            ..message("msg_1", "lead_1", "sms", "inbound")
        };
        assert_eq!(
            d[8],
            insert(Row::Message(inbound)),
            "the 10 kB body is dropped"
        );
        let outbound = MessageRow {
            sent_by: some("setter"),
            sent_by_user_id: some("user_7"),
            ..message("msg_2", "lead_1", "sms", "outbound")
        };
        assert_eq!(d[9], insert(Row::Message(outbound)));
        assert_eq!(d[12], Decoded::Ignored, "Type");
        let draft = DraftRow {
            id: "draft_1".into(),
            lead_id: some("lead_1"),
            trigger_message_id: some("msg_1"),
            channel: some("sms"),
            response_disposition: some("AUTO_SENT"),
        };
        assert_eq!(
            d[14],
            insert(Row::Draft(draft)),
            "an enum column reads as text"
        );
        let job = JobRow {
            id: "job_1".into(),
            job_type: some("AI_AUTO_SEND_DELAYED"),
            lead_id: some("lead_1"),
            message_id: some("msg_1"),
            draft_id: some("draft_1"),
            run_at: ts("2024-03-01 10:05:14+00"),
            started_at: ts("2024-03-01 10:05:14.5+00"),
            finished_at: None,
            created_at: ts("2024-03-01 10:00:01+00"),
        };
        assert_eq!(d[16], insert(Row::Job(job)));
    }

    #[test]
    fn captured_updates() {
        let d = stream();
        let sent = MessageRow {
            sent_by: some("setter"),
            sent_by_user_id: some("user_7"),
            sent_at: ts("2024-03-01 10:03:00+00"),
            ..message("msg_2", "lead_1", "sms", "outbound")
        };
        assert_eq!(d[19], update(Row::Message(sent.clone()), None, &[]));
        let resent = MessageRow {
            sent_by: some("lead"),
            sent_at: ts("2024-03-01 10:00:00.123456+00"),
            ..message("msg_1", "lead_1", "sms", "inbound")
        };
        assert_eq!(
            d[22],
            update(Row::Message(resent), None, &[]),
            "an unchanged body is not a column replytime reads"
        );
        let toasted = MessageRow {
            sent_by: some("setter"),
            sent_at: ts("2024-03-01 10:04:00+00"),
            ..message("msg_4", "lead_1", "sms", "outbound")
        };
        assert_eq!(
            d[28],
            update(Row::Message(toasted), None, &["sentByUserId"])
        );
        let renamed = MessageRow {
            id: "msg_2b".into(),
            ..sent
        };
        assert_eq!(d[31], update(Row::Message(renamed), some("msg_2"), &[]));
        let edited = DraftRow {
            id: "draft_1".into(),
            lead_id: some("lead_1"),
            trigger_message_id: some("msg_1"),
            channel: some("sms"),
            response_disposition: some("EDITED"),
        };
        assert_eq!(
            d[34],
            update(Row::Draft(edited), None, &[]),
            "a full old tuple with the same id is no key change"
        );
    }

    #[test]
    fn captured_quarantine_unknown_direction_and_unmapped_table() {
        let d = stream();
        let expected = Quarantined {
            table: Table::Message,
            reason: "null leadId".into(),
            row_id: some("msg_orphan"),
        };
        assert_eq!(d[37], Decoded::Quarantine(expected));
        let sideways = MessageRow {
            sent_at: ts("2024-03-01 12:00:00+00"),
            ..message("msg_3", "lead_1", "email", "sideways")
        };
        assert_eq!(
            d[40],
            insert(Row::Message(sideways)),
            "data, not quarantine"
        );
        assert_eq!((&d[43], &d[44]), (&Decoded::Ignored, &Decoded::Ignored));
    }

    #[test]
    fn captured_messages_origin_deletes_and_truncates() {
        let d = stream();
        let Decoded::LogicalMessage {
            transactional: true,
            prefix,
            content,
            ..
        } = &d[47]
        else {
            panic!("expected a transactional message, got {:?}", d[47]);
        };
        assert_eq!(
            (prefix.as_str(), content.as_slice()),
            ("replytime-heartbeat", &b"tx"[..])
        );
        assert!(
            matches!(&d[49], Decoded::LogicalMessage { transactional: false, content, .. } if content == b"nontx")
        );
        assert_eq!(d[51], Decoded::Ignored, "Origin");
        let lead = LeadRow {
            id: "lead_2".into(),
            client_id: some("client_1"),
            email_campaign_id: None,
        };
        assert_eq!(d[52], insert(Row::Lead(lead)));
        let delete = |table, id: &str| {
            Decoded::Change(Change::Delete {
                table,
                id: id.into(),
            })
        };
        assert_eq!(d[55], delete(Table::Message, "msg_3"));
        assert_eq!(d[58], delete(Table::AiDraft, "draft_1"));
        let truncate = |tables: &[Table]| Decoded::Change(Change::Truncate(tables.to_vec()));
        assert_eq!(d[62], truncate(&[Table::BackgroundJob]));
        assert_eq!(
            d[68],
            truncate(&[Table::Lead, Table::EmailCampaign]),
            "AuditLog is not mapped"
        );
    }

    #[test]
    fn captured_schema_changes() {
        let d = decode_fixture(SCHEMA_CHANGE);
        assert!(matches!(d[1], Ok(Decoded::Ignored)), "a new column is fine");
        let Ok(Decoded::Change(Change::Insert(Row::Message(row)))) = &d[2] else {
            panic!("expected a message insert, got {:?}", d[2]);
        };
        assert_eq!(row.id, "msg_5");
        let Err(e) = &d[5] else {
            panic!("expected an incompatible type, got {:?}", d[5]);
        };
        assert!(
            matches!(e, DecodeError::IncompatibleType { table, column, type_oid: 25 }
            if table == "public.BackgroundJob" && column == "runAt")
        );
        assert_eq!(e.kind(), DecodeErrorKind::Structural);
        assert_eq!(
            e.to_string(),
            "source table public.BackgroundJob: column \"runAt\" has type text (OID 25), which replytime cannot read (timestamps need timestamptz or timestamp, integers int2, int4 or int8)"
        );
        assert!(
            matches!(
                &d[6],
                Err(DecodeError::UnknownRelation {
                    message: "Insert",
                    ..
                })
            ),
            "a rejected relation is not decoded with a stale shape"
        );
    }

    #[test]
    fn captured_missing_column() {
        let d = decode_fixture(MISSING_COLUMN);
        assert!(
            matches!(&d[1], Err(DecodeError::MissingColumn { table, column })
            if table == "public.Lead" && column == "emailCampaignId")
        );
    }

    #[test]
    fn captured_binary_values_are_a_structural_error() {
        let d = decode_fixture(BINARY);
        let Err(e) = &d[2] else {
            panic!("expected an error, got {:?}", d[2]);
        };
        assert!(matches!(e, DecodeError::BadValue { column, .. } if column == "id"));
        assert_eq!(e.kind(), DecodeErrorKind::Structural);
    }

    // ── synthetic messages ───────────────────────────────────────────────────────

    /// A column value to encode.
    #[derive(Clone, Copy)]
    enum Cell<'a> {
        N,
        U,
        T(&'a str),
    }
    use Cell::{N, T, U};

    fn tuple(cells: &[Cell<'_>]) -> Vec<u8> {
        let mut out = (cells.len() as i16).to_be_bytes().to_vec();
        for cell in cells {
            match cell {
                N => out.push(b'n'),
                U => out.push(b'u'),
                T(text) => {
                    out.push(b't');
                    out.extend((text.len() as i32).to_be_bytes());
                    out.extend(text.as_bytes());
                }
            }
        }
        out
    }

    fn relation_message(id: u32, namespace: &str, name: &str, columns: &[(&str, u32)]) -> Vec<u8> {
        let mut out = vec![b'R'];
        out.extend(id.to_be_bytes());
        for text in [namespace, name] {
            out.extend(text.as_bytes());
            out.push(0);
        }
        out.push(b'd');
        out.extend((columns.len() as i16).to_be_bytes());
        for (i, (column, oid)) in columns.iter().enumerate() {
            out.push(u8::from(i == 0)); // the first column is the key
            out.extend(column.as_bytes());
            out.push(0);
            out.extend(oid.to_be_bytes());
            out.extend((-1i32).to_be_bytes());
        }
        out
    }

    fn change_message(tag: u8, id: u32, tuples: &[(u8, &[Cell<'_>])]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend(id.to_be_bytes());
        for (marker, cells) in tuples {
            out.push(*marker);
            out.extend(tuple(cells));
        }
        out
    }

    const MESSAGE_COLUMNS: [(&str, u32); 9] = [
        ("id", 25),
        ("leadId", 25),
        ("channel", 25),
        ("direction", 25),
        ("sentBy", 25),
        ("sentByUserId", 25),
        ("aiDraftId", 25),
        ("sentAt", 1184),
        ("body", 25),
    ];

    /// A decoder that knows relation 7 as the reference `"Message"`.
    fn message_decoder() -> Decoder {
        let mut decoder = Decoder::new(TableMapping::default());
        let relation = relation_message(7, "public", "Message", &MESSAGE_COLUMNS);
        assert_eq!(decoder.decode(&relation).unwrap(), Decoded::Ignored);
        decoder
    }

    fn message_cells<'a>(id: Cell<'a>, lead: Cell<'a>, sent_at: Cell<'a>) -> [Cell<'a>; 9] {
        let body = T("a body that must not be read");
        [id, lead, T("sms"), T("inbound"), N, N, N, sent_at, body]
    }

    #[test]
    fn null_ids_and_unplaceable_messages_are_quarantined() {
        let mut decoder = message_decoder();
        let cells = message_cells(N, T("lead_1"), N);
        let d = decoder.decode(&change_message(b'I', 7, &[(b'N', &cells)]));
        let expected = Quarantined {
            table: Table::Message,
            reason: "null id".into(),
            row_id: None,
        };
        assert_eq!(d.unwrap(), Decoded::Quarantine(expected));

        // Moved to another id and lost its lead: the engine must forget the old id.
        let cells = [T("m2"), N, N, T("inbound"), N, N, N, N, N];
        let key = [T("m1"), N, N, N, N, N, N, N, N];
        let bytes = change_message(b'U', 7, &[(b'K', &key), (b'N', &cells)]);
        let expected = Quarantined {
            table: Table::Message,
            reason: "null leadId, channel".into(),
            row_id: some("m1"),
        };
        assert_eq!(
            decoder.decode(&bytes).unwrap(),
            Decoded::Quarantine(expected)
        );

        let key = [N; 9];
        let d = decoder.decode(&change_message(b'D', 7, &[(b'K', &key)]));
        assert!(matches!(d.unwrap(), Decoded::Quarantine(q) if q.row_id.is_none()));
    }

    #[test]
    fn unchanged_values_are_listed_or_taken_from_the_full_old_tuple() {
        let mut decoder = message_decoder();
        let new = message_cells(T("m1"), U, U);
        let d = decoder.decode(&change_message(b'U', 7, &[(b'N', &new)]));
        let row = MessageRow {
            lead_id: None,
            ..message("m1", "-", "sms", "inbound")
        };
        assert_eq!(
            d.unwrap(),
            update(Row::Message(row), None, &["leadId", "sentAt"]),
            "unchanged leadId is not a null leadId"
        );

        let old = message_cells(T("m1"), T("lead_1"), T("2024-03-01 10:00:00+00"));
        let new = message_cells(U, U, U);
        let bytes = change_message(b'U', 7, &[(b'O', &old), (b'N', &new)]);
        let row = MessageRow {
            sent_at: ts("2024-03-01 10:00:00+00"),
            ..message("m1", "lead_1", "sms", "inbound")
        };
        assert_eq!(
            decoder.decode(&bytes).unwrap(),
            update(Row::Message(row), None, &[])
        );

        let new = message_cells(U, T("lead_1"), N);
        let d = decoder.decode(&change_message(b'U', 7, &[(b'N', &new)]));
        assert!(matches!(d.unwrap(), Decoded::Quarantine(q) if q.reason.contains("unchanged")));
        let d = decoder.decode(&change_message(b'I', 7, &[(b'N', &new)]));
        assert!(matches!(
            d,
            Err(DecodeError::UnexpectedUnchanged {
                message: "Insert",
                ..
            })
        ));
    }

    #[test]
    fn a_relation_message_replaces_the_cached_shape() {
        let mut decoder = message_decoder();
        let renamed = relation_message(7, "public", "MessageArchive", &MESSAGE_COLUMNS);
        assert_eq!(decoder.decode(&renamed).unwrap(), Decoded::Ignored);
        let cells = message_cells(T("m1"), T("lead_1"), N);
        let d = decoder.decode(&change_message(b'I', 7, &[(b'N', &cells)]));
        assert_eq!(d.unwrap(), Decoded::Ignored, "no longer a mapped table");

        let mut widened = MESSAGE_COLUMNS.to_vec();
        widened.insert(2, ("readAt", 1184));
        let relation = relation_message(7, "public", "Message", &widened);
        assert_eq!(decoder.decode(&relation).unwrap(), Decoded::Ignored);
        let cells = [T("m1"), T("l"), T("2024-01-01 00:00:00+00"), T("sms")];
        let cells = [&cells[..], &[T("inbound"), N, N, N, N, N]].concat();
        let d = decoder.decode(&change_message(b'I', 7, &[(b'N', &cells)]));
        let row = message("m1", "l", "sms", "inbound");
        assert_eq!(d.unwrap(), insert(Row::Message(row)));
    }

    #[test]
    fn a_custom_mapping_reads_renamed_tables_and_columns() {
        let mapping: TableMapping = toml::from_str(
            "schema = 'crm'\n[email_campaign]\ntable = 'campaigns'\n\
             ai_auto_send_delay_min_seconds = 'min_delay'\nai_auto_send_delay_max_seconds = 'max_delay'",
        )
        .unwrap();
        assert_eq!(mapping.message, crate::tables::MessageNames::default());
        assert_eq!(
            mapping.column_names(Table::EmailCampaign),
            ["id", "min_delay", "max_delay", "responseMode"]
        );
        let mut decoder = Decoder::new(mapping);
        let columns = [
            ("id", 2950),
            ("responseMode", 25),
            ("min_delay", 21),
            ("max_delay", 20),
        ];
        let public = relation_message(3, "public", "campaigns", &columns);
        let crm = relation_message(4, "crm", "campaigns", &columns);
        for relation in [public, crm] {
            assert_eq!(decoder.decode(&relation).unwrap(), Decoded::Ignored);
        }
        let cells = [T("c1"), N, T("-5"), T("99999999999")];
        assert_eq!(
            decoder
                .decode(&change_message(b'I', 3, &[(b'N', &cells)]))
                .unwrap(),
            Decoded::Ignored,
            "not the mapped schema"
        );
        let d = decoder.decode(&change_message(b'I', 4, &[(b'N', &cells)]));
        let expected = Quarantined {
            table: Table::EmailCampaign,
            reason: "aiAutoSendDelayMaxSeconds out of the int4 range".into(),
            row_id: some("c1"),
        };
        assert_eq!(d.unwrap(), Decoded::Quarantine(expected));
        let cells = [T("c1"), T("AUTO"), T("-5"), T("6")];
        let d = decoder.decode(&change_message(b'I', 4, &[(b'N', &cells)]));
        let row = CampaignRow {
            id: "c1".into(),
            delay_min_seconds: Some(-5),
            delay_max_seconds: Some(6),
            response_mode: some("AUTO"),
        };
        assert_eq!(d.unwrap(), insert(Row::Campaign(row)));
    }

    #[test]
    fn mapping_rejects_unknown_keys_and_has_reference_defaults() {
        let typo = toml::from_str::<TableMapping>("[message]\nlead = 'lead_id'");
        assert!(typo.unwrap_err().to_string().contains("unknown field"));
        let mapping = TableMapping::default();
        assert_eq!(mapping.schema, "public");
        assert_eq!(mapping.table_name(Table::AiDraft), "AIDraft");
        assert_eq!(mapping.column_names(Table::BackgroundJob)[1], "type");
        assert_eq!(
            mapping.table_named("public", "AIDraft"),
            Some(Table::AiDraft)
        );
        assert_eq!(mapping.table_named("public", "aidraft"), None);
        for table in Table::ALL {
            let logical: Vec<&str> = table.logical_columns().iter().map(|c| c.name).collect();
            assert_eq!(mapping.column_names(table), logical);
        }
    }

    #[test]
    fn values_that_do_not_parse_are_structural_errors_naming_the_column() {
        let mut decoder = message_decoder();
        let cells = message_cells(T("m1"), T("l"), T("yesterday"));
        let e = decoder
            .decode(&change_message(b'I', 7, &[(b'N', &cells)]))
            .unwrap_err();
        assert_eq!(e.kind(), DecodeErrorKind::Structural);
        assert_eq!(
            e.to_string(),
            "source table public.Message: column \"sentAt\" of row Some(\"m1\"): not a timestamp as Postgres prints it with DateStyle ISO"
        );
        let absurd = message_cells(T("m1"), T("l"), T("2024-01-01 00:00:00+99999999999999999"));
        let d = decoder.decode(&change_message(b'I', 7, &[(b'N', &absurd)]));
        assert!(
            matches!(d, Err(DecodeError::BadValue { .. })),
            "no overflow panic"
        );
    }

    #[test]
    fn odd_times_are_derived_or_quarantined_never_an_error() {
        let mut decoder = message_decoder();
        for (text, expected) in [
            ("0044-03-15 12:00:00+00 BC", "-0043-03-15T12:00:00.000000Z"),
            ("10000-01-01 00:00:00+00", "+10000-01-01T00:00:00.000000Z"),
            ("262142-06-01 00:00:00+00", "+262142-06-01T00:00:00.000000Z"),
        ] {
            let cells = message_cells(T("m1"), T("l"), T(text));
            let d = decoder.decode(&change_message(b'I', 7, &[(b'N', &cells)]));
            let Ok(Decoded::Change(Change::Insert(Row::Message(row)))) = d else {
                panic!("{text}: {d:?}");
            };
            assert_eq!(row.sent_at.unwrap().to_string(), expected);
        }
        for text in ["infinity", "-infinity", "294276-12-31 23:59:59.999999+00"] {
            let cells = message_cells(T("m1"), T("l"), T(text));
            let d = decoder.decode(&change_message(b'I', 7, &[(b'N', &cells)]));
            let expected = Quarantined {
                table: Table::Message,
                reason: "no finite time in sentAt".into(),
                row_id: some("m1"),
            };
            assert_eq!(d.unwrap(), Decoded::Quarantine(expected), "{text}");
        }
    }

    #[test]
    fn the_initial_load_decodes_a_row_as_the_stream_does() {
        let mut decoder = message_decoder();
        let shape = LoadShape::new(&TableMapping::default(), Table::Message);
        let times = [
            Some("2024-03-01 10:00:00.5+00"),
            Some("0044-03-15 12:00:00+00 BC"),
            Some("infinity"),
            None,
        ];
        for (sent_at, lead) in times
            .into_iter()
            .zip([Some("l"), Some("l"), Some("l"), None])
        {
            let cell = |v: Option<&'static str>| v.map_or(N, T);
            let cells = message_cells(T("m1"), cell(lead), cell(sent_at));
            let streamed = decoder
                .decode(&change_message(b'I', 7, &[(b'N', &cells)]))
                .unwrap();
            let loaded = shape
                .decode(vec![
                    Some("m1"),
                    lead,
                    Some("sms"),
                    Some("inbound"),
                    None,
                    None,
                    None,
                    sent_at,
                ])
                .unwrap();
            assert_eq!(loaded, streamed, "{sent_at:?}");
        }
        let null_id = shape.decode(vec![None; 8]).unwrap();
        assert!(matches!(null_id, Decoded::Quarantine(q) if q.reason == "null id"));
        let e = shape
            .decode(vec![
                Some("m1"),
                Some("l"),
                None,
                None,
                None,
                None,
                None,
                Some("soon"),
            ])
            .unwrap_err();
        assert!(e.to_string().contains("\"sentAt\""), "{e}");
    }

    #[test]
    fn timestamp_without_time_zone_reads_as_utc() {
        let mut decoder = Decoder::new(TableMapping::default());
        let mut columns = MESSAGE_COLUMNS;
        columns[7].1 = TIMESTAMP;
        decoder
            .decode(&relation_message(7, "public", "Message", &columns))
            .unwrap();
        let cells = message_cells(T("m1"), T("l"), T("2024-03-01 10:00:00.5"));
        let d = decoder.decode(&change_message(b'I', 7, &[(b'N', &cells)]));
        let row = MessageRow {
            sent_at: ts("2024-03-01 10:00:00.5+00"),
            ..message("m1", "l", "sms", "inbound")
        };
        assert_eq!(d.unwrap(), insert(Row::Message(row)));
    }

    #[test]
    fn relations_that_do_not_fit_are_structural_errors() {
        let mut decoder = Decoder::new(TableMapping::default());
        let mut columns = MESSAGE_COLUMNS;
        columns[7].1 = 1082; // date
        let e = decoder
            .decode(&relation_message(7, "public", "Message", &columns))
            .unwrap_err();
        assert!(matches!(
            e,
            DecodeError::IncompatibleType { type_oid: 1082, .. }
        ));
        let mut columns = MESSAGE_COLUMNS;
        columns.swap(0, 8); // body is the key, id is not
        let e = decoder
            .decode(&relation_message(7, "public", "Message", &columns))
            .unwrap_err();
        assert!(
            matches!(e, DecodeError::IdNotInReplicaIdentity { .. }),
            "{e}"
        );
    }

    #[test]
    fn stream_inconsistencies_are_malformed_errors() {
        let mut decoder = message_decoder();
        let cells = message_cells(T("m1"), T("l"), N);
        let unknown = decoder
            .decode(&change_message(b'I', 8, &[(b'N', &cells)]))
            .unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "pgoutput Insert message for relation id 8, which no Relation message described"
        );
        let narrow = decoder
            .decode(&change_message(b'I', 7, &[(b'N', &cells[..3])]))
            .unwrap_err();
        assert!(matches!(
            narrow,
            DecodeError::TupleWidth {
                expected: 9,
                found: 3,
                ..
            }
        ));
        let garbage = decoder.decode(b"I\0\0\0\x07N").unwrap_err();
        for e in [unknown, narrow, garbage] {
            assert_eq!(e.kind(), DecodeErrorKind::Malformed, "{e}");
        }
    }

    mod properties {
        use std::sync::OnceLock;
        use std::time::Instant;

        use proptest::prelude::*;

        use super::*;
        use crate::source::pgoutput::test_support::{mutated_message, over_budget};

        /// A decoder that has seen every Relation message of the captured stream.
        fn primed_decoder() -> Decoder {
            let mut decoder = Decoder::new(TableMapping::default());
            for bytes in fixture(STREAM).iter().filter(|b| b.first() == Some(&b'R')) {
                decoder.decode(bytes).expect("captured relation");
            }
            decoder
        }

        /// Texts a column of each kind may hold: ordinary values, values the row is
        /// quarantined for and values that are a structural error.
        fn texts(kind: ValueKind) -> Vec<&'static str> {
            match kind {
                ValueKind::Text => vec!["a", "", "inbound", "sms", "ü 😀"],
                ValueKind::Int => vec!["5", "-3", "0", "3000000000", "1.5", "x"],
                ValueKind::Timestamp => vec![
                    "2024-03-01 10:00:00.5+00",
                    "2024-03-01 10:00:00",
                    "0044-03-15 12:00:00+00 BC",
                    "infinity",
                    "-infinity",
                    "294276-01-01 00:00:00+00",
                    "soon",
                ],
            }
        }

        /// A row of `table`: per column read, NULL or one of [`texts`].
        fn row_of(table: Table) -> impl Strategy<Value = Vec<Option<&'static str>>> {
            table
                .logical_columns()
                .iter()
                .map(|column| prop::option::weighted(0.8, prop::sample::select(texts(column.kind))))
                .collect::<Vec<_>>()
        }

        fn table_and_row() -> impl Strategy<Value = (Table, Vec<Option<&'static str>>)> {
            prop::sample::select(Table::ALL.to_vec())
                .prop_flat_map(|table| (Just(table), row_of(table)))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]

            /// One decoding: a row streamed as an Insert and the same row read by the
            /// initial load give the same change, quarantine or error, in every table.
            #[test]
            fn the_load_and_the_stream_decode_every_row_alike((table, values) in table_and_row()) {
                let mapping = TableMapping::default();
                let oid = |kind| match kind {
                    ValueKind::Text => 25,
                    ValueKind::Int => INT4,
                    ValueKind::Timestamp => TIMESTAMPTZ,
                };
                let columns: Vec<(&str, u32)> = table
                    .logical_columns()
                    .iter()
                    .map(|c| (c.name, oid(c.kind)))
                    .collect();
                let mut decoder = Decoder::new(mapping.clone());
                let relation = relation_message(9, "public", table.default_name(), &columns);
                prop_assert_eq!(decoder.decode(&relation).unwrap(), Decoded::Ignored);
                let cells: Vec<Cell<'_>> = values.iter().map(|v| v.map_or(N, T)).collect();
                let streamed = decoder
                    .decode(&change_message(b'I', 9, &[(b'N', &cells)]))
                    .map_err(|e| e.to_string());
                let loaded = LoadShape::new(&mapping, table)
                    .decode(values.clone())
                    .map_err(|e| e.to_string());
                prop_assert_eq!(&loaded, &streamed, "{:?}", values);
                prop_assert!(!matches!(loaded, Ok(Decoded::Ignored)));
            }

            #[test]
            fn arbitrary_bytes_never_panic(
                tag in prop::sample::select(b"RIUDT".to_vec()),
                bytes in prop::collection::vec(any::<u8>(), 0..96),
            ) {
                static START: OnceLock<Instant> = OnceLock::new();
                if !over_budget(&START) {
                    let mut message = vec![tag];
                    message.extend(bytes);
                    let _ = primed_decoder().decode(&message);
                }
            }

            #[test]
            fn mutated_streams_never_panic(
                messages in prop::collection::vec(mutated_message(fixture(STREAM)), 1..16),
            ) {
                static START: OnceLock<Instant> = OnceLock::new();
                if !over_budget(&START) {
                    let mut decoder = primed_decoder();
                    for bytes in &messages {
                        let _ = decoder.decode(bytes);
                    }
                }
            }
        }
    }
}
