//! Engine.IO v4 packets: the single-packet codec used by WebSocket frames and, item by item, by the
//! polling payload codec.

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

/// The application data of a `message` packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message (UTF-8).
    Text(ByteString),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// Length of the data in bytes.
    pub fn len(&self) -> usize {
        match self {
            Message::Text(s) => s.len(),
            Message::Binary(b) => b.len(),
        }
    }

    /// Whether the data is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One Engine.IO packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// `0`: the handshake data, sent by the server.
    Open(ByteString),
    /// `1`: close the session.
    Close,
    /// `2`: ping (server to client; `2probe` from the client during an upgrade).
    Ping(ByteString),
    /// `3`: pong (client to server; `3probe` from the server during an upgrade).
    Pong(ByteString),
    /// `4` or a binary frame: application data.
    Message(Message),
    /// `5`: the client completes an upgrade.
    Upgrade,
    /// `6`: releases a pending poll.
    Noop,
}

/// An encoded packet, as it travels in one WebSocket frame.
///
/// Text frames carry the type character first (`4hello`); binary frames carry a binary message with no
/// prefix. Cloning is cheap: a broadcast encodes once and shares the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A text frame holding an encoded packet.
    Text(ByteString),
    /// A binary frame holding the data of a binary message.
    Binary(Bytes),
}

impl Frame {
    /// The number of bytes of the frame's payload.
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(s) => s.len(),
            Frame::Binary(b) => b.len(),
        }
    }

    /// Whether the frame's payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Encodes a text message packet (`4` + text) once, to be sent to any number of sessions.
    pub fn text_message(text: &str) -> Frame {
        Frame::text_message_with(text.len(), |out| out.extend_from_slice(text.as_bytes()))
    }

    /// Encodes a text message packet whose text `write` appends after the `4`, about `capacity`
    /// bytes: the text is written straight into the frame, and checked as UTF-8 once, whole (bytes
    /// that are not UTF-8 become U+FFFD).
    pub fn text_message_with(capacity: usize, write: impl FnOnce(&mut Vec<u8>)) -> Frame {
        let mut text = Vec::with_capacity(capacity + 1);
        text.push(b'4');
        write(&mut text);
        Frame::Text(ByteString::from(utf8_text(text)))
    }

    /// Encodes a text message packet whose text `write` appends after the `4`, like
    /// [`Frame::text_message_with`], but written in `scratch`, a buffer the caller keeps from one
    /// frame to the next, then copied into a frame of exactly its length. That is one allocation
    /// per frame instead of two: a buffer longer than its text needs a second one, a shared
    /// header, to become `Bytes`. A `write` that fails makes no frame.
    pub fn try_text_message_in<E>(
        scratch: &mut Vec<u8>,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<Frame, E> {
        /// A larger scratch buffer is let go after use rather than kept.
        const KEPT: usize = 64 * 1024;
        scratch.clear();
        scratch.push(b'4');
        let frame =
            write(scratch).map(|()| Frame::Text(ByteString::from(utf8_text(scratch.to_vec()))));
        if scratch.capacity() > KEPT {
            *scratch = Vec::new();
        }
        frame
    }

    /// Encodes a binary message packet.
    pub fn binary_message(data: Bytes) -> Frame {
        Frame::Binary(data)
    }

    /// Appends this frame as one item of a polling payload: text as is, binary as `b` + base64.
    pub(crate) fn write_payload_item(&self, out: &mut BytesMut) {
        match self {
            Frame::Text(s) => out.put_slice(s.as_bytes()),
            Frame::Binary(b) => {
                out.put_u8(b'b');
                let start = out.len();
                out.resize(start + base64::encoded_len(b.len(), true).unwrap_or(0), 0);
                let written = STANDARD
                    .encode_slice(b, &mut out[start..])
                    .unwrap_or_default();
                out.truncate(start + written);
            }
        }
    }

    /// Length of this frame as a polling payload item.
    pub(crate) fn payload_item_len(&self) -> usize {
        match self {
            Frame::Text(s) => s.len(),
            Frame::Binary(b) => 1 + base64::encoded_len(b.len(), true).unwrap_or(0),
        }
    }
}

/// The input could not be decoded as an Engine.IO packet (the reference answers with a `parse error`
/// close).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError;

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("parser error")
    }
}

impl std::error::Error for DecodeError {}

impl Packet {
    /// Decodes a text-encoded packet: a WebSocket text frame or one item of a polling payload.
    ///
    /// `b` + base64 is a binary message, as the reference decoder reads it on every transport.
    pub fn decode_text(text: &ByteString) -> Result<Packet, DecodeError> {
        let bytes = text.as_bytes();
        let Some(&kind) = bytes.first() else {
            return Err(DecodeError);
        };
        let rest = || text.slice_ref(&text[1..]);
        Ok(match kind {
            b'0' => Packet::Open(rest()),
            b'1' => Packet::Close,
            b'2' => Packet::Ping(rest()),
            b'3' => Packet::Pong(rest()),
            b'4' => Packet::Message(Message::Text(rest())),
            b'5' => Packet::Upgrade,
            b'6' => Packet::Noop,
            b'b' => Packet::Message(Message::Binary(
                LENIENT
                    .decode(&bytes[1..])
                    .map(Bytes::from)
                    .map_err(|_| DecodeError)?,
            )),
            _ => return Err(DecodeError),
        })
    }

    /// A binary WebSocket frame is always a binary message.
    pub fn decode_binary(data: Bytes) -> Packet {
        Packet::Message(Message::Binary(data))
    }

    /// Decodes one WebSocket frame.
    pub fn decode_frame(frame: &Frame) -> Result<Packet, DecodeError> {
        match frame {
            Frame::Text(text) => Packet::decode_text(text),
            Frame::Binary(data) => Ok(Packet::decode_binary(data.clone())),
        }
    }

    /// Encodes the packet as one WebSocket frame.
    pub fn encode(&self) -> Frame {
        let with = |kind: u8, data: &str| {
            let mut text = String::with_capacity(1 + data.len());
            text.push(char::from(kind));
            text.push_str(data);
            Frame::Text(ByteString::from(text))
        };
        match self {
            Packet::Open(d) => with(b'0', d),
            Packet::Close => Frame::Text(ByteString::from_static("1")),
            Packet::Ping(d) => with(b'2', d),
            Packet::Pong(d) => with(b'3', d),
            Packet::Message(Message::Text(d)) => with(b'4', d),
            Packet::Message(Message::Binary(b)) => Frame::Binary(b.clone()),
            Packet::Upgrade => Frame::Text(ByteString::from_static("5")),
            Packet::Noop => Frame::Text(ByteString::from_static("6")),
        }
    }
}

/// Decodes base64 with or without padding, as the reference (Node's `Buffer`) accepts both.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `bytes` as text: serde_json and `str`s write UTF-8, so this checks it once for a whole packet
/// rather than once per piece written; anything else is replaced by U+FFFD rather than lost.
pub(crate) fn utf8_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(s: &str) -> ByteString {
        ByteString::from(s)
    }

    #[test]
    fn decodes_every_packet_type() {
        assert_eq!(
            Packet::decode_text(&text("0{}")),
            Ok(Packet::Open(text("{}")))
        );
        assert_eq!(Packet::decode_text(&text("1")), Ok(Packet::Close));
        assert_eq!(
            Packet::decode_text(&text("2probe")),
            Ok(Packet::Ping(text("probe")))
        );
        assert_eq!(Packet::decode_text(&text("3")), Ok(Packet::Pong(text(""))));
        assert_eq!(
            Packet::decode_text(&text("4héllo")),
            Ok(Packet::Message(Message::Text(text("héllo"))))
        );
        assert_eq!(Packet::decode_text(&text("5")), Ok(Packet::Upgrade));
        assert_eq!(Packet::decode_text(&text("6")), Ok(Packet::Noop));
        assert_eq!(
            Packet::decode_text(&text("bAQIDBA==")),
            Ok(Packet::Message(Message::Binary(Bytes::from_static(&[
                1, 2, 3, 4
            ]))))
        );
    }

    #[test]
    fn rejects_unknown_types_empty_input_and_bad_base64() {
        for bad in ["", "7", "x", "é", "b!!", "bA"] {
            assert_eq!(Packet::decode_text(&text(bad)), Err(DecodeError), "{bad:?}");
        }
    }

    #[test]
    fn encodes_exact_bytes() {
        assert_eq!(Packet::Close.encode(), Frame::Text(text("1")));
        assert_eq!(Packet::Ping(text("")).encode(), Frame::Text(text("2")));
        assert_eq!(
            Packet::Pong(text("probe")).encode(),
            Frame::Text(text("3probe"))
        );
        assert_eq!(Frame::text_message("hi"), Frame::Text(text("4hi")));
        let mut out = BytesMut::new();
        Frame::Binary(Bytes::from_static(&[1, 2, 3, 4])).write_payload_item(&mut out);
        assert_eq!(&out[..], b"bAQIDBA==");
        assert_eq!(
            Frame::Binary(Bytes::from_static(&[1, 2, 3, 4])).payload_item_len(),
            9
        );
    }

    pub(crate) fn arb_packet() -> impl Strategy<Value = Packet> {
        let s = || ".*".prop_map(|s: String| ByteString::from(s));
        prop_oneof![
            s().prop_map(Packet::Open),
            Just(Packet::Close),
            s().prop_map(Packet::Ping),
            s().prop_map(Packet::Pong),
            s().prop_map(|t| Packet::Message(Message::Text(t))),
            proptest::collection::vec(any::<u8>(), 0..64)
                .prop_map(|b| Packet::Message(Message::Binary(Bytes::from(b)))),
            Just(Packet::Upgrade),
            Just(Packet::Noop),
        ]
    }

    proptest! {
        #[test]
        fn frame_round_trip(packet in arb_packet()) {
            prop_assert_eq!(Packet::decode_frame(&packet.encode()), Ok(packet));
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".*") {
            let _ = Packet::decode_text(&ByteString::from(s));
        }
    }
}
