//! MLLP (Minimal Lower Layer Protocol) framing: `<VT> message <FS><CR>`. An I/O-free framer
//! the listener and the sender feed with whatever bytes arrived.

use crate::er7::MAX_MESSAGE;
use crate::Hl7Error;

pub const START: u8 = 0x0b;
pub const END: [u8; 2] = [0x1c, 0x0d];

/// Frames one message for the wire.
pub fn frame(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(START);
    out.extend_from_slice(message.as_bytes());
    out.extend_from_slice(&END);
    out
}

/// Collects frames from a byte stream.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Inside a frame (a start block was seen).
    open: bool,
}

/// What the framer found in the bytes it was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole message (UTF-8; bytes that are not are replaced and the message still read).
    Message(String),
    /// Bytes outside any frame, or a frame over [`MAX_MESSAGE`]: skipped, and how many.
    Junk(usize),
}

impl Framer {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        let mut junk = 0usize;
        for &b in bytes {
            if !self.open {
                if b == START {
                    self.open = true;
                    self.buf.clear();
                } else if !matches!(b, b'\r' | b'\n') {
                    junk += 1;
                }
                continue;
            }
            if b == START {
                // A new start inside a frame: the previous one was cut short.
                junk += self.buf.len() + 1;
                self.buf.clear();
                continue;
            }
            self.buf.push(b);
            if self.buf.ends_with(&END) {
                self.buf.truncate(self.buf.len() - END.len());
                let text = String::from_utf8_lossy(&self.buf).into_owned();
                out.push(Frame::Message(text));
                self.buf.clear();
                self.open = false;
            } else if self.buf.len() > MAX_MESSAGE + END.len() {
                junk += self.buf.len();
                self.buf.clear();
                self.open = false;
            }
        }
        if junk > 0 {
            out.push(Frame::Junk(junk));
        }
        out
    }
}

/// An error the sender of a framed reply can get.
pub fn expect_message(frames: Vec<Frame>) -> Result<Vec<String>, Hl7Error> {
    let mut msgs = Vec::new();
    for f in frames {
        match f {
            Frame::Message(m) => msgs.push(m),
            Frame::Junk(n) => return Err(Hl7Error::Framing(n)),
        }
    }
    Ok(msgs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_joined_anyhow() {
        let mut f = Framer::default();
        let wire = [frame("MSH|a"), frame("MSH|b")].concat();
        let mut got = Vec::new();
        for chunk in wire.chunks(3) {
            got.extend(f.push(chunk));
        }
        assert_eq!(
            got,
            vec![
                Frame::Message("MSH|a".into()),
                Frame::Message("MSH|b".into())
            ]
        );
    }

    #[test]
    fn junk_and_cut_frames_are_counted_and_skipped() {
        let mut f = Framer::default();
        let mut wire = b"hello".to_vec();
        wire.extend_from_slice(&[START, b'x', b'y']);
        wire.extend(frame("MSH|ok"));
        assert_eq!(
            f.push(&wire),
            vec![Frame::Message("MSH|ok".into()), Frame::Junk(5 + 3)]
        );
        let mut big = vec![START];
        big.extend(std::iter::repeat_n(b'x', MAX_MESSAGE + 10));
        let got = f.push(&big);
        assert!(matches!(got[..], [Frame::Junk(n)] if n > MAX_MESSAGE));
        assert_eq!(
            f.push(&frame("MSH|after")),
            vec![Frame::Message("MSH|after".into())]
        );
        assert!(expect_message(vec![Frame::Junk(1)]).is_err());
    }
}
