//! The arguments of an outgoing event or ack, written straight into the packet text.
//!
//! A [`Payload`] keeps its arguments as JSON values. Emitting a Rust value through one would build
//! that tree only to print it and drop it, an allocation per string, object and list. A
//! [`Serialized`] value is printed as it serializes instead, with the mapping of
//! [`Payload::from_args`]: a tuple is the list of arguments, `()` is none, anything else is one
//! argument, and every binary value becomes a placeholder whose data travels as an attachment.

use std::cell::RefCell;

use bytes::Bytes;
use serde::ser::{self, Impossible, Serialize, Serializer};

use super::payload::{Payload, PayloadError};

/// Arguments that can be written into an outgoing EVENT or ACK packet.
pub trait OutgoingArgs {
    /// Appends every argument to `out` as JSON, each one after a comma. A binary value is written as
    /// its placeholder `{"_placeholder":true,"num":N}`, its data pushed onto `attachments` (empty
    /// when called) as the N-th attachment.
    fn write_args(
        &self,
        out: &mut Vec<u8>,
        attachments: &mut Vec<Bytes>,
    ) -> Result<(), PayloadError>;
}

impl OutgoingArgs for Payload {
    fn write_args(
        &self,
        out: &mut Vec<u8>,
        attachments: &mut Vec<Bytes>,
    ) -> Result<(), PayloadError> {
        for arg in &self.args {
            out.push(b',');
            serde_json::to_writer(&mut *out, arg).map_err(ser::Error::custom)?;
        }
        // The placeholders are in the values already; the data is shared, not copied.
        attachments.extend(self.attachments.iter().cloned());
        Ok(())
    }
}

/// A serde value as outgoing arguments, without a [`Payload`] in between.
///
/// ```
/// use sio_core::socket::outgoing::{OutgoingArgs, Serialized};
///
/// let mut out = Vec::new();
/// let mut attachments = Vec::new();
/// Serialized(&("hi", 2)).write_args(&mut out, &mut attachments).unwrap();
/// assert_eq!(out, b",\"hi\",2");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Serialized<'a, T: ?Sized>(pub &'a T);

impl<T: Serialize + ?Sized> OutgoingArgs for Serialized<'_, T> {
    fn write_args(
        &self,
        out: &mut Vec<u8>,
        attachments: &mut Vec<Bytes>,
    ) -> Result<(), PayloadError> {
        let start = out.len();
        let atts = RefCell::new(std::mem::take(attachments));
        // Whether the value is a list of arguments shows at its first serializer call: a tuple is
        // written there and then, element by element; any other value stops that pass at once and
        // is written whole, as one argument.
        let top = TopLevel {
            out: &mut *out,
            atts: &atts,
        };
        let written = match self.0.serialize(top) {
            Ok(()) => Ok(()),
            Err(Stop::OneArgument) => write_argument(out, &atts, self.0),
            Err(Stop::Failed(e)) => Err(e),
        };
        *attachments = atts.into_inner();
        if written.is_err() {
            out.truncate(start);
            attachments.clear();
        }
        written
    }
}

// ---- the top level ------------------------------------------------------------------------------

/// Why the pass over the top level stopped.
#[derive(Debug)]
enum Stop {
    /// The value is one argument: nothing was written.
    OneArgument,
    /// The value's `Serialize` failed.
    Failed(PayloadError),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Failed(e) => e.fmt(f),
            Stop::OneArgument => f.write_str("one argument"),
        }
    }
}

impl std::error::Error for Stop {}

impl ser::Error for Stop {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Stop::Failed(PayloadError::custom(msg))
    }
}

/// The top level: a tuple writes each element as an argument, unit writes none, and anything else
/// stops with [`Stop::OneArgument`] before writing.
struct TopLevel<'a> {
    out: &'a mut Vec<u8>,
    atts: &'a RefCell<Vec<Bytes>>,
}

macro_rules! one_argument {
    ($($name:ident($($ty:ty),*);)*) => {
        $(fn $name(self, $(_: $ty),*) -> Result<(), Stop> {
            Err(Stop::OneArgument)
        })*
    };
}

macro_rules! one_compound {
    ($($name:ident($($ty:ty),*) -> $compound:ident;)*) => {
        $(fn $name(self, $(_: $ty),*) -> Result<Self::$compound, Stop> {
            Err(Stop::OneArgument)
        })*
    };
}

impl<'a> Serializer for TopLevel<'a> {
    type Ok = ();
    type Error = Stop;
    type SerializeSeq = Impossible<(), Stop>;
    type SerializeTuple = TopLevel<'a>;
    type SerializeTupleStruct = TopLevel<'a>;
    type SerializeTupleVariant = Impossible<(), Stop>;
    type SerializeMap = Impossible<(), Stop>;
    type SerializeStruct = Impossible<(), Stop>;
    type SerializeStructVariant = Impossible<(), Stop>;

    one_argument! {
        serialize_bool(bool); serialize_i8(i8); serialize_i16(i16); serialize_i32(i32);
        serialize_i64(i64); serialize_i128(i128); serialize_u8(u8); serialize_u16(u16);
        serialize_u32(u32); serialize_u64(u64); serialize_u128(u128); serialize_f32(f32);
        serialize_f64(f64); serialize_char(char); serialize_str(&str); serialize_bytes(&[u8]);
        serialize_none(); serialize_unit_variant(&'static str, u32, &'static str);
    }

    one_compound! {
        serialize_seq(Option<usize>) -> SerializeSeq;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> SerializeTupleVariant;
        serialize_map(Option<usize>) -> SerializeMap;
        serialize_struct(&'static str, usize) -> SerializeStruct;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> SerializeStructVariant;
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Stop> {
        Err(Stop::OneArgument)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Stop> {
        Err(Stop::OneArgument)
    }
    fn serialize_unit(self) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Stop> {
        v.serialize(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<TopLevel<'a>, Stop> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<TopLevel<'a>, Stop> {
        Ok(self)
    }
}

/// Appends one argument: a comma, then `value` as JSON with its binary parts as placeholders.
fn write_argument<T: Serialize + ?Sized, E: ser::Error>(
    out: &mut Vec<u8>,
    atts: &RefCell<Vec<Bytes>>,
    value: &T,
) -> Result<(), E> {
    out.push(b',');
    serde_json::to_writer(&mut *out, &Binary { value, atts }).map_err(E::custom)
}

impl ser::SerializeTuple for TopLevel<'_> {
    type Ok = ();
    type Error = Stop;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        write_argument(self.out, self.atts, value)
    }
    fn end(self) -> Result<(), Stop> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for TopLevel<'_> {
    type Ok = ();
    type Error = Stop;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        write_argument(self.out, self.atts, value)
    }
    fn end(self) -> Result<(), Stop> {
        Ok(())
    }
}

// ---- binary values anywhere below: placeholders -------------------------------------------------

/// A value whose binary parts serialize as placeholders, their data collected in `atts`.
struct Binary<'a, T: ?Sized> {
    value: &'a T,
    atts: &'a RefCell<Vec<Bytes>>,
}

impl<T: Serialize + ?Sized> Serialize for Binary<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(Intercept {
            inner: serializer,
            atts: self.atts,
        })
    }
}

/// Any serializer (or compound of one), with `serialize_bytes` turned into a placeholder and
/// every nested value wrapped in [`Binary`] so that the rule holds at any depth.
struct Intercept<'a, S> {
    inner: S,
    atts: &'a RefCell<Vec<Bytes>>,
}

macro_rules! forward {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $name(self, $($arg: $ty),*) -> Result<S::Ok, S::Error> {
            self.inner.$name($($arg),*)
        })*
    };
}

/// Opens a compound of the inner serializer and wraps it.
macro_rules! open {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $compound:ident;)*) => {
        $(fn $name(self, $($arg: $ty),*) -> Result<Self::$compound, S::Error> {
            let atts = self.atts;
            Ok(Intercept { inner: self.inner.$name($($arg),*)?, atts })
        })*
    };
}

impl<'a, S: Serializer> Serializer for Intercept<'a, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Intercept<'a, S::SerializeSeq>;
    type SerializeTuple = Intercept<'a, S::SerializeTuple>;
    type SerializeTupleStruct = Intercept<'a, S::SerializeTupleStruct>;
    type SerializeTupleVariant = Intercept<'a, S::SerializeTupleVariant>;
    type SerializeMap = Intercept<'a, S::SerializeMap>;
    type SerializeStruct = Intercept<'a, S::SerializeStruct>;
    type SerializeStructVariant = Intercept<'a, S::SerializeStructVariant>;

    forward! {
        serialize_bool(v: bool); serialize_i8(v: i8); serialize_i16(v: i16);
        serialize_i32(v: i32); serialize_i64(v: i64); serialize_i128(v: i128);
        serialize_u8(v: u8); serialize_u16(v: u16); serialize_u32(v: u32); serialize_u64(v: u64);
        serialize_u128(v: u128); serialize_f32(v: f32); serialize_f64(v: f64);
        serialize_char(v: char); serialize_str(v: &str); serialize_none(); serialize_unit();
        serialize_unit_struct(name: &'static str);
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str);
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<S::Ok, S::Error> {
        use ser::SerializeMap;
        let num = {
            let mut atts = self.atts.borrow_mut();
            atts.push(Bytes::copy_from_slice(v));
            atts.len() - 1
        };
        let mut map = self.inner.serialize_map(Some(2))?;
        map.serialize_entry("_placeholder", &true)?;
        map.serialize_entry("num", &num)?;
        map.end()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<S::Ok, S::Error> {
        let atts = self.atts;
        self.inner.serialize_some(&Binary { value: v, atts })
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        let atts = self.atts;
        self.inner
            .serialize_newtype_struct(name, &Binary { value: v, atts })
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        let atts = self.atts;
        self.inner
            .serialize_newtype_variant(name, index, variant, &Binary { value: v, atts })
    }
    open! {
        serialize_seq(len: Option<usize>) -> SerializeSeq;
        serialize_tuple(len: usize) -> SerializeTuple;
        serialize_tuple_struct(name: &'static str, len: usize) -> SerializeTupleStruct;
        serialize_tuple_variant(name: &'static str, index: u32, variant: &'static str, len: usize)
            -> SerializeTupleVariant;
        serialize_map(len: Option<usize>) -> SerializeMap;
        serialize_struct(name: &'static str, len: usize) -> SerializeStruct;
        serialize_struct_variant(name: &'static str, index: u32, variant: &'static str, len: usize)
            -> SerializeStructVariant;
    }
    fn collect_str<T: std::fmt::Display + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.inner.collect_str(value)
    }
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// The compounds: each element, field or value is wrapped, the rest is passed on.
macro_rules! compound {
    ($($trait:ident: $($method:ident($($key:ident: $kty:ty),*)),*;)*) => {
        $(impl<S: ser::$trait> ser::$trait for Intercept<'_, S> {
            type Ok = S::Ok;
            type Error = S::Error;
            $(fn $method<T: Serialize + ?Sized>(
                &mut self,
                $($key: $kty,)*
                v: &T,
            ) -> Result<(), S::Error> {
                let atts = self.atts;
                self.inner.$method($($key,)* &Binary { value: v, atts })
            })*
            fn end(self) -> Result<S::Ok, S::Error> {
                self.inner.end()
            }
        })*
    };
}

compound! {
    SerializeSeq: serialize_element();
    SerializeTuple: serialize_element();
    SerializeTupleStruct: serialize_field();
    SerializeTupleVariant: serialize_field();
    SerializeMap: serialize_key(), serialize_value();
    SerializeStruct: serialize_field(key: &'static str);
    SerializeStructVariant: serialize_field(key: &'static str);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// What `args` writes: the text after the event name, and the attachments.
    fn written(args: &dyn OutgoingArgs) -> Result<(String, Vec<Bytes>), PayloadError> {
        let mut out = b"[\"e\"".to_vec();
        let mut attachments = Vec::new();
        args.write_args(&mut out, &mut attachments)?;
        Ok((String::from_utf8(out).unwrap(), attachments))
    }

    /// The direct writer and the payload built by `from_args` write the same bytes.
    fn same_as_payload<T: Serialize + ?Sized>(value: &T) -> (String, Vec<Bytes>) {
        let direct = written(&Serialized(value)).unwrap();
        let via_payload = written(&Payload::from_args(value).unwrap()).unwrap();
        assert_eq!(direct, via_payload);
        direct
    }

    #[derive(serde::Serialize)]
    struct Unit;

    #[derive(serde::Serialize)]
    struct Wrapper((u8, &'static str));

    #[derive(serde::Serialize)]
    struct Pair(u8, u8);

    #[derive(serde::Serialize)]
    enum Kind {
        Plain,
        Newtype(u8),
        Tuple(u8, u8),
        Struct { a: u8 },
    }

    #[test]
    fn the_top_level_maps_to_arguments_as_payload_does() {
        assert_eq!(same_as_payload(&()).0, "[\"e\"");
        assert_eq!(same_as_payload(&Unit).0, "[\"e\"");
        assert_eq!(same_as_payload(&Value::Null).0, "[\"e\"");
        assert_eq!(same_as_payload(&1).0, "[\"e\",1");
        assert_eq!(same_as_payload(&"a\"b").0, "[\"e\",\"a\\\"b\"");
        assert_eq!(same_as_payload(&("a", 1, [2, 3])).0, "[\"e\",\"a\",1,[2,3]");
        assert_eq!(same_as_payload(&Wrapper((1, "x"))).0, "[\"e\",1,\"x\"");
        assert_eq!(same_as_payload(&Pair(1, 2)).0, "[\"e\",1,2");
        assert_eq!(same_as_payload(&vec![1, 2]).0, "[\"e\",[1,2]");
        assert_eq!(same_as_payload(&Some(3)).0, "[\"e\",3");
        assert_eq!(same_as_payload(&None::<u8>).0, "[\"e\",null");
        assert_eq!(same_as_payload(&Some((1, 2))).0, "[\"e\",[1,2]");
        assert_eq!(same_as_payload(&Kind::Plain).0, "[\"e\",\"Plain\"");
        assert_eq!(
            same_as_payload(&Kind::Newtype(1)).0,
            "[\"e\",{\"Newtype\":1}"
        );
        assert_eq!(
            same_as_payload(&Kind::Tuple(1, 2)).0,
            "[\"e\",{\"Tuple\":[1,2]}"
        );
        assert_eq!(
            same_as_payload(&Kind::Struct { a: 1 }).0,
            "[\"e\",{\"Struct\":{\"a\":1}}"
        );
        assert_eq!(
            same_as_payload(&json!({"b": 1, "a": [true, null]})).0,
            "[\"e\",{\"b\":1,\"a\":[true,null]}"
        );
    }

    #[test]
    fn binary_values_become_placeholders_in_serialization_order() {
        #[derive(serde::Serialize)]
        struct Upload {
            name: &'static str,
            chunks: Vec<Bytes>,
            thumb: Option<Bytes>,
        }
        let upload = Upload {
            name: "f",
            chunks: vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")],
            thumb: Some(Bytes::from_static(b"t")),
        };
        let (text, attachments) = same_as_payload(&(Bytes::from_static(b"top"), upload));
        assert_eq!(
            text,
            "[\"e\",{\"_placeholder\":true,\"num\":0},{\"name\":\"f\",\"chunks\":[\
             {\"_placeholder\":true,\"num\":1},{\"_placeholder\":true,\"num\":2}],\
             \"thumb\":{\"_placeholder\":true,\"num\":3}}"
        );
        assert_eq!(
            attachments,
            [&b"top"[..], b"one", b"two", b"t"].map(Bytes::from_static)
        );
    }

    #[test]
    fn a_failing_value_writes_nothing() {
        struct Fails;
        impl Serialize for Fails {
            fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(ser::Error::custom("no"))
            }
        }
        let mut out = b"[\"e\"".to_vec();
        let mut attachments = Vec::new();
        let nested = (Bytes::from_static(b"x"), Fails);
        let error = Serialized(&nested)
            .write_args(&mut out, &mut attachments)
            .unwrap_err();
        assert_eq!(error.to_string(), "no");
        assert_eq!(out, b"[\"e\"");
        assert!(attachments.is_empty());
        let error = Serialized(&Fails)
            .write_args(&mut out, &mut attachments)
            .unwrap_err();
        assert_eq!(error.to_string(), "no");
        assert_eq!(out, b"[\"e\"");
    }

    #[test]
    fn a_binary_map_key_is_refused() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(Bytes::from_static(b"k"), 1);
        let mut out = Vec::new();
        let mut attachments = Vec::new();
        assert!(
            Serialized(&map)
                .write_args(&mut out, &mut attachments)
                .is_err()
        );
        assert!(out.is_empty() && attachments.is_empty());
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((".{0,4}", inner), 0..4)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_json_writes_as_its_payload_does(
            one in any_value(),
            list in proptest::collection::vec(any_value(), 0..3),
        ) {
            same_as_payload(&one);
            same_as_payload(&(one.clone(), list.clone()));
            let payload = Payload { args: list, attachments: Vec::new() };
            prop_assert_eq!(written(&Serialized(&payload)), written(&payload));
        }
    }
}
