//! Ids as the application's columns spell them: `uuid`, a UUID in text, or an integer the
//! database assigns.
//!
//! The rest of vapictl names rows by [`Uuid`]. An integer id `n` travels as the UUID whose high
//! 64 bits are zero and whose low 64 bits are `n` (`00000000-0000-0000-0000-00000000002a` is row
//! 42): it never collides with a real (v4) UUID, and the store turns it back into `n` before any
//! statement, so the database only ever sees the integer.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Postgres, Sqlite, Type, TypeInfo, ValueRef};
use uuid::Uuid;

/// How a column spells an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdKind {
    /// PostgreSQL `uuid`.
    Uuid,
    /// A UUID as lowercase hyphenated text (SQLite's usual form; PostgreSQL `text`/`varchar`).
    Text,
    /// An integer; for a row id, one the database assigns (rowid, serial, identity).
    Integer,
}

/// One id value, bound or read in the column's own type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DbId {
    Uuid(Uuid),
    Text(String),
    Int(i64),
}

/// The UUID that stands for the integer id `n`.
pub(crate) fn int_as_uuid(n: i64) -> Uuid {
    Uuid::from_u64_pair(0, n as u64)
}

/// The integer `id` stands for, when it is one (see the module docs).
pub(crate) fn uuid_as_int(id: Uuid) -> Option<i64> {
    let (high, low) = id.as_u64_pair();
    (high == 0).then_some(low as i64)
}

impl IdKind {
    /// `id` in this kind, or `None` when an integer column is given a real UUID.
    pub(crate) fn bind(self, id: Uuid) -> Option<DbId> {
        match self {
            IdKind::Uuid => Some(DbId::Uuid(id)),
            IdKind::Text => Some(DbId::Text(id.hyphenated().to_string())),
            IdKind::Integer => uuid_as_int(id).map(DbId::Int),
        }
    }
}

impl DbId {
    /// The id as the rest of vapictl names it. Text that is not a UUID reads as the nil UUID,
    /// which names no owner and no row (a write to it matches nothing).
    pub(crate) fn to_uuid(&self) -> Uuid {
        match self {
            DbId::Uuid(u) => *u,
            DbId::Text(s) => Uuid::parse_str(s.trim()).unwrap_or_default(),
            DbId::Int(n) => int_as_uuid(*n),
        }
    }
}

impl DbId {
    /// The id as text, as a column of vapictl's that refers to an app row in any id type
    /// (`vapictl_squad_id`) holds it: the integer's digits, or the hyphenated UUID.
    pub(crate) fn to_text(&self) -> String {
        match self {
            DbId::Uuid(u) => u.hyphenated().to_string(),
            DbId::Text(s) => s.clone(),
            DbId::Int(n) => n.to_string(),
        }
    }

    /// An id written by [`to_text`](Self::to_text), as the rest of vapictl names it; `None` for
    /// text that is neither a UUID nor an integer.
    pub(crate) fn uuid_of_text(text: &str) -> Option<Uuid> {
        let text = text.trim();
        Uuid::parse_str(text)
            .ok()
            .or_else(|| text.parse::<i64>().ok().map(int_as_uuid))
    }
}

impl From<DbId> for Uuid {
    fn from(id: DbId) -> Uuid {
        id.to_uuid()
    }
}

/// An id parameter that may be NULL, typed as its column all the same: PostgreSQL will not
/// assign a NULL of type `uuid` to a `bigint` column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NullableId {
    pub kind: IdKind,
    pub value: Option<DbId>,
}

impl IdKind {
    fn pg_type(self) -> PgTypeInfo {
        match self {
            IdKind::Uuid => <Uuid as Type<Postgres>>::type_info(),
            IdKind::Text => <String as Type<Postgres>>::type_info(),
            IdKind::Integer => <i64 as Type<Postgres>>::type_info(),
        }
    }
}

impl Type<Postgres> for NullableId {
    fn type_info() -> PgTypeInfo {
        <DbId as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for NullableId {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        match &self.value {
            Some(id) => <DbId as Encode<Postgres>>::encode_by_ref(id, buf),
            None => Ok(IsNull::Yes),
        }
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        Some(self.kind.pg_type())
    }
}

impl Type<Sqlite> for NullableId {
    fn type_info() -> SqliteTypeInfo {
        <DbId as Type<Sqlite>>::type_info()
    }
}

impl Encode<'_, Sqlite> for NullableId {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        match &self.value {
            Some(id) => <DbId as Encode<Sqlite>>::encode_by_ref(id, buf),
            None => Ok(IsNull::Yes),
        }
    }
}

// --- PostgreSQL -------------------------------------------------------------------------------

impl Type<Postgres> for DbId {
    fn type_info() -> PgTypeInfo {
        <Uuid as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <Uuid as Type<Postgres>>::compatible(ty)
            || <String as Type<Postgres>>::compatible(ty)
            || <i64 as Type<Postgres>>::compatible(ty)
            || <i32 as Type<Postgres>>::compatible(ty)
            || <i16 as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for DbId {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        match self {
            DbId::Uuid(u) => <Uuid as Encode<Postgres>>::encode_by_ref(u, buf),
            DbId::Text(s) => <String as Encode<Postgres>>::encode_by_ref(s, buf),
            DbId::Int(n) => <i64 as Encode<Postgres>>::encode_by_ref(n, buf),
        }
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        Some(match self {
            DbId::Uuid(_) => <Uuid as Type<Postgres>>::type_info(),
            DbId::Text(_) => <String as Type<Postgres>>::type_info(),
            DbId::Int(_) => <i64 as Type<Postgres>>::type_info(),
        })
    }
}

impl<'r> Decode<'r, Postgres> for DbId {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let ty = value.type_info().into_owned();
        if <Uuid as Type<Postgres>>::compatible(&ty) {
            Ok(DbId::Uuid(<Uuid as Decode<Postgres>>::decode(value)?))
        } else if matches!(ty.name(), "INT2" | "INT4" | "INT8") {
            Ok(DbId::Int(<i64 as Decode<Postgres>>::decode(value)?))
        } else {
            Ok(DbId::Text(<String as Decode<Postgres>>::decode(value)?))
        }
    }
}

// --- SQLite -----------------------------------------------------------------------------------

impl Type<Sqlite> for DbId {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    /// SQLite columns hold whatever was written; the value's own type decides (see `decode`).
    fn compatible(_ty: &SqliteTypeInfo) -> bool {
        true
    }
}

impl Encode<'_, Sqlite> for DbId {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        match self {
            // SQLite has no uuid type: always lowercase hyphenated text, never a BLOB.
            DbId::Uuid(u) => <String as Encode<Sqlite>>::encode(u.hyphenated().to_string(), buf),
            DbId::Text(s) => <String as Encode<Sqlite>>::encode_by_ref(s, buf),
            DbId::Int(n) => <i64 as Encode<Sqlite>>::encode_by_ref(n, buf),
        }
    }
}

impl<'r> Decode<'r, Sqlite> for DbId {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.type_info().name() == "INTEGER" {
            Ok(DbId::Int(<i64 as Decode<Sqlite>>::decode(value)?))
        } else {
            Ok(DbId::Text(<String as Decode<Sqlite>>::decode(value)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_ids_round_trip_through_uuids_and_never_look_like_v4() {
        for n in [0, 1, 42, i64::MAX, -7] {
            let u = int_as_uuid(n);
            assert_eq!(uuid_as_int(u), Some(n));
            assert_ne!(u.get_version_num(), 4);
        }
        assert_eq!(uuid_as_int(Uuid::new_v4()), None);
        assert_eq!(
            int_as_uuid(42).to_string(),
            "00000000-0000-0000-0000-00000000002a"
        );
    }

    #[test]
    fn text_ids_parse_in_any_case_and_junk_is_nobody() {
        let u = Uuid::new_v4();
        let upper = DbId::Text(u.hyphenated().to_string().to_uppercase());
        assert_eq!(upper.to_uuid(), u);
        assert_eq!(DbId::Text("not-a-uuid".into()).to_uuid(), Uuid::nil());
    }
}
