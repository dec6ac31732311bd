//! A decoder of pgoutput protocol version 1: the bytes of one `XLogData` payload in,
//! one [`PgOutputMessage`] out. Pure: no IO, no async, no state.
//!
//! ```text
//!  stream.rs ──XLogData bytes──▶ pgoutput::decode ──PgOutputMessage──▶ decode.rs ──Change──▶
//!  (pgwire-replication)           (this module)                        (relations, mapping)
//! ```
//!
//! The transport is `pgwire-replication`, but the decoder is ours: the design fixes
//! pgwire-replication "for transport only", and a hand-written decoder lets every
//! malformed byte become a typed error naming the message type, the byte offset and
//! what was wrong, instead of a panic or a dropped change. Nothing here trusts the
//! input: every read is bounds-checked, lengths are checked against the bytes left
//! before anything is allocated, and LSN/timestamp arithmetic is checked.
//!
//! Column values stay raw bytes (`t` text or `b` binary): decode.rs interprets only
//! the columns replytime reads, so a body in an odd encoding never fails a change,
//! and the `Debug` output of a value shows its length, never its content (PII).
//!
//! Layouts: <https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html>.

use std::fmt;

use crate::change::Timestamp;
use crate::lsn::Lsn;

/// One pgoutput (proto_version 1) message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PgOutputMessage {
    Begin(BeginBody),
    Commit(CommitBody),
    Origin(OriginBody),
    Relation(RelationBody),
    Type(TypeBody),
    Insert(InsertBody),
    Update(UpdateBody),
    Delete(DeleteBody),
    Truncate(TruncateBody),
    /// A logical decoding message (`pg_logical_emit_message`).
    Message(LogicalMessageBody),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BeginBody {
    /// LSN of the transaction's commit record.
    pub final_lsn: Lsn,
    pub commit_time: Timestamp,
    pub xid: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CommitBody {
    /// Unused by Postgres 15 (always 0).
    pub flags: u8,
    pub commit_lsn: Lsn,
    /// End of the commit record: what the slot is confirmed to.
    pub end_lsn: Lsn,
    pub commit_time: Timestamp,
}

/// The replication origin a transaction came from (sent after its Begin).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OriginBody {
    pub commit_lsn: Lsn,
    pub name: String,
}

/// The shape of a relation, sent before its first change in a session and again
/// after every schema change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RelationBody {
    pub id: u32,
    /// Empty for `pg_catalog`.
    pub namespace: String,
    pub name: String,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RelationColumn {
    /// Bit 1: the column is part of the replica identity key.
    pub flags: u8,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

impl RelationColumn {
    pub(crate) fn is_key(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// A non-built-in type used by a following Relation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TypeBody {
    pub oid: u32,
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InsertBody {
    pub relation_id: u32,
    pub new: TupleData,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UpdateBody {
    pub relation_id: u32,
    /// Sent when the key changed (`K`) or with `REPLICA IDENTITY FULL` (`O`).
    pub old: Option<OldTuple>,
    pub new: TupleData,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DeleteBody {
    pub relation_id: u32,
    pub old: OldTuple,
}

/// The old row of an update or delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum OldTuple {
    /// `K`: only the replica identity columns hold values, the others are null.
    Key(TupleData),
    /// `O`: the whole old row (`REPLICA IDENTITY FULL`).
    Full(TupleData),
}

impl OldTuple {
    pub(crate) fn tuple(&self) -> &TupleData {
        match self {
            OldTuple::Key(tuple) | OldTuple::Full(tuple) => tuple,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TruncateBody {
    /// Bit 1: `CASCADE`, bit 2: `RESTART IDENTITY`.
    pub options: u8,
    pub relation_ids: Vec<u32>,
}

#[cfg(test)]
impl TruncateBody {
    pub(crate) fn cascade(&self) -> bool {
        self.options & 1 != 0
    }

    pub(crate) fn restart_identity(&self) -> bool {
        self.options & 2 != 0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogicalMessageBody {
    /// Sent inside its transaction (between Begin and Commit) when true.
    pub transactional: bool,
    pub lsn: Lsn,
    pub prefix: String,
    pub content: Vec<u8>,
}

/// The column values of one row, in the order of the relation's columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TupleData(pub Vec<ColumnValue>);

/// One column value. Text values stay bytes: decode.rs checks UTF-8 only for the
/// columns it reads.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum ColumnValue {
    Null,
    /// `u`: an unchanged value stored out of line (TOAST), not sent.
    UnchangedToast,
    Text(Vec<u8>),
    Binary(Vec<u8>),
}

/// Lengths only: values may be message bodies, which must never reach a log.
impl fmt::Debug for ColumnValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnValue::Null => f.write_str("Null"),
            ColumnValue::UnchangedToast => f.write_str("UnchangedToast"),
            ColumnValue::Text(v) => write!(f, "Text({} bytes)", v.len()),
            ColumnValue::Binary(v) => write!(f, "Binary({} bytes)", v.len()),
        }
    }
}

/// Bytes that are not a valid pgoutput v1 message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed pgoutput {message} message at byte {offset}: {problem}")]
pub struct PgOutputError {
    /// `Begin`, `Insert`, …; `unknown` when the type byte is not one of them.
    pub message: &'static str,
    pub offset: usize,
    pub problem: Problem,
}

/// What was wrong with the bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("no bytes")]
    Empty,
    #[error(
        "unknown message type {0:#04x} (streaming and two-phase messages need proto_version 2+, replytime asks for 1)"
    )]
    UnknownType(u8),
    #[error("{field}: needs {needed} bytes, {available} left")]
    Truncated {
        field: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("{field}: string without a terminating NUL byte")]
    UnterminatedString { field: &'static str },
    #[error("{field}: not valid UTF-8")]
    NotUtf8 { field: &'static str },
    #[error("{field}: negative count or length {value}")]
    Negative { field: &'static str, value: i32 },
    #[error("{field}: expected one of {expected}, found {found:#04x}")]
    UnexpectedByte {
        field: &'static str,
        expected: &'static str,
        found: u8,
    },
    #[error("{field}: timestamp {micros} is out of range")]
    TimestampRange { field: &'static str, micros: i64 },
    #[error("{0} bytes left after the end of the message")]
    TrailingBytes(usize),
}

/// Decodes one pgoutput v1 message. Never panics; every error names the message
/// type, the byte offset and what was wrong.
pub(crate) fn decode(bytes: &[u8]) -> Result<PgOutputMessage, PgOutputError> {
    let Some((&tag, _)) = bytes.split_first() else {
        return Err(PgOutputError {
            message: "empty",
            offset: 0,
            problem: Problem::Empty,
        });
    };
    let mut reader = Reader {
        bytes,
        pos: 1,
        message: message_name(tag),
    };
    let message = match tag {
        b'B' => PgOutputMessage::Begin(begin(&mut reader)?),
        b'C' => PgOutputMessage::Commit(commit(&mut reader)?),
        b'O' => PgOutputMessage::Origin(origin(&mut reader)?),
        b'R' => PgOutputMessage::Relation(relation(&mut reader)?),
        b'Y' => PgOutputMessage::Type(type_body(&mut reader)?),
        b'I' => PgOutputMessage::Insert(insert(&mut reader)?),
        b'U' => PgOutputMessage::Update(update(&mut reader)?),
        b'D' => PgOutputMessage::Delete(delete(&mut reader)?),
        b'T' => PgOutputMessage::Truncate(truncate(&mut reader)?),
        b'M' => PgOutputMessage::Message(logical_message(&mut reader)?),
        other => return Err(reader.error_at(0, Problem::UnknownType(other))),
    };
    reader.finish()?;
    Ok(message)
}

fn message_name(tag: u8) -> &'static str {
    match tag {
        b'B' => "Begin",
        b'C' => "Commit",
        b'O' => "Origin",
        b'R' => "Relation",
        b'Y' => "Type",
        b'I' => "Insert",
        b'U' => "Update",
        b'D' => "Delete",
        b'T' => "Truncate",
        b'M' => "Message",
        _ => "unknown",
    }
}

fn begin(r: &mut Reader<'_>) -> Result<BeginBody, PgOutputError> {
    Ok(BeginBody {
        final_lsn: r.lsn("final LSN")?,
        commit_time: r.timestamp("commit timestamp")?,
        xid: r.u32("xid")?,
    })
}

fn commit(r: &mut Reader<'_>) -> Result<CommitBody, PgOutputError> {
    Ok(CommitBody {
        flags: r.u8("flags")?,
        commit_lsn: r.lsn("commit LSN")?,
        end_lsn: r.lsn("end LSN")?,
        commit_time: r.timestamp("commit timestamp")?,
    })
}

fn origin(r: &mut Reader<'_>) -> Result<OriginBody, PgOutputError> {
    Ok(OriginBody {
        commit_lsn: r.lsn("origin commit LSN")?,
        name: r.cstring("origin name")?,
    })
}

/// Smallest encoding of one Relation column: flags, empty name, type OID, modifier.
const MIN_RELATION_COLUMN_BYTES: usize = 1 + 1 + 4 + 4;

fn relation(r: &mut Reader<'_>) -> Result<RelationBody, PgOutputError> {
    let id = r.u32("relation id")?;
    let namespace = r.cstring("namespace")?;
    let name = r.cstring("relation name")?;
    let replica_identity = r.u8("replica identity")?;
    let count = r.count("column count", MIN_RELATION_COLUMN_BYTES)?;
    let mut columns = Vec::with_capacity(count);
    for _ in 0..count {
        columns.push(RelationColumn {
            flags: r.u8("column flags")?,
            name: r.cstring("column name")?,
            type_oid: r.u32("column type OID")?,
            type_modifier: r.i32("column type modifier")?,
        });
    }
    Ok(RelationBody {
        id,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn type_body(r: &mut Reader<'_>) -> Result<TypeBody, PgOutputError> {
    Ok(TypeBody {
        oid: r.u32("type OID")?,
        namespace: r.cstring("type namespace")?,
        name: r.cstring("type name")?,
    })
}

fn insert(r: &mut Reader<'_>) -> Result<InsertBody, PgOutputError> {
    let relation_id = r.u32("relation id")?;
    r.expect_byte("new tuple marker", b"N", "'N'")?;
    Ok(InsertBody {
        relation_id,
        new: r.tuple()?,
    })
}

fn update(r: &mut Reader<'_>) -> Result<UpdateBody, PgOutputError> {
    let relation_id = r.u32("relation id")?;
    let marker = r.expect_byte("tuple marker", b"KON", "'K', 'O' or 'N'")?;
    let old = match marker {
        b'N' => None,
        _ => {
            let old = old_tuple(marker, r.tuple()?);
            r.expect_byte("new tuple marker", b"N", "'N'")?;
            Some(old)
        }
    };
    Ok(UpdateBody {
        relation_id,
        old,
        new: r.tuple()?,
    })
}

fn delete(r: &mut Reader<'_>) -> Result<DeleteBody, PgOutputError> {
    let relation_id = r.u32("relation id")?;
    let marker = r.expect_byte("old tuple marker", b"KO", "'K' or 'O'")?;
    Ok(DeleteBody {
        relation_id,
        old: old_tuple(marker, r.tuple()?),
    })
}

fn old_tuple(marker: u8, tuple: TupleData) -> OldTuple {
    if marker == b'K' {
        OldTuple::Key(tuple)
    } else {
        OldTuple::Full(tuple)
    }
}

fn truncate(r: &mut Reader<'_>) -> Result<TruncateBody, PgOutputError> {
    let count_at = r.pos;
    let count = r.i32("relation count")?;
    let options = r.u8("options")?;
    let count = r.check_count("relation count", count, 4, count_at)?;
    let mut relation_ids = Vec::with_capacity(count);
    for _ in 0..count {
        relation_ids.push(r.u32("relation id")?);
    }
    Ok(TruncateBody {
        options,
        relation_ids,
    })
}

fn logical_message(r: &mut Reader<'_>) -> Result<LogicalMessageBody, PgOutputError> {
    let flags = r.u8("flags")?;
    let lsn = r.lsn("message LSN")?;
    let prefix = r.cstring("prefix")?;
    let length = r.length("content length")?;
    Ok(LogicalMessageBody {
        transactional: flags & 1 != 0,
        lsn,
        prefix,
        content: r.take("content", length)?.to_vec(),
    })
}

/// A cursor over one message that turns every short read into a [`PgOutputError`].
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn error_at(&self, offset: usize, problem: Problem) -> PgOutputError {
        PgOutputError {
            message: self.message,
            offset,
            problem,
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], PgOutputError> {
        let slice = self
            .pos
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.pos..end));
        match slice {
            Some(slice) => {
                self.pos += n;
                Ok(slice)
            }
            None => Err(self.error_at(
                self.pos,
                Problem::Truncated {
                    field,
                    needed: n,
                    available: self.remaining(),
                },
            )),
        }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], PgOutputError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, PgOutputError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, PgOutputError> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, PgOutputError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, PgOutputError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn lsn(&mut self, field: &'static str) -> Result<Lsn, PgOutputError> {
        Ok(Lsn(u64::from_be_bytes(self.array(field)?)))
    }

    /// Microseconds since 2000-01-01, converted to the Unix epoch without overflow.
    fn timestamp(&mut self, field: &'static str) -> Result<Timestamp, PgOutputError> {
        let offset = self.pos;
        let micros = i64::from_be_bytes(self.array(field)?);
        let epoch_offset = Timestamp::from_pg_micros(0).0;
        match micros.checked_add(epoch_offset) {
            Some(_) => Ok(Timestamp::from_pg_micros(micros)),
            None => Err(self.error_at(offset, Problem::TimestampRange { field, micros })),
        }
    }

    /// A NUL-terminated UTF-8 string.
    fn cstring(&mut self, field: &'static str) -> Result<String, PgOutputError> {
        let start = self.pos;
        let rest = self.bytes.get(start..).unwrap_or_default();
        let Some(len) = rest.iter().position(|&b| b == 0) else {
            return Err(self.error_at(start, Problem::UnterminatedString { field }));
        };
        let text = self.take(field, len)?;
        self.pos += 1; // the NUL found above
        match std::str::from_utf8(text) {
            Ok(text) => Ok(text.to_string()),
            Err(_) => Err(self.error_at(start, Problem::NotUtf8 { field })),
        }
    }

    /// A byte that must be one of `allowed`.
    fn expect_byte(
        &mut self,
        field: &'static str,
        allowed: &[u8],
        expected: &'static str,
    ) -> Result<u8, PgOutputError> {
        let offset = self.pos;
        let found = self.u8(field)?;
        if allowed.contains(&found) {
            Ok(found)
        } else {
            Err(self.error_at(
                offset,
                Problem::UnexpectedByte {
                    field,
                    expected,
                    found,
                },
            ))
        }
    }

    /// An Int16 count of items of at least `min_item_bytes` each.
    fn count(
        &mut self,
        field: &'static str,
        min_item_bytes: usize,
    ) -> Result<usize, PgOutputError> {
        let at = self.pos;
        let count = self.i16(field)?;
        self.check_count(field, i32::from(count), min_item_bytes, at)
    }

    /// An Int32 length of a byte string.
    fn length(&mut self, field: &'static str) -> Result<usize, PgOutputError> {
        let at = self.pos;
        let length = self.i32(field)?;
        self.check_count(field, length, 1, at)
    }

    /// Validates a count or length (read at offset `at`) against the bytes left, so
    /// that no allocation is sized by an unchecked number.
    fn check_count(
        &self,
        field: &'static str,
        value: i32,
        min_item_bytes: usize,
        at: usize,
    ) -> Result<usize, PgOutputError> {
        let Ok(count) = usize::try_from(value) else {
            return Err(self.error_at(at, Problem::Negative { field, value }));
        };
        let needed = count.saturating_mul(min_item_bytes);
        if needed > self.remaining() {
            return Err(self.error_at(
                at,
                Problem::Truncated {
                    field,
                    needed,
                    available: self.remaining(),
                },
            ));
        }
        Ok(count)
    }

    fn tuple(&mut self) -> Result<TupleData, PgOutputError> {
        let count = self.count("tuple column count", 1)?;
        let mut values = Vec::with_capacity(count);
        for _ in 0..count {
            values.push(self.column_value()?);
        }
        Ok(TupleData(values))
    }

    fn column_value(&mut self) -> Result<ColumnValue, PgOutputError> {
        let kind = self.expect_byte("column kind", b"nutb", "'n', 'u', 't' or 'b'")?;
        match kind {
            b'n' => Ok(ColumnValue::Null),
            b'u' => Ok(ColumnValue::UnchangedToast),
            _ => {
                let length = self.length("column value length")?;
                let value = self.take("column value", length)?.to_vec();
                Ok(if kind == b't' {
                    ColumnValue::Text(value)
                } else {
                    ColumnValue::Binary(value)
                })
            }
        }
    }

    fn finish(self) -> Result<(), PgOutputError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(self.error_at(self.pos, Problem::TrailingBytes(extra))),
        }
    }
}

/// Captured fixtures and fuzzing helpers shared with decode.rs's tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    use proptest::prelude::*;

    /// Messages captured from PostgreSQL 15 (see tests/fixtures/pgoutput/capture.sh).
    pub(crate) const STREAM: &str = include_str!("../../tests/fixtures/pgoutput/stream.hex");
    pub(crate) const BINARY: &str = include_str!("../../tests/fixtures/pgoutput/binary.hex");
    pub(crate) const SCHEMA_CHANGE: &str =
        include_str!("../../tests/fixtures/pgoutput/schema_change.hex");
    pub(crate) const MISSING_COLUMN: &str =
        include_str!("../../tests/fixtures/pgoutput/missing_column.hex");

    /// One message per line, hex encoded.
    pub(crate) fn fixture(text: &str) -> Vec<Vec<u8>> {
        text.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(hex)
            .collect()
    }

    pub(crate) fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex fixture"))
            .collect()
    }

    /// Wall-clock budget per property: once spent, the remaining cases pass without
    /// running, so the suite stays fast on a busy machine. A failure prints its
    /// seed, and PROPTEST_RNG_SEED replays it.
    const BUDGET: Duration = Duration::from_secs(4);

    pub(crate) fn over_budget(start: &OnceLock<Instant>) -> bool {
        start.get_or_init(Instant::now).elapsed() > BUDGET
    }

    /// A captured message with a few bytes flipped, cut, inserted or removed.
    pub(crate) fn mutated_message(messages: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
        let edit = (0usize..4, any::<prop::sample::Index>(), any::<u8>());
        let edits = prop::collection::vec(edit, 1..6);
        (prop::sample::select(messages), edits).prop_map(|(mut bytes, edits)| {
            for (op, at, byte) in edits {
                let i = at.index(bytes.len() + 1);
                match op {
                    0 if i < bytes.len() => bytes[i] = byte,
                    1 => bytes.truncate(i),
                    2 => bytes.insert(i, byte),
                    _ if i < bytes.len() => {
                        bytes.remove(i);
                    }
                    _ => {}
                }
            }
            bytes
        })
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{BINARY, STREAM, fixture, hex};
    use super::*;

    fn text(value: &str) -> ColumnValue {
        ColumnValue::Text(value.as_bytes().to_vec())
    }

    fn stream() -> Vec<PgOutputMessage> {
        fixture(STREAM)
            .iter()
            .enumerate()
            .map(|(i, bytes)| decode(bytes).unwrap_or_else(|e| panic!("line {}: {e}", i + 1)))
            .collect()
    }

    #[test]
    fn every_captured_message_decodes() {
        let kinds: String = stream()
            .iter()
            .map(|m| match m {
                PgOutputMessage::Begin(_) => 'B',
                PgOutputMessage::Commit(_) => 'C',
                PgOutputMessage::Origin(_) => 'O',
                PgOutputMessage::Relation(_) => 'R',
                PgOutputMessage::Type(_) => 'Y',
                PgOutputMessage::Insert(_) => 'I',
                PgOutputMessage::Update(_) => 'U',
                PgOutputMessage::Delete(_) => 'D',
                PgOutputMessage::Truncate(_) => 'T',
                PgOutputMessage::Message(_) => 'M',
            })
            .collect();
        assert_eq!(
            kinds,
            "BRIRIC BRIIC BYRIRIC BUC BUC BIC BUC BUC BUC BIC BIC BRIC BMC M BOIC BDC BDC BRTC BRRRTC"
                .replace(' ', "")
        );
    }

    #[test]
    fn begin_and_commit_carry_lsns_and_times() {
        let messages = stream();
        let (PgOutputMessage::Begin(begin), PgOutputMessage::Commit(commit)) =
            (&messages[0], &messages[5])
        else {
            panic!("expected Begin … Commit, got {messages:?}");
        };
        assert_eq!(begin.final_lsn, commit.commit_lsn);
        assert!(commit.end_lsn > commit.commit_lsn);
        assert_eq!(begin.commit_time, commit.commit_time);
        assert_eq!(commit.flags, 0);
        assert!(begin.commit_time > Timestamp::parse_pg_text("2024-01-01 00:00:00+00").unwrap());
        assert!(begin.xid > 0);
    }

    #[test]
    fn relation_lists_columns_with_types_and_key_flags() {
        let PgOutputMessage::Relation(rel) = &stream()[1] else {
            panic!("expected a Relation");
        };
        assert_eq!(
            (rel.namespace.as_str(), rel.name.as_str()),
            ("public", "EmailCampaign")
        );
        assert_eq!(rel.replica_identity, b'd');
        let columns: Vec<(&str, u32, bool)> = rel
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.type_oid, c.is_key()))
            .collect();
        assert_eq!(
            columns,
            [
                ("id", 25, true),
                ("name", 25, false),
                ("aiAutoSendDelayMinSeconds", 23, false),
                ("aiAutoSendDelayMaxSeconds", 23, false),
                ("responseMode", 25, false),
                ("createdAt", 1184, false),
            ]
        );
        assert!(rel.columns.iter().all(|c| c.type_modifier == -1));
    }

    #[test]
    fn insert_holds_text_and_null_values() {
        let PgOutputMessage::Insert(insert) = &stream()[4] else {
            panic!("expected an Insert");
        };
        let values = &insert.new.0;
        assert_eq!(values.len(), 5);
        assert_eq!(
            values[..4],
            [
                text("lead_1"),
                text("client_1"),
                text("camp_1"),
                ColumnValue::Null
            ]
        );
    }

    #[test]
    fn type_message_names_the_enum() {
        let PgOutputMessage::Type(ty) = &stream()[12] else {
            panic!("expected a Type");
        };
        assert_eq!(
            (ty.namespace.as_str(), ty.name.as_str()),
            ("public", "Disposition")
        );
        let PgOutputMessage::Relation(rel) = &stream()[13] else {
            panic!("expected a Relation");
        };
        assert_eq!(rel.replica_identity, b'f');
        assert_eq!(rel.columns[4].type_oid, ty.oid);
        assert!(rel.columns.iter().all(RelationColumn::is_key));
    }

    #[test]
    fn update_without_key_change_has_no_old_tuple_and_marks_toast() {
        let PgOutputMessage::Update(update) = &stream()[22] else {
            panic!("expected an Update");
        };
        assert!(update.old.is_none());
        assert_eq!(update.new.0[4], text("lead"));
        assert_eq!(update.new.0[8], ColumnValue::UnchangedToast, "body");
    }

    #[test]
    fn update_of_the_key_sends_the_old_key() {
        let PgOutputMessage::Update(update) = &stream()[31] else {
            panic!("expected an Update");
        };
        let Some(OldTuple::Key(old)) = &update.old else {
            panic!("expected an old key, got {:?}", update.old);
        };
        assert_eq!(old.0[0], text("msg_2"));
        assert!(old.0[1..].iter().all(|v| *v == ColumnValue::Null));
        assert_eq!(update.new.0[0], text("msg_2b"));
    }

    #[test]
    fn replica_identity_full_sends_old_tuples() {
        let messages = stream();
        let PgOutputMessage::Update(update) = &messages[34] else {
            panic!("expected an Update");
        };
        let Some(OldTuple::Full(old)) = &update.old else {
            panic!("expected a full old tuple");
        };
        assert_eq!(old.0[4], text("AUTO_SENT"));
        assert_eq!(update.new.0[4], text("EDITED"));
        let PgOutputMessage::Delete(delete) = &messages[58] else {
            panic!("expected a Delete");
        };
        assert!(matches!(&delete.old, OldTuple::Full(t) if t.0[0] == text("draft_1")));
    }

    #[test]
    fn delete_sends_the_key() {
        let PgOutputMessage::Delete(delete) = &stream()[55] else {
            panic!("expected a Delete");
        };
        let OldTuple::Key(key) = &delete.old else {
            panic!("expected a key");
        };
        assert_eq!(key.0[0], text("msg_3"));
    }

    #[test]
    fn logical_messages_and_origin() {
        let messages = stream();
        let PgOutputMessage::Message(tx) = &messages[47] else {
            panic!("expected a Message");
        };
        assert!(tx.transactional);
        assert_eq!(
            (tx.prefix.as_str(), tx.content.as_slice()),
            ("replytime-heartbeat", &b"tx"[..])
        );
        let PgOutputMessage::Message(nontx) = &messages[49] else {
            panic!("expected a Message");
        };
        assert!(!nontx.transactional);
        assert_eq!(nontx.content, b"nontx");
        assert!(nontx.lsn > tx.lsn);
        let PgOutputMessage::Origin(origin) = &messages[51] else {
            panic!("expected an Origin");
        };
        assert_eq!(origin.name, "upstream");
        assert_eq!(origin.commit_lsn, Lsn(0x1234));
    }

    #[test]
    fn truncate_lists_relations_and_options() {
        let messages = stream();
        let PgOutputMessage::Truncate(single) = &messages[62] else {
            panic!("expected a Truncate");
        };
        assert_eq!((single.relation_ids.len(), single.options), (1, 0));
        let PgOutputMessage::Truncate(many) = &messages[68] else {
            panic!("expected a Truncate");
        };
        assert_eq!(many.relation_ids.len(), 3);
        assert!(many.cascade() && many.restart_identity());
    }

    #[test]
    fn binary_values_stay_raw() {
        let messages: Vec<_> = fixture(BINARY).iter().map(|b| decode(b).unwrap()).collect();
        let PgOutputMessage::Insert(insert) = &messages[2] else {
            panic!("expected an Insert");
        };
        assert_eq!(insert.new.0[0], ColumnValue::Binary(b"job_b".to_vec()));
        // runAt: 2024-03-01 10:05:14+00 as int8 microseconds since 2000-01-01.
        let ColumnValue::Binary(run_at) = &insert.new.0[5] else {
            panic!("expected a binary runAt");
        };
        let micros = i64::from_be_bytes(run_at.as_slice().try_into().unwrap());
        assert_eq!(
            Timestamp::from_pg_micros(micros),
            Timestamp::parse_pg_text("2024-03-01 10:05:14+00").unwrap()
        );
    }

    #[test]
    fn debug_output_hides_values() {
        let shown = format!(
            "{:?}",
            TupleData(vec![text("secret body"), ColumnValue::Null])
        );
        assert_eq!(shown, "TupleData([Text(11 bytes), Null])");
    }

    fn problem(bytes: &[u8]) -> PgOutputError {
        decode(bytes).expect_err("should not decode")
    }

    #[test]
    fn errors_name_message_offset_and_problem() {
        assert_eq!(problem(b"").problem, Problem::Empty);
        let unknown = problem(b"S\0\0\0\x01");
        assert_eq!((unknown.message, unknown.offset), ("unknown", 0));
        assert_eq!(unknown.problem, Problem::UnknownType(b'S'));

        let short = problem(b"B\0\0\0\0\0\0\0\x01\0\0");
        assert_eq!((short.message, short.offset), ("Begin", 9));
        assert_eq!(
            short.to_string(),
            "malformed pgoutput Begin message at byte 9: commit timestamp: needs 8 bytes, 2 left"
        );

        let marker = problem(b"I\0\0\0\x01X\0\0");
        assert_eq!((marker.message, marker.offset), ("Insert", 5));
        assert!(matches!(
            marker.problem,
            Problem::UnexpectedByte { found: b'X', .. }
        ));

        let kind = problem(b"I\0\0\0\x01N\0\x01x");
        assert_eq!(kind.offset, 8);
        assert!(matches!(
            kind.problem,
            Problem::UnexpectedByte {
                field: "column kind",
                ..
            }
        ));
    }

    #[test]
    fn lengths_are_checked_before_allocation() {
        // A column value claiming 2 GB.
        let huge = problem(b"I\0\0\0\x01N\0\x01t\x7f\xff\xff\xff");
        assert_eq!(huge.offset, 9);
        assert!(matches!(
            huge.problem,
            Problem::Truncated {
                needed: 0x7fff_ffff,
                ..
            }
        ));
        let negative = problem(b"I\0\0\0\x01N\0\x01t\xff\xff\xff\xff");
        assert!(matches!(
            negative.problem,
            Problem::Negative { value: -1, .. }
        ));
        // 32767 columns announced, none sent.
        let columns = problem(b"I\0\0\0\x01N\x7f\xff");
        assert_eq!(columns.offset, 6);
        assert!(matches!(
            columns.problem,
            Problem::Truncated {
                field: "tuple column count",
                ..
            }
        ));
        let relations = problem(b"T\x40\0\0\0\0");
        assert!(matches!(
            relations.problem,
            Problem::Truncated {
                field: "relation count",
                ..
            }
        ));
    }

    #[test]
    fn strings_must_end_and_be_utf8() {
        let unterminated = problem(b"Y\0\0\0\x01public");
        assert_eq!(unterminated.offset, 5);
        assert!(matches!(
            unterminated.problem,
            Problem::UnterminatedString { .. }
        ));
        let latin1 = problem(b"Y\0\0\0\x01p\xe9\0t\0");
        assert!(matches!(
            latin1.problem,
            Problem::NotUtf8 {
                field: "type namespace"
            }
        ));
    }

    #[test]
    fn trailing_bytes_and_overflowing_timestamps_are_errors() {
        let mut begin = hex("420000000001556e18000303d7cbb81c76000002f2");
        assert!(decode(&begin).is_ok());
        begin.push(0);
        assert_eq!(problem(&begin).problem, Problem::TrailingBytes(1));
        let far = problem(b"B\0\0\0\0\0\0\0\x01\x7f\xff\xff\xff\xff\xff\xff\xfe\0\0\0\x01");
        assert!(matches!(far.problem, Problem::TimestampRange { .. }));
    }

    mod properties {
        use std::sync::OnceLock;
        use std::time::Instant;

        use proptest::prelude::*;

        use super::super::test_support::{STREAM, fixture, mutated_message, over_budget};
        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(10_000))]

            #[test]
            fn arbitrary_bytes_never_panic(
                tag in prop::sample::select(b"BCORYIUDTMX".to_vec()),
                bytes in prop::collection::vec(any::<u8>(), 0..64),
            ) {
                static START: OnceLock<Instant> = OnceLock::new();
                if !over_budget(&START) {
                    let mut message = vec![tag];
                    message.extend(bytes);
                    let _ = decode(&message);
                }
            }

            #[test]
            fn mutated_messages_never_panic(bytes in mutated_message(fixture(STREAM))) {
                static START: OnceLock<Instant> = OnceLock::new();
                if !over_budget(&START)
                    && let Err(e) = decode(&bytes)
                {
                    prop_assert!(e.offset <= bytes.len(), "{e}");
                }
            }
        }
    }
}
