//! Socket.IO protocol v5 packets: `<type>[<attachments>-][<nsp>,][<ack id>][<JSON>]`, and the
//! decoder that reassembles a binary packet from its text header and its attachments.

use std::borrow::Cow;
use std::io::Write as _;

use bytes::Bytes;
use serde_json::Value;

use super::outgoing::OutgoingArgs;
use super::payload::{Payload, PayloadError, placeholder_num};
use crate::engine::packet::utf8_text;

/// The packet types of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketType {
    /// 0: join a namespace (client), or its acceptance (server).
    Connect = 0,
    /// 1: leave a namespace.
    Disconnect = 1,
    /// 2: an event.
    Event = 2,
    /// 3: an acknowledgement.
    Ack = 3,
    /// 4: refusal of a CONNECT.
    ConnectError = 4,
    /// 5: an event with binary attachments.
    BinaryEvent = 5,
    /// 6: an acknowledgement with binary attachments.
    BinaryAck = 6,
}

/// Event names a client may not send, and the server may not emit.
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// A decoded packet, binary attachments reassembled (BINARY_EVENT and BINARY_ACK are folded into
/// EVENT and ACK).
#[derive(Clone, Debug, PartialEq)]
pub struct Packet {
    /// The type: never `BinaryEvent` or `BinaryAck` once decoded.
    pub kind: PacketType,
    /// The namespace, `/` when absent.
    pub nsp: Cow<'static, str>,
    /// The ack id.
    pub id: Option<u64>,
    /// The JSON data, when present.
    pub data: Option<Value>,
    /// The attachments of a binary packet.
    pub attachments: Vec<Bytes>,
}

/// Why a packet was refused; the reference closes the connection for each of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The first character is not a packet type.
    UnknownType,
    /// The attachment count is not a number from 1 to the limit.
    IllegalAttachments,
    /// More attachments than allowed.
    TooManyAttachments,
    /// The ack id does not fit in 64 bits.
    IllegalAckId,
    /// The JSON does not parse or has the wrong shape for the type.
    InvalidPayload,
    /// A placeholder points at no attachment.
    IllegalPlaceholder,
    /// Text arrived while attachments were awaited.
    UnexpectedText,
    /// A binary message arrived with no binary packet pending.
    UnexpectedBinary,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ParseError::UnknownType => "unknown packet type",
            ParseError::IllegalAttachments => "illegal attachments",
            ParseError::TooManyAttachments => "too many attachments",
            ParseError::IllegalAckId => "illegal ack id",
            ParseError::InvalidPayload => "invalid payload",
            ParseError::IllegalPlaceholder => "illegal attachments",
            ParseError::UnexpectedText => "got plaintext data when reconstructing a packet",
            ParseError::UnexpectedBinary => "got binary data when not reconstructing a packet",
        })
    }
}

impl std::error::Error for ParseError {}

/// Decodes the packets of one connection.
#[derive(Debug)]
pub struct Decoder {
    max_attachments: usize,
    /// A binary packet waiting for the rest of its attachments, and how many it declared.
    pending: Option<(Packet, usize)>,
}

impl Decoder {
    /// A decoder accepting at most `max_attachments` attachments per packet (the reference: 10).
    pub fn new(max_attachments: usize) -> Decoder {
        Decoder {
            max_attachments,
            pending: None,
        }
    }

    /// Decodes a text message; `Ok(None)` when it is the header of a binary packet.
    pub fn decode_text(&mut self, text: &str) -> Result<Option<Packet>, ParseError> {
        if self.pending.is_some() {
            return Err(ParseError::UnexpectedText);
        }
        let (packet, attachments) = decode_header(text, self.max_attachments)?;
        if attachments == 0 {
            return Ok(Some(packet));
        }
        self.pending = Some((packet, attachments));
        Ok(None)
    }

    /// Takes one attachment; the packet once the last one arrived.
    pub fn decode_binary(&mut self, data: Bytes) -> Result<Option<Packet>, ParseError> {
        let Some((packet, expected)) = self.pending.as_mut() else {
            return Err(ParseError::UnexpectedBinary);
        };
        packet.attachments.push(data);
        if packet.attachments.len() < *expected {
            return Ok(None);
        }
        let Some((packet, _)) = self.pending.take() else {
            return Ok(None);
        };
        if let Some(data) = &packet.data {
            check_placeholders(data, packet.attachments.len())?;
        }
        Ok(Some(packet))
    }
}

/// Every object marked as a placeholder must point at an existing attachment.
fn check_placeholders(value: &Value, count: usize) -> Result<(), ParseError> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| check_placeholders(v, count)),
        Value::Object(map) => {
            if map.get("_placeholder") == Some(&Value::Bool(true)) {
                return match placeholder_num(value) {
                    Some(n) if n < count => Ok(()),
                    _ => Err(ParseError::IllegalPlaceholder),
                };
            }
            map.values().try_for_each(|v| check_placeholders(v, count))
        }
        _ => Ok(()),
    }
}

/// Parses a text packet; returns it with the number of attachments still to come.
fn decode_header(s: &str, max_attachments: usize) -> Result<(Packet, usize), ParseError> {
    let bytes = s.as_bytes();
    // `Number("")` is 0 in the reference: an empty packet is a CONNECT to `/`.
    let kind = match bytes.first() {
        None => PacketType::Connect,
        Some(b'0') => PacketType::Connect,
        Some(b'1') => PacketType::Disconnect,
        Some(b'2') => PacketType::Event,
        Some(b'3') => PacketType::Ack,
        Some(b'4') => PacketType::ConnectError,
        Some(b'5') => PacketType::BinaryEvent,
        Some(b'6') => PacketType::BinaryAck,
        Some(_) => return Err(ParseError::UnknownType),
    };
    let mut i = 1.min(bytes.len());
    let mut attachments = 0;
    if matches!(kind, PacketType::BinaryEvent | PacketType::BinaryAck) {
        let dash = s[i..]
            .find('-')
            .map(|d| i + d)
            .ok_or(ParseError::IllegalAttachments)?;
        let count = &s[i..dash];
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::IllegalAttachments);
        }
        // Digits beyond usize are certainly over the limit.
        let n: usize = count.parse().unwrap_or(usize::MAX);
        if n == 0 {
            return Err(ParseError::IllegalAttachments);
        }
        if n > max_attachments {
            return Err(ParseError::TooManyAttachments);
        }
        attachments = n;
        i = dash + 1;
    }
    let mut nsp = "/";
    if bytes.get(i) == Some(&b'/') {
        let end = s[i..].find(',').map_or(s.len(), |c| i + c);
        nsp = &s[i..end];
        i = (end + 1).min(s.len());
    }
    let mut id = None;
    let digits = s[i..].bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 {
        id = Some(
            s[i..i + digits]
                .parse::<u64>()
                .map_err(|_| ParseError::IllegalAckId)?,
        );
        i += digits;
    }
    let mut data = None;
    if i < s.len() {
        let value: Value = serde_json::from_str(&s[i..]).map_err(|_| ParseError::InvalidPayload)?;
        if !payload_is_valid(kind, &value) {
            return Err(ParseError::InvalidPayload);
        }
        data = Some(value);
    }
    let kind = match kind {
        PacketType::BinaryEvent => PacketType::Event,
        PacketType::BinaryAck => PacketType::Ack,
        other => other,
    };
    Ok((
        Packet {
            kind,
            // The main namespace is nearly every packet's: no allocation for it.
            nsp: if nsp == "/" {
                Cow::Borrowed("/")
            } else {
                Cow::Owned(nsp.to_owned())
            },
            id,
            data,
            attachments: Vec::new(),
        },
        attachments,
    ))
}

fn payload_is_valid(kind: PacketType, value: &Value) -> bool {
    match kind {
        PacketType::Connect => value.is_object(),
        PacketType::Disconnect => false,
        PacketType::ConnectError => value.is_string() || value.is_object(),
        PacketType::Event | PacketType::BinaryEvent => {
            match value.as_array().and_then(|a| a.first()) {
                Some(Value::Number(_)) => true,
                Some(Value::String(name)) => !RESERVED_EVENTS.contains(&name.as_str()),
                _ => false,
            }
        }
        PacketType::Ack | PacketType::BinaryAck => value.is_array(),
    }
}

/// Writes the header of an outgoing packet: type, namespace and ack id. A packet with attachments
/// is marked by [`mark_binary`] once they are counted.
fn write_header(out: &mut Vec<u8>, kind: PacketType, nsp: &str, id: Option<u64>) {
    out.push(b'0' + kind as u8);
    if nsp != "/" {
        out.extend_from_slice(nsp.as_bytes());
        out.push(b',');
    }
    if let Some(id) = id {
        let _ = write!(out, "{id}");
    }
}

/// Turns the header written at `at` into the one of `binary` (BINARY_EVENT or BINARY_ACK) with
/// `attachments` attachments, when there are any: their number is known only once the arguments
/// are written.
fn mark_binary(out: &mut Vec<u8>, at: usize, binary: PacketType, attachments: usize) {
    if attachments == 0 {
        return;
    }
    out[at] = b'0' + binary as u8;
    let count = format!("{attachments}-");
    out.splice(at + 1..at + 1, count.bytes());
}

/// Appends `value` as JSON.
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let start = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(start);
    }
}

/// Encodes an EVENT: `[name, ...args]`; BINARY_EVENT when the payload has attachments. The returned
/// string is the Socket.IO packet (without the Engine.IO `4`).
pub fn encode_event(nsp: &str, event: &str, payload: &Payload, id: Option<u64>) -> String {
    let mut out = Vec::with_capacity(16 + event.len() + nsp.len());
    let mut attachments = Vec::new();
    let _ = write_event(&mut out, nsp, event, payload, None, id, &mut attachments);
    utf8_text(out)
}

/// Appends an EVENT packet (BINARY_EVENT when there are attachments, which are pushed onto
/// `attachments`): `[event, ...args, trailing]`, where `trailing` is one more string argument.
/// On error, `out` is as it was.
pub(crate) fn write_event(
    out: &mut Vec<u8>,
    nsp: &str,
    event: &str,
    args: &dyn OutgoingArgs,
    trailing: Option<&str>,
    id: Option<u64>,
    attachments: &mut Vec<Bytes>,
) -> Result<(), PayloadError> {
    let start = out.len();
    write_header(out, PacketType::Event, nsp, id);
    out.push(b'[');
    write_json(out, event);
    if let Err(e) = args.write_args(out, attachments) {
        out.truncate(start);
        return Err(e);
    }
    if let Some(trailing) = trailing {
        out.push(b',');
        write_json(out, trailing);
    }
    out.push(b']');
    mark_binary(out, start, PacketType::BinaryEvent, attachments.len());
    Ok(())
}

/// Encodes an ACK carrying `payload`.
pub fn encode_ack(nsp: &str, id: u64, payload: &Payload) -> String {
    let mut out = Vec::new();
    let mut attachments = Vec::new();
    let _ = write_ack(&mut out, nsp, id, payload, &mut attachments);
    utf8_text(out)
}

/// Appends an ACK packet (BINARY_ACK when there are attachments, which are pushed onto
/// `attachments`). On error, `out` is as it was.
pub(crate) fn write_ack(
    out: &mut Vec<u8>,
    nsp: &str,
    id: u64,
    args: &dyn OutgoingArgs,
    attachments: &mut Vec<Bytes>,
) -> Result<(), PayloadError> {
    let start = out.len();
    write_header(out, PacketType::Ack, nsp, Some(id));
    let open = out.len();
    if let Err(e) = args.write_args(out, attachments) {
        out.truncate(start);
        return Err(e);
    }
    // The arguments come each after a comma; the list starts with the first one.
    if out.len() > open {
        out[open] = b'[';
    } else {
        out.push(b'[');
    }
    out.push(b']');
    mark_binary(out, start, PacketType::BinaryAck, attachments.len());
    Ok(())
}

/// Writes the CONNECT reply of a socket let into `nsp`: `0[nsp,]{"sid":..}`, with `"pid"` when the
/// socket can recover its session.
pub(crate) fn write_connect_reply(out: &mut Vec<u8>, nsp: &str, sid: &str, pid: Option<&str>) {
    write_header(out, PacketType::Connect, nsp, None);
    out.extend_from_slice(b"{\"sid\":");
    write_json(out, sid);
    if let Some(pid) = pid {
        out.extend_from_slice(b",\"pid\":");
        write_json(out, pid);
    }
    out.push(b'}');
}

/// Encodes a packet with optional JSON data and no attachments (CONNECT, DISCONNECT, CONNECT_ERROR).
pub fn encode_control(nsp: &str, kind: PacketType, data: Option<&Value>) -> String {
    let mut out = Vec::new();
    write_header(&mut out, kind, nsp, None);
    if let Some(data) = data {
        write_json(&mut out, data);
    }
    utf8_text(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn decode(s: &str) -> Result<Option<Packet>, ParseError> {
        Decoder::new(10).decode_text(s)
    }

    fn packet(kind: PacketType, nsp: &str, id: Option<u64>, data: Option<Value>) -> Packet {
        Packet {
            kind,
            nsp: nsp.to_owned().into(),
            id,
            data,
            attachments: vec![],
        }
    }

    #[test]
    fn decodes_the_examples_of_the_spec() {
        assert_eq!(
            decode("0"),
            Ok(Some(packet(PacketType::Connect, "/", None, None)))
        );
        assert_eq!(
            decode("0/admin,{\"token\":\"123\"}"),
            Ok(Some(packet(
                PacketType::Connect,
                "/admin",
                None,
                Some(json!({"token": "123"}))
            )))
        );
        assert_eq!(
            decode("2[\"foo\"]"),
            Ok(Some(packet(
                PacketType::Event,
                "/",
                None,
                Some(json!(["foo"]))
            )))
        );
        assert_eq!(
            decode("212[\"foo\"]"),
            Ok(Some(packet(
                PacketType::Event,
                "/",
                Some(12),
                Some(json!(["foo"]))
            )))
        );
        assert_eq!(
            decode("3/admin,13[\"bar\"]"),
            Ok(Some(packet(
                PacketType::Ack,
                "/admin",
                Some(13),
                Some(json!(["bar"]))
            )))
        );
        assert_eq!(
            decode("1/admin,"),
            Ok(Some(packet(PacketType::Disconnect, "/admin", None, None)))
        );
        assert_eq!(
            decode("1/admin"),
            Ok(Some(packet(PacketType::Disconnect, "/admin", None, None)))
        );
        assert_eq!(
            decode(""),
            Ok(Some(packet(PacketType::Connect, "/", None, None)))
        );
        assert_eq!(
            decode("2[42]"),
            Ok(Some(packet(
                PacketType::Event,
                "/",
                None,
                Some(json!([42]))
            )))
        );
    }

    #[test]
    fn reassembles_binary_packets() {
        let mut d = Decoder::new(10);
        let header = "52-/admin,7[\"baz\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]";
        assert_eq!(d.decode_text(header), Ok(None));
        assert_eq!(d.decode_binary(Bytes::from_static(&[1])), Ok(None));
        let p = d.decode_binary(Bytes::from_static(&[2])).unwrap().unwrap();
        assert_eq!(p.kind, PacketType::Event);
        assert_eq!(p.nsp, "/admin");
        assert_eq!(p.id, Some(7));
        assert_eq!(
            p.attachments,
            vec![Bytes::from_static(&[1]), Bytes::from_static(&[2])]
        );
        // The decoder is ready for the next packet.
        assert!(d.decode_text("2[\"x\"]").unwrap().is_some());
    }

    #[test]
    fn refuses_what_the_reference_refuses() {
        let cases: &[(&str, ParseError)] = &[
            ("7", ParseError::UnknownType),
            ("a", ParseError::UnknownType),
            ("5[\"a\"]", ParseError::IllegalAttachments),
            ("50-[\"a\"]", ParseError::IllegalAttachments),
            ("5x-[\"a\"]", ParseError::IllegalAttachments),
            ("511-[\"a\"]", ParseError::TooManyAttachments),
            (
                "599999999999999999999999-[\"a\"]",
                ParseError::TooManyAttachments,
            ),
            ("242abc[\"x\"]", ParseError::InvalidPayload),
            ("2abc[\"x\"]", ParseError::InvalidPayload),
            ("299999999999999999999999[\"x\"]", ParseError::IllegalAckId),
            ("2{\"a\":1}", ParseError::InvalidPayload),
            ("2[]", ParseError::InvalidPayload),
            ("2[\"disconnect\"]", ParseError::InvalidPayload),
            ("2[\"connect\",1]", ParseError::InvalidPayload),
            ("2[null]", ParseError::InvalidPayload),
            ("0[1]", ParseError::InvalidPayload),
            ("0\"str\"", ParseError::InvalidPayload),
            ("1{}", ParseError::InvalidPayload),
            ("3{}", ParseError::InvalidPayload),
        ];
        for (input, error) in cases {
            assert_eq!(decode(input).as_ref().err(), Some(error), "{input}");
        }
        // Nesting deeper than the JSON parser's limit is refused, not a stack overflow.
        let deep = format!("2[\"x\",{}{}]", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(decode(&deep), Err(ParseError::InvalidPayload));
    }

    #[test]
    fn binary_order_is_enforced() {
        let mut d = Decoder::new(10);
        assert_eq!(
            d.decode_binary(Bytes::new()),
            Err(ParseError::UnexpectedBinary)
        );
        assert_eq!(
            d.decode_text("51-[\"a\",{\"_placeholder\":true,\"num\":0}]"),
            Ok(None)
        );
        assert_eq!(d.decode_text("2[\"b\"]"), Err(ParseError::UnexpectedText));
        let mut d = Decoder::new(10);
        assert_eq!(
            d.decode_text("51-[\"a\",{\"_placeholder\":true,\"num\":3}]"),
            Ok(None)
        );
        assert_eq!(
            d.decode_binary(Bytes::new()),
            Err(ParseError::IllegalPlaceholder)
        );
    }

    #[test]
    fn json_written_in_place_matches_serde_json_for_escapes_and_non_ascii() {
        let args = json!(["é \"q\" \n \u{1f600}", {"ключ": ["\\", 1.5, null]}]);
        let payload = Payload::from_args(&(args[0].clone(), args[1].clone())).unwrap();
        let expected = format!(
            "2[\"ev\u{e9}\",{},{}]",
            serde_json::to_string(&args[0]).unwrap(),
            serde_json::to_string(&args[1]).unwrap()
        );
        assert_eq!(encode_event("/", "ev\u{e9}", &payload, None), expected);
        assert_eq!(
            encode_ack("/", 4, &payload),
            format!("34[{},{}]", args[0], args[1])
        );
    }

    #[test]
    fn encodes_exact_bytes() {
        let payload = Payload::from_args(&("a", 1)).unwrap();
        assert_eq!(encode_event("/", "ev", &payload, None), "2[\"ev\",\"a\",1]");
        assert_eq!(
            encode_event("/nsp", "ev", &Payload::default(), Some(3)),
            "2/nsp,3[\"ev\"]"
        );
        let binary = Payload::from_args(&(bytes::Bytes::from_static(&[1]),)).unwrap();
        assert_eq!(
            encode_event("/", "ev", &binary, None),
            "51-[\"ev\",{\"_placeholder\":true,\"num\":0}]"
        );
        assert_eq!(encode_ack("/", 5, &payload), "35[\"a\",1]");
        assert_eq!(
            encode_ack("/x", 5, &binary),
            "61-/x,5[{\"_placeholder\":true,\"num\":0}]"
        );
        assert_eq!(
            encode_control("/", PacketType::Connect, Some(&json!({"sid": "abc"}))),
            "0{\"sid\":\"abc\"}"
        );
        assert_eq!(encode_control("/a", PacketType::Disconnect, None), "1/a,");
        assert_eq!(
            encode_control(
                "/a",
                PacketType::ConnectError,
                Some(&json!({"message": "Invalid namespace"}))
            ),
            "4/a,{\"message\":\"Invalid namespace\"}"
        );
        // Key order is kept, as JSON.stringify keeps it.
        let ordered = Payload::from_args(&json!({"b": 1, "a": 2})).unwrap();
        assert_eq!(
            encode_event("/", "e", &ordered, None),
            "2[\"e\",{\"b\":1,\"a\":2}]"
        );
    }

    proptest! {
        #[test]
        fn event_round_trip(
            nsp in "(/[a-z]{1,8})?",
            event in "[a-zA-Z0-9 é_-]{1,12}",
            id in proptest::option::of(any::<u64>()),
            args in proptest::collection::vec(any::<i64>(), 0..4),
        ) {
            prop_assume!(!RESERVED_EVENTS.contains(&event.as_str()));
            let nsp = if nsp.is_empty() { "/".to_owned() } else { nsp };
            let payload = Payload { args: args.iter().map(|a| json!(a)).collect(), attachments: vec![] };
            let text = encode_event(&nsp, &event, &payload, id);
            let decoded = decode(&text).unwrap().unwrap();
            let mut expected = vec![json!(event)];
            expected.extend(payload.args.iter().cloned());
            prop_assert_eq!(decoded, packet(PacketType::Event, &nsp, id, Some(Value::Array(expected))));
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,64}") {
            let mut d = Decoder::new(10);
            let _ = d.decode_text(&s);
            let _ = d.decode_binary(Bytes::from_static(&[0]));
        }
    }
}
