//! Event arguments with binary attachments, and their serde mapping.
//!
//! On the wire, every binary value inside the arguments is replaced by a placeholder
//! `{"_placeholder":true,"num":N}` and sent as the N-th attachment. [`Payload`] keeps the arguments as
//! JSON values with the placeholders in place, plus the attachments; [`Payload::from_args`] and
//! [`Payload::to_args`] map any serde type to and from it, so that a `bytes::Bytes` field anywhere in
//! the arguments travels as an attachment.
//!
//! Arguments map to Rust types this way: a tuple is the list of arguments (`("a", 1)` is two
//! arguments), `()` is none, and any other type is the single first argument. Reading, a tuple or a
//! sequence (`Vec<Value>`) takes the whole list, `()` ignores it, and any other type reads the first
//! argument.

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{self, Serialize};
use serde_json::{Map, Number, Value};

/// The arguments of an event or an ack.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Payload {
    /// The arguments, with binary values replaced by placeholders.
    pub args: Vec<Value>,
    /// The binary values, in placeholder order.
    pub attachments: Vec<Bytes>,
}

/// Arguments could not be converted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadError(String);

impl std::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PayloadError {}

impl ser::Error for PayloadError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        PayloadError(msg.to_string())
    }
}

impl de::Error for PayloadError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        PayloadError(msg.to_string())
    }
}

impl Payload {
    /// Converts `value` into arguments (see the module docs for the mapping).
    pub fn from_args<T: Serialize + ?Sized>(value: &T) -> Result<Payload, PayloadError> {
        let (args, attachments) = value.serialize(ArgsSerializer(Vec::new()))?;
        Ok(Payload { args, attachments })
    }

    /// Reads the arguments as `T` (see the module docs for the mapping).
    pub fn to_args<'de, T: serde::Deserialize<'de>>(&'de self) -> Result<T, PayloadError> {
        T::deserialize(ArgsDeserializer { payload: self })
    }

    /// Turns the arguments into `T` like [`Payload::to_args`], but when `T` is `Payload` itself
    /// the payload is handed over as it is, without copying its values.
    pub fn into_args<T: de::DeserializeOwned + 'static>(self) -> Result<T, PayloadError> {
        let mut slot = Some(self);
        if let Some(same) = (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<T>>()
            && let Some(args) = same.take()
        {
            return Ok(args);
        }
        slot.unwrap_or_default().to_args()
    }

    /// The placeholder object for attachment `num`.
    pub fn placeholder(num: usize) -> Value {
        let mut map = Map::new();
        map.insert("_placeholder".into(), Value::Bool(true));
        map.insert("num".into(), Value::from(num));
        Value::Object(map)
    }

    /// The attachment a placeholder object points at, if `value` is one.
    pub fn attachment_of<'a>(&'a self, value: &Value) -> Option<&'a Bytes> {
        placeholder_num(value).and_then(|n| self.attachments.get(n))
    }
}

/// The `num` of a placeholder object.
pub(crate) fn placeholder_num(value: &Value) -> Option<usize> {
    let map = value.as_object()?;
    if map.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    usize::try_from(map.get("num")?.as_u64()?).ok()
}

// ---- serialization ------------------------------------------------------------------------------
//
// The attachment list is threaded by value through every call (`Ok` carries it back), so nested
// serializers need no shared borrow.

type Atts = Vec<Bytes>;

/// Serializes one value into JSON, binary values as placeholders.
struct ValueSerializer(Atts);

/// The top level: a tuple is the argument list, unit is none, anything else is one argument.
struct ArgsSerializer(Atts);

fn float(v: f64) -> Value {
    Number::from_f64(v).map_or(Value::Null, Value::Number)
}

macro_rules! leaf {
    ($($name:ident($ty:ty) => $conv:expr;)*) => {
        $(fn $name(self, v: $ty) -> Result<(Value, Atts), PayloadError> {
            #[allow(clippy::redundant_closure_call)]
            Ok((($conv)(v), self.0))
        })*
    };
}

impl ser::Serializer for ValueSerializer {
    type Ok = (Value, Atts);
    type Error = PayloadError;
    type SerializeSeq = Compound;
    type SerializeTuple = Compound;
    type SerializeTupleStruct = Compound;
    type SerializeTupleVariant = Compound;
    type SerializeMap = Compound;
    type SerializeStruct = Compound;
    type SerializeStructVariant = Compound;

    leaf! {
        serialize_bool(bool) => Value::Bool;
        serialize_i8(i8) => Value::from;
        serialize_i16(i16) => Value::from;
        serialize_i32(i32) => Value::from;
        serialize_i64(i64) => Value::from;
        serialize_u8(u8) => Value::from;
        serialize_u16(u16) => Value::from;
        serialize_u32(u32) => Value::from;
        serialize_u64(u64) => Value::from;
        serialize_f32(f32) => |v: f32| float(f64::from(v));
        serialize_f64(f64) => float;
        serialize_char(char) => |v: char| Value::String(v.to_string());
        serialize_str(&str) => |v: &str| Value::String(v.to_owned());
    }

    fn serialize_bytes(mut self, v: &[u8]) -> Result<(Value, Atts), PayloadError> {
        let placeholder = Payload::placeholder(self.0.len());
        self.0.push(Bytes::copy_from_slice(v));
        Ok((placeholder, self.0))
    }
    fn serialize_none(self) -> Result<(Value, Atts), PayloadError> {
        Ok((Value::Null, self.0))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(Value, Atts), PayloadError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(Value, Atts), PayloadError> {
        Ok((Value::Null, self.0))
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(Value, Atts), PayloadError> {
        Ok((Value::Null, self.0))
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(Value, Atts), PayloadError> {
        Ok((Value::String(variant.to_owned()), self.0))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(Value, Atts), PayloadError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(Value, Atts), PayloadError> {
        let (inner, atts) = v.serialize(self)?;
        let mut map = Map::new();
        map.insert(variant.to_owned(), inner);
        Ok((Value::Object(map), atts))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound, PayloadError> {
        Ok(Compound::seq(self.0, len.unwrap_or(0), None))
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound, PayloadError> {
        Ok(Compound::seq(self.0, len, None))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Compound, PayloadError> {
        Ok(Compound::seq(self.0, len, None))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound, PayloadError> {
        Ok(Compound::seq(self.0, len, Some(variant)))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound, PayloadError> {
        Ok(Compound::map(self.0, None))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound, PayloadError> {
        Ok(Compound::map(self.0, None))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound, PayloadError> {
        Ok(Compound::map(self.0, Some(variant)))
    }
}

/// A sequence or map being built.
struct Compound {
    atts: Atts,
    seq: Vec<Value>,
    map: Map<String, Value>,
    is_map: bool,
    key: Option<String>,
    variant: Option<&'static str>,
}

impl Compound {
    fn seq(atts: Atts, len: usize, variant: Option<&'static str>) -> Compound {
        Compound {
            atts,
            seq: Vec::with_capacity(len),
            map: Map::new(),
            is_map: false,
            key: None,
            variant,
        }
    }

    fn map(atts: Atts, variant: Option<&'static str>) -> Compound {
        Compound {
            is_map: true,
            ..Compound::seq(atts, 0, variant)
        }
    }

    fn push<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), PayloadError> {
        let (value, atts) = v.serialize(ValueSerializer(std::mem::take(&mut self.atts)))?;
        self.atts = atts;
        self.seq.push(value);
        Ok(())
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, v: &T) -> Result<(), PayloadError> {
        let (value, atts) = v.serialize(ValueSerializer(std::mem::take(&mut self.atts)))?;
        self.atts = atts;
        self.map.insert(key.to_owned(), value);
        Ok(())
    }

    fn finish(self) -> Result<(Value, Atts), PayloadError> {
        let value = if self.is_map {
            Value::Object(self.map)
        } else {
            Value::Array(self.seq)
        };
        let value = match self.variant {
            Some(variant) => {
                let mut map = Map::new();
                map.insert(variant.to_owned(), value);
                Value::Object(map)
            }
            None => value,
        };
        Ok((value, self.atts))
    }
}

macro_rules! seq_like {
    ($($trait:ident::$method:ident),*) => {
        $(impl ser::$trait for Compound {
            type Ok = (Value, Atts);
            type Error = PayloadError;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), PayloadError> {
                self.push(v)
            }
            fn end(self) -> Result<(Value, Atts), PayloadError> {
                self.finish()
            }
        })*
    };
}

seq_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

macro_rules! struct_like {
    ($($trait:ident),*) => {
        $(impl ser::$trait for Compound {
            type Ok = (Value, Atts);
            type Error = PayloadError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                v: &T,
            ) -> Result<(), PayloadError> {
                self.field(key, v)
            }
            fn end(self) -> Result<(Value, Atts), PayloadError> {
                self.finish()
            }
        })*
    };
}

struct_like!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for Compound {
    type Ok = (Value, Atts);
    type Error = PayloadError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), PayloadError> {
        let (key, atts) = k.serialize(ValueSerializer(std::mem::take(&mut self.atts)))?;
        self.atts = atts;
        self.key = Some(match key {
            Value::String(s) => s,
            // JSON object keys are strings; numbers and booleans are written as text, as
            // JSON.stringify does for a JavaScript object.
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(ser::Error::custom("map keys must be strings or numbers")),
        });
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), PayloadError> {
        let key = self
            .key
            .take()
            .ok_or_else(|| <PayloadError as ser::Error>::custom("value without key"))?;
        self.field(&key, v)
    }
    fn end(self) -> Result<(Value, Atts), PayloadError> {
        self.finish()
    }
}

/// A single top-level argument built by a compound.
struct Single(Compound);

macro_rules! single {
    ($($trait:ident::$method:ident),*) => {
        $(impl ser::$trait for Single {
            type Ok = (Vec<Value>, Atts);
            type Error = PayloadError;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), PayloadError> {
                ser::$trait::$method(&mut self.0, v)
            }
            fn end(self) -> Result<(Vec<Value>, Atts), PayloadError> {
                let (value, atts) = self.0.finish()?;
                Ok((vec![value], atts))
            }
        })*
    };
}

single!(
    SerializeSeq::serialize_element,
    SerializeTupleVariant::serialize_field
);

macro_rules! single_struct {
    ($($trait:ident),*) => {
        $(impl ser::$trait for Single {
            type Ok = (Vec<Value>, Atts);
            type Error = PayloadError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                v: &T,
            ) -> Result<(), PayloadError> {
                self.0.field(key, v)
            }
            fn end(self) -> Result<(Vec<Value>, Atts), PayloadError> {
                let (value, atts) = self.0.finish()?;
                Ok((vec![value], atts))
            }
        })*
    };
}

single_struct!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for Single {
    type Ok = (Vec<Value>, Atts);
    type Error = PayloadError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), PayloadError> {
        ser::SerializeMap::serialize_key(&mut self.0, k)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), PayloadError> {
        ser::SerializeMap::serialize_value(&mut self.0, v)
    }
    fn end(self) -> Result<(Vec<Value>, Atts), PayloadError> {
        let (value, atts) = self.0.finish()?;
        Ok((vec![value], atts))
    }
}

/// The arguments of a top-level tuple.
struct List(Compound);

impl ser::SerializeTuple for List {
    type Ok = (Vec<Value>, Atts);
    type Error = PayloadError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), PayloadError> {
        self.0.push(v)
    }
    fn end(self) -> Result<(Vec<Value>, Atts), PayloadError> {
        Ok((self.0.seq, self.0.atts))
    }
}

impl ser::SerializeTupleStruct for List {
    type Ok = (Vec<Value>, Atts);
    type Error = PayloadError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), PayloadError> {
        self.0.push(v)
    }
    fn end(self) -> Result<(Vec<Value>, Atts), PayloadError> {
        Ok((self.0.seq, self.0.atts))
    }
}

macro_rules! one {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $name(self, $($arg: $ty),*) -> Result<(Vec<Value>, Atts), PayloadError> {
            let (value, atts) = ser::Serializer::$name(ValueSerializer(self.0), $($arg),*)?;
            Ok((vec![value], atts))
        })*
    };
}

impl ser::Serializer for ArgsSerializer {
    type Ok = (Vec<Value>, Atts);
    type Error = PayloadError;
    type SerializeSeq = Single;
    type SerializeTuple = List;
    type SerializeTupleStruct = List;
    type SerializeTupleVariant = Single;
    type SerializeMap = Single;
    type SerializeStruct = Single;
    type SerializeStructVariant = Single;

    one! {
        serialize_bool(v: bool); serialize_i8(v: i8); serialize_i16(v: i16); serialize_i32(v: i32);
        serialize_i64(v: i64); serialize_u8(v: u8); serialize_u16(v: u16); serialize_u32(v: u32);
        serialize_u64(v: u64); serialize_f32(v: f32); serialize_f64(v: f64); serialize_char(v: char);
        serialize_str(v: &str); serialize_bytes(v: &[u8]); serialize_none();
        serialize_unit_variant(n: &'static str, i: u32, v: &'static str);
    }

    fn serialize_some<T: Serialize + ?Sized>(
        self,
        v: &T,
    ) -> Result<(Vec<Value>, Atts), PayloadError> {
        let (value, atts) = v.serialize(ValueSerializer(self.0))?;
        Ok((vec![value], atts))
    }
    fn serialize_unit(self) -> Result<(Vec<Value>, Atts), PayloadError> {
        Ok((Vec::new(), self.0))
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(Vec<Value>, Atts), PayloadError> {
        Ok((Vec::new(), self.0))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(Vec<Value>, Atts), PayloadError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(Vec<Value>, Atts), PayloadError> {
        let (value, atts) = ser::Serializer::serialize_newtype_variant(
            ValueSerializer(self.0),
            name,
            index,
            variant,
            v,
        )?;
        Ok((vec![value], atts))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Single, PayloadError> {
        Ok(Single(Compound::seq(self.0, len.unwrap_or(0), None)))
    }
    fn serialize_tuple(self, len: usize) -> Result<List, PayloadError> {
        Ok(List(Compound::seq(self.0, len, None)))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<List, PayloadError> {
        Ok(List(Compound::seq(self.0, len, None)))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Single, PayloadError> {
        Ok(Single(Compound::seq(self.0, len, Some(variant))))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Single, PayloadError> {
        Ok(Single(Compound::map(self.0, None)))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Single, PayloadError> {
        Ok(Single(Compound::map(self.0, None)))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Single, PayloadError> {
        Ok(Single(Compound::map(self.0, Some(variant))))
    }
}

// ---- deserialization ----------------------------------------------------------------------------

/// The top level: a tuple or sequence reads the list, unit ignores it, anything else reads the first
/// argument (`null` when there is none).
struct ArgsDeserializer<'de> {
    payload: &'de Payload,
}

static NULL: Value = Value::Null;

impl<'de> ArgsDeserializer<'de> {
    fn first(&self) -> ValueDeserializer<'de> {
        ValueDeserializer {
            value: self.payload.args.first().unwrap_or(&NULL),
            payload: self.payload,
        }
    }

    fn list<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PayloadError> {
        visitor.visit_seq(Elements {
            iter: self.payload.args.iter(),
            payload: self.payload,
        })
    }
}

macro_rules! first_arg {
    ($($method:ident),*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PayloadError> {
            de::Deserializer::$method(self.first(), visitor)
        })*
    };
}

impl<'de> de::Deserializer<'de> for ArgsDeserializer<'de> {
    type Error = PayloadError;

    first_arg!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any
    );

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PayloadError> {
        visitor.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, PayloadError> {
        visitor.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, PayloadError> {
        visitor.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PayloadError> {
        self.list(visitor)
    }
    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, PayloadError> {
        self.list(visitor)
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, PayloadError> {
        self.list(visitor)
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, PayloadError> {
        self.first().deserialize_struct(name, fields, visitor)
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, PayloadError> {
        self.first().deserialize_enum(name, variants, visitor)
    }
}

/// Reads one JSON value; a placeholder object reads as the bytes of its attachment.
struct ValueDeserializer<'de> {
    value: &'de Value,
    payload: &'de Payload,
}

fn json_error(e: serde_json::Error) -> PayloadError {
    PayloadError(e.to_string())
}

impl<'de> ValueDeserializer<'de> {
    fn attachment(&self) -> Option<&'de Bytes> {
        self.payload.attachment_of(self.value)
    }
}

macro_rules! via_any {
    ($($method:ident),*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PayloadError> {
            self.deserialize_any(visitor)
        })*
    };
}

impl<'de> de::Deserializer<'de> for ValueDeserializer<'de> {
    type Error = PayloadError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PayloadError> {
        if let Some(bytes) = self.attachment() {
            return visitor.visit_borrowed_bytes(bytes);
        }
        match self.value {
            Value::Array(items) => visitor.visit_seq(Elements {
                iter: items.iter(),
                payload: self.payload,
            }),
            Value::Object(map) => visitor.visit_map(Entries {
                iter: map.iter(),
                value: None,
                payload: self.payload,
            }),
            other => de::Deserializer::deserialize_any(other, visitor).map_err(json_error),
        }
    }

    via_any!(
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any
    );

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PayloadError> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, PayloadError> {
        self.deserialize_any(visitor)
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, PayloadError> {
        visitor.visit_newtype_struct(self)
    }
    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, PayloadError> {
        self.deserialize_any(visitor)
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, PayloadError> {
        self.deserialize_any(visitor)
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, PayloadError> {
        self.deserialize_any(visitor)
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, PayloadError> {
        // Enum payloads are read as plain JSON (no attachments inside enum variants).
        self.value
            .deserialize_enum(name, variants, visitor)
            .map_err(json_error)
    }
}

struct Elements<'de> {
    iter: std::slice::Iter<'de, Value>,
    payload: &'de Payload,
}

impl<'de> SeqAccess<'de> for Elements<'de> {
    type Error = PayloadError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, PayloadError> {
        match self.iter.next() {
            Some(value) => seed
                .deserialize(ValueDeserializer {
                    value,
                    payload: self.payload,
                })
                .map(Some),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct Entries<'de> {
    iter: serde_json::map::Iter<'de>,
    value: Option<&'de Value>,
    payload: &'de Payload,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = PayloadError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, PayloadError> {
        match self.iter.next() {
            Some((key, value)) => {
                self.value = Some(value);
                let key = de::value::BorrowedStrDeserializer::<PayloadError>::new(key.as_str());
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, PayloadError> {
        let value = self.value.take().unwrap_or(&NULL);
        seed.deserialize(ValueDeserializer {
            value,
            payload: self.payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Upload {
        name: String,
        data: Bytes,
        parts: Vec<Option<u32>>,
    }

    #[test]
    fn tuples_are_argument_lists_and_other_types_one_argument() {
        assert_eq!(
            Payload::from_args(&("a", 1, true)).unwrap().args,
            vec![json!("a"), json!(1), json!(true)]
        );
        assert_eq!(Payload::from_args(&()).unwrap().args, Vec::<Value>::new());
        assert_eq!(
            Payload::from_args(&vec![1, 2]).unwrap().args,
            vec![json!([1, 2])]
        );
        assert_eq!(
            Payload::from_args(&json!({"a": 1})).unwrap().args,
            vec![json!({"a": 1})]
        );
        assert_eq!(Payload::from_args(&"x").unwrap().args, vec![json!("x")]);
    }

    #[test]
    fn bytes_anywhere_become_placeholders_and_come_back() {
        let upload = Upload {
            name: "f".into(),
            data: Bytes::from_static(&[1, 2, 3]),
            parts: vec![Some(1), None],
        };
        let payload = Payload::from_args(&("first", &upload, Bytes::from_static(&[9]))).unwrap();
        assert_eq!(
            payload.args,
            vec![
                json!("first"),
                json!({"name": "f", "data": {"_placeholder": true, "num": 0}, "parts": [1, null]}),
                json!({"_placeholder": true, "num": 1}),
            ]
        );
        assert_eq!(
            payload.attachments,
            vec![Bytes::from_static(&[1, 2, 3]), Bytes::from_static(&[9])]
        );
        let (first, back, last): (String, Upload, Bytes) = payload.to_args().unwrap();
        assert_eq!(first, "first");
        assert_eq!(back, upload);
        assert_eq!(last, Bytes::from_static(&[9]));
    }

    #[test]
    fn single_types_read_the_first_argument_and_sequences_all() {
        let payload = Payload {
            args: vec![json!({"a": 1}), json!(2)],
            attachments: vec![],
        };
        let first: Value = payload.to_args().unwrap();
        assert_eq!(first, json!({"a": 1}));
        let all: Vec<Value> = payload.to_args().unwrap();
        assert_eq!(all, vec![json!({"a": 1}), json!(2)]);
        let (a, b): (Value, u8) = payload.to_args().unwrap();
        assert_eq!((a, b), (json!({"a": 1}), 2));
        let _: () = payload.to_args().unwrap();
        let none: Option<String> = Payload::default().to_args().unwrap();
        assert_eq!(none, None);
        assert!(payload.to_args::<(String,)>().is_err());
    }
}

// ---- `Payload` as a serde type: the raw arguments, binary kept ----------------------------------

/// Serializes as the argument list, attachments as binary values: emitting a received `Payload`
/// sends the same arguments.
impl Serialize for Payload {
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use ser::SerializeTuple;
        let mut tuple = serializer.serialize_tuple(self.args.len())?;
        for arg in &self.args {
            tuple.serialize_element(&Resolved {
                value: arg,
                payload: self,
            })?;
        }
        tuple.end()
    }
}

/// A JSON value whose placeholders serialize as their attachments.
struct Resolved<'a> {
    value: &'a Value,
    payload: &'a Payload,
}

impl Serialize for Resolved<'_> {
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use ser::{SerializeMap, SerializeSeq};
        if let Some(bytes) = self.payload.attachment_of(self.value) {
            return serializer.serialize_bytes(bytes);
        }
        match self.value {
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Resolved {
                        value: item,
                        payload: self.payload,
                    })?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut out = serializer.serialize_map(Some(map.len()))?;
                for (k, v) in map {
                    out.serialize_entry(
                        k,
                        &Resolved {
                            value: v,
                            payload: self.payload,
                        },
                    )?;
                }
                out.end()
            }
            other => other.serialize(serializer),
        }
    }
}

/// Reads the whole argument list, binary values back into attachments.
impl<'de> serde::Deserialize<'de> for Payload {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Payload, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = Payload;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of arguments")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Payload, A::Error> {
                let mut payload = Payload::default();
                while let Some(value) = seq.next_element_seed(ValueSeed {
                    attachments: &mut payload.attachments,
                })? {
                    payload.args.push(value);
                }
                Ok(payload)
            }
        }
        deserializer.deserialize_seq(ListVisitor)
    }
}

/// Builds a JSON value, turning binary values into placeholders.
struct ValueSeed<'a> {
    attachments: &'a mut Vec<Bytes>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        let placeholder = Payload::placeholder(self.attachments.len());
        self.attachments.push(Bytes::copy_from_slice(v));
        Ok(placeholder)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ValueSeed {
            attachments: &mut *self.attachments,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let value = access.next_value_seed(ValueSeed {
                attachments: &mut *self.attachments,
            })?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod payload_as_serde_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_received_payload_round_trips_with_its_binary() {
        let original =
            Payload::from_args(&(1, "two", json!({"x": [true]}), Bytes::from_static(&[5, 6])))
                .unwrap();
        let read: Payload = original.to_args().unwrap();
        assert_eq!(read, original);
        let again = Payload::from_args(&read).unwrap();
        assert_eq!(again, original);
    }

    #[test]
    fn into_args_hands_a_payload_over_and_reads_other_types() {
        let original = Payload::from_args(&("a", Bytes::from_static(&[1]))).unwrap();
        let same: Payload = original.clone().into_args().unwrap();
        assert_eq!(same, original);
        let (text, data): (String, Bytes) = original.clone().into_args().unwrap();
        assert_eq!((text.as_str(), &data[..]), ("a", &[1][..]));
        let first: Value = original.into_args().unwrap();
        assert_eq!(first, json!("a"));
        assert!(Payload::default().into_args::<(String,)>().is_err());
    }
}
