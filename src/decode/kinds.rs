//! What a column's values look like: the [`ColumnKind`] lattice and its merge (shared with
//! [`crate::infer`]), the kind of one decoded value, and the Arrow types of nested values
//! (`json_type` reads a nested value's JSON text with the scanner, `merge_nested_types` joins
//! two such types, `has_empty_struct` finds the ones Parquet cannot store).
//!
//! It keeps no values and picks no schema: `builders` stores the values and widens a column
//! when its kind grows; `infer` merges the kinds of all pages into the export's schema.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields};

use super::scanner::{Json, Value};
use super::text::{is_date, is_timestamp};

/// What the values of one column look like, as far as the rows seen so far tell.
///
/// Kinds form a join lattice ([`ColumnKind::merge`]): `Null` is the bottom, `Text` the top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnKind {
    /// Only nulls (or the key never had a value).
    Null,
    /// JSON booleans.
    Bool,
    /// JSON numbers without fraction or exponent that fit an i64.
    Int,
    /// Any other JSON number (and integers mixed with them).
    Float,
    /// JSON strings; the flags say whether every one is a calendar date (`YYYY-MM-DD`) or an
    /// RFC 3339 timestamp.
    Str { dates: bool, timestamps: bool },
    /// JSON objects or arrays whose values all fit this Arrow type (kept as JSON text).
    Nested(DataType),
    /// Mixed values, written as text: strings verbatim, scalars as their text, nested values as
    /// their JSON.
    Text,
}

impl ColumnKind {
    /// The least kind that covers both `self` and `other`.
    ///
    /// Commutative and associative (for nested kinds, up to the order of struct fields, which
    /// is first-seen). `Null ⊔ X = X`, `Int ⊔ Float = Float`, strings keep a flag only when both
    /// sides have it, nested types merge with `merge_nested_types` (a conflict gives `Text`), and
    /// every other pair of different kinds gives `Text`.
    pub fn merge(&self, other: &ColumnKind) -> ColumnKind {
        use ColumnKind::*;
        match (self, other) {
            (Null, kind) | (kind, Null) => kind.clone(),
            (Bool, Bool) => Bool,
            (Int, Int) => Int,
            (Int | Float, Int | Float) => Float,
            (
                Str {
                    dates: d1,
                    timestamps: t1,
                },
                Str {
                    dates: d2,
                    timestamps: t2,
                },
            ) => Str {
                dates: *d1 && *d2,
                timestamps: *t1 && *t2,
            },
            (Nested(a), Nested(b)) => merge_nested_types(a, b).map_or(Text, Nested),
            _ => Text,
        }
    }
}

impl<'a> Value<'a> {
    /// The kind of a column holding only this value.
    pub(super) fn kind(&self) -> ColumnKind {
        match self {
            Value::Null => ColumnKind::Null,
            Value::Bool(_) => ColumnKind::Bool,
            Value::Int(_) => ColumnKind::Int,
            Value::Float(_) => ColumnKind::Float,
            Value::Str(s) => ColumnKind::Str {
                dates: is_date(s),
                timestamps: is_timestamp(s),
            },
            Value::Nested(raw) => json_type(raw).map_or(ColumnKind::Text, ColumnKind::Nested),
        }
    }
}

/// The least Arrow type covering both nested types, or None when they conflict.
///
/// Struct fields union by name (first-seen order, merged recursively), list elements merge,
/// `Int64 ⊔ Float64 = Float64`, `Null ⊔ X = X`, equal types stay; anything else conflicts.
pub(super) fn merge_nested_types(a: &DataType, b: &DataType) -> Option<DataType> {
    match (a, b) {
        (DataType::Null, t) | (t, DataType::Null) => Some(t.clone()),
        (a, b) if a == b => Some(a.clone()),
        (DataType::Int64, DataType::Float64) | (DataType::Float64, DataType::Int64) => {
            Some(DataType::Float64)
        }
        (DataType::List(a), DataType::List(b)) => {
            let item = merge_nested_types(a.data_type(), b.data_type())?;
            Some(list_of(item))
        }
        (DataType::Struct(a), DataType::Struct(b)) => {
            merge_struct_fields(a, b).map(DataType::Struct)
        }
        _ => None,
    }
}

fn merge_struct_fields(a: &Fields, b: &Fields) -> Option<Fields> {
    let mut fields: Vec<Field> = a.iter().map(|f| f.as_ref().clone()).collect();
    for field in b.iter() {
        add_struct_field(&mut fields, field.name(), field.data_type())?;
    }
    Some(Fields::from(fields))
}

/// Adds a field to a struct's fields, merging its type with a same-named field's.
fn add_struct_field(fields: &mut Vec<Field>, name: &str, data_type: &DataType) -> Option<()> {
    match fields.iter_mut().find(|f| f.name() == name) {
        Some(field) => {
            let merged = merge_nested_types(field.data_type(), data_type)?;
            *field = Field::new(name, merged, true);
        }
        None => fields.push(Field::new(name, data_type.clone(), true)),
    }
    Some(())
}

pub(super) fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(item, true)))
}

/// Whether the type holds a struct without fields anywhere (Parquet cannot store one).
pub(crate) fn has_empty_struct(data_type: &DataType) -> bool {
    match data_type {
        DataType::Struct(fields) => {
            fields.is_empty() || fields.iter().any(|f| has_empty_struct(f.data_type()))
        }
        DataType::List(item) => has_empty_struct(item.data_type()),
        _ => false,
    }
}

/// Deepest nesting [`json_type`] types: a deeper value has no Arrow type (its column is `Text`).
/// Bounds the recursion, so a hostile page cannot overflow the stack.
const MAX_TYPED_DEPTH: usize = 128;

/// The Arrow type of one nested JSON value: objects are structs (first-seen field order),
/// arrays are lists of their merged element type, numbers follow `parse_number`. None when
/// the value's parts conflict (e.g. `[1, "a"]`), a string cannot be decoded, the value nests
/// deeper than [`MAX_TYPED_DEPTH`] or it is not valid JSON.
pub(super) fn json_type(raw: &str) -> Option<DataType> {
    let mut json = Json::new(raw.as_bytes());
    let data_type = value_type(&mut json, MAX_TYPED_DEPTH)?;
    json.skip_ws();
    json.at_end().then_some(data_type)
}

fn value_type(json: &mut Json<'_>, depth: usize) -> Option<DataType> {
    json.skip_ws();
    match json.peek()? {
        b'{' => object_type(json, depth.checked_sub(1)?),
        b'[' => list_type(json, depth.checked_sub(1)?),
        _ => match json.value().ok()? {
            Value::Null => Some(DataType::Null),
            Value::Bool(_) => Some(DataType::Boolean),
            Value::Int(_) => Some(DataType::Int64),
            Value::Float(_) => Some(DataType::Float64),
            Value::Str(_) | Value::Nested(_) => Some(DataType::Utf8),
        },
    }
}

fn list_type(json: &mut Json<'_>, depth: usize) -> Option<DataType> {
    json.pos += 1;
    json.skip_ws();
    let mut item = DataType::Null;
    if !json.eat(b']') {
        loop {
            item = merge_nested_types(&item, &value_type(json, depth)?)?;
            json.skip_ws();
            if json.eat(b']') {
                break;
            }
            if !json.eat(b',') {
                return None;
            }
        }
    }
    Some(list_of(item))
}

fn object_type(json: &mut Json<'_>, depth: usize) -> Option<DataType> {
    json.pos += 1;
    json.skip_ws();
    let mut fields = Vec::new();
    if !json.eat(b'}') {
        loop {
            json.skip_ws();
            let name = json.string().ok()?.to_owned();
            json.skip_ws();
            if !json.eat(b':') {
                return None;
            }
            let data_type = value_type(json, depth)?;
            add_struct_field(&mut fields, &name, &data_type)?;
            json.skip_ws();
            if json.eat(b'}') {
                break;
            }
            if !json.eat(b',') {
                return None;
            }
        }
    }
    Some(DataType::Struct(Fields::from(fields)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Sorts struct fields by name, recursively: merge is commutative up to field order.
    fn normalized(kind: &ColumnKind) -> ColumnKind {
        fn sort(data_type: &DataType) -> DataType {
            match data_type {
                DataType::List(item) => list_of(sort(item.data_type())),
                DataType::Struct(fields) => {
                    let mut fields: Vec<Field> = fields
                        .iter()
                        .map(|f| Field::new(f.name(), sort(f.data_type()), true))
                        .collect();
                    fields.sort_by(|a, b| a.name().cmp(b.name()));
                    DataType::Struct(Fields::from(fields))
                }
                other => other.clone(),
            }
        }
        match kind {
            ColumnKind::Nested(t) => ColumnKind::Nested(sort(t)),
            other => other.clone(),
        }
    }

    fn nested_type() -> impl Strategy<Value = DataType> {
        let leaf = prop_oneof![
            Just(DataType::Null),
            Just(DataType::Boolean),
            Just(DataType::Int64),
            Just(DataType::Float64),
            Just(DataType::Utf8),
        ];
        leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                inner.clone().prop_map(list_of),
                proptest::collection::vec((prop::sample::select(vec!["a", "b", "c"]), inner), 0..3)
                    .prop_map(|fields| {
                        let mut out: Vec<Field> = Vec::new();
                        for (name, t) in fields {
                            if !out.iter().any(|f| f.name() == name) {
                                out.push(Field::new(name, t, true));
                            }
                        }
                        DataType::Struct(Fields::from(out))
                    }),
            ]
        })
    }

    fn kind() -> impl Strategy<Value = ColumnKind> {
        prop_oneof![
            Just(ColumnKind::Null),
            Just(ColumnKind::Bool),
            Just(ColumnKind::Int),
            Just(ColumnKind::Float),
            (any::<bool>(), any::<bool>())
                .prop_map(|(dates, timestamps)| ColumnKind::Str { dates, timestamps }),
            Just(ColumnKind::Text),
            nested_type()
                .prop_filter("nested kinds hold lists or structs", |t| {
                    matches!(t, DataType::List(_) | DataType::Struct(_))
                })
                .prop_map(ColumnKind::Nested),
        ]
    }

    fn fold(kinds: &[ColumnKind]) -> ColumnKind {
        kinds.iter().fold(ColumnKind::Null, |acc, k| acc.merge(k))
    }

    proptest! {
        #[test]
        fn merge_is_commutative_and_associative(a in kind(), b in kind(), c in kind()) {
            prop_assert_eq!(normalized(&a.merge(&b)), normalized(&b.merge(&a)));
            prop_assert_eq!(a.merge(&b).merge(&c), a.merge(&b.merge(&c)));
            prop_assert_eq!(a.merge(&a), a.clone());
        }

        #[test]
        fn folding_kinds_ignores_order(
            (kinds, shuffled) in proptest::collection::vec(kind(), 0..8)
                .prop_flat_map(|k| (Just(k.clone()), Just(k).prop_shuffle()))
        ) {
            prop_assert_eq!(normalized(&fold(&kinds)), normalized(&fold(&shuffled)));
        }
    }
}
