//! The Engine.IO v4 polling payload: packets joined by the record separator `\x1e`, binary packets as
//! `b` + base64, so that a payload is always text.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::packet::{DecodeError, Frame, Packet};

/// The record separator between the packets of a payload.
pub const SEPARATOR: u8 = 0x1e;

/// Encodes frames as one polling payload.
pub fn encode_payload<'a>(frames: impl IntoIterator<Item = &'a Frame> + Clone) -> Bytes {
    let len: usize = frames
        .clone()
        .into_iter()
        .map(|f| f.payload_item_len() + 1)
        .sum();
    let mut out = BytesMut::with_capacity(len);
    for (i, frame) in frames.into_iter().enumerate() {
        if i > 0 {
            out.put_u8(SEPARATOR);
        }
        frame.write_payload_item(&mut out);
    }
    out.freeze()
}

/// Decodes a polling payload into packets, stopping after the first packet that cannot be decoded,
/// as the reference decoder does.
pub fn decode_payload(payload: &ByteString) -> Vec<Result<Packet, DecodeError>> {
    let mut packets = Vec::new();
    for item in payload.split('\u{1e}') {
        let decoded = Packet::decode_text(&payload.slice_ref(item));
        let failed = decoded.is_err();
        packets.push(decoded);
        if failed {
            break;
        }
    }
    packets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::packet::Message;
    use proptest::prelude::*;

    #[test]
    fn joins_with_record_separator_and_base64() {
        let frames = [
            Frame::text_message("hello"),
            Frame::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            Packet::Ping(ByteString::new()).encode(),
        ];
        assert_eq!(&encode_payload(&frames)[..], b"4hello\x1ebAQIDBA==\x1e2");
        assert_eq!(&encode_payload(&[] as &[Frame])[..], b"");
    }

    #[test]
    fn decodes_and_stops_at_the_first_error() {
        let decoded = decode_payload(&ByteString::from("4a\x1ebAQ==\x1ex\x1e4never"));
        assert_eq!(
            decoded,
            vec![
                Ok(Packet::Message(Message::Text(ByteString::from("a")))),
                Ok(Packet::Message(Message::Binary(Bytes::from_static(&[1])))),
                Err(DecodeError),
            ]
        );
        assert_eq!(decode_payload(&ByteString::new()), vec![Err(DecodeError)]);
    }

    proptest! {
        #[test]
        fn payload_round_trip(packets in proptest::collection::vec(
            crate::engine::packet::tests::arb_packet()
                .prop_filter("no separator in text", |p| match p.encode() {
                    Frame::Text(t) => !t.contains('\u{1e}'),
                    Frame::Binary(_) => true,
                }),
            1..8,
        )) {
            let frames: Vec<Frame> = packets.iter().map(Packet::encode).collect();
            let body = ByteString::try_from(encode_payload(&frames)).unwrap();
            let decoded: Vec<_> = decode_payload(&body).into_iter().map(Result::unwrap).collect();
            prop_assert_eq!(decoded, packets);
        }

        #[test]
        fn arbitrary_payload_never_panics(s in ".*") {
            let _ = decode_payload(&ByteString::from(s));
        }
    }
}
