//! HTTP/2 frames as bytes pass by: where a connection's bytes stand (in
//! the preface, a frame's header or its payload), so that the HTTPS
//! stream can time a frame a client has begun (`tls_listener`) and put a
//! frame of its own between two of the server's (the GOAWAY of a graceful
//! stop).

/// Where an HTTP/2 connection's bytes stand: in the preface, in a frame
/// header, or in a frame's payload. Only what was *begun* is timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Unit {
    Preface { got: usize },
    Header { got: usize, len: [u8; 3] },
    Payload { left: usize },
}

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;

/// A GOAWAY frame (RFC 9113 6.8) with NO_ERROR and the largest stream id:
/// the client is to open no more streams, and every stream it has opened
/// will still be answered (so none is retried elsewhere after running
/// here), as the RFC advises for the first notice of a graceful shutdown.
pub(super) const GOAWAY: [u8; 17] = [0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0];

/// What a server writes first: frames (the preface is the client's).
pub(super) const SERVER_START: Unit = Unit::Header { got: 0, len: [0; 3] };

impl Unit {
    /// Whether a unit is partly through.
    pub(super) fn begun(self) -> bool {
        match self {
            Unit::Preface { got } | Unit::Header { got, .. } => got > 0,
            Unit::Payload { left } => left > 0,
        }
    }

    /// How many bytes are left before the next unit could begin (before
    /// a frame's payload, once in its header: its length is not yet known).
    pub(super) fn to_boundary(self) -> usize {
        match self {
            Unit::Preface { got } => PREFACE_LEN - got,
            Unit::Header { got, .. } => FRAME_HEADER_LEN - got,
            Unit::Payload { left } => left,
        }
    }

    /// Consumes `bytes`; returns the new position and whether a unit
    /// completed on the way.
    pub(super) fn advance(mut self, mut bytes: &[u8]) -> (Unit, bool) {
        let mut completed = false;
        while !bytes.is_empty() {
            let (next, used) = match self {
                Unit::Preface { got } => {
                    let used = bytes.len().min(PREFACE_LEN - got);
                    let next = if got + used == PREFACE_LEN {
                        Unit::Header { got: 0, len: [0; 3] }
                    } else {
                        Unit::Preface { got: got + used }
                    };
                    (next, used)
                }
                Unit::Header { got, mut len } => {
                    let used = bytes.len().min(FRAME_HEADER_LEN - got);
                    for (i, b) in bytes[..used].iter().enumerate() {
                        if got + i < 3 {
                            len[got + i] = *b;
                        }
                    }
                    let next = if got + used < FRAME_HEADER_LEN {
                        Unit::Header { got: got + used, len }
                    } else {
                        let payload =
                            usize::from(len[0]) << 16 | usize::from(len[1]) << 8 | usize::from(len[2]);
                        if payload == 0 {
                            Unit::Header { got: 0, len: [0; 3] }
                        } else {
                            Unit::Payload { left: payload }
                        }
                    };
                    (next, used)
                }
                Unit::Payload { left } => {
                    let used = bytes.len().min(left);
                    let next = if used == left {
                        Unit::Header { got: 0, len: [0; 3] }
                    } else {
                        Unit::Payload { left: left - used }
                    };
                    (next, used)
                }
            };
            completed |= !next.begun() || matches!((self, next), (Unit::Header { .. }, Unit::Payload { .. }));
            self = next;
            bytes = &bytes[used..];
        }
        (self, completed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Vec<u8> {
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, 1, 4, 0, 0, 0, 1];
        f.extend(std::iter::repeat_n(0u8, len));
        f
    }

    #[test]
    fn frames_are_followed_across_reads() {
        let start = Unit::Preface { got: 0 };
        assert!(!start.begun());
        let (u, _) = start.advance(b"PRI * HTTP/2.0\r\n");
        assert_eq!(u, Unit::Preface { got: 16 });
        let (u, done) = u.advance(b"\r\nSM\r\n\r\n");
        assert!(done && !u.begun(), "the preface is complete: {u:?}");
        let whole = frame(5);
        let (u, _) = u.advance(&whole[..4]);
        assert!(u.begun());
        let (u, _) = u.advance(&whole[4..12]);
        assert_eq!(u, Unit::Payload { left: 2 });
        let (u, done) = u.advance(&whole[12..]);
        assert!(done && !u.begun());
        // Two frames, one of them empty, in one read.
        let mut two = frame(0);
        two.extend(frame(3));
        let (u, _) = u.advance(&two);
        assert!(!u.begun());
    }

    #[test]
    fn a_write_cut_at_the_boundary_leaves_room_for_a_frame_of_ours() {
        let (u, _) = SERVER_START.advance(&GOAWAY);
        assert!(!u.begun(), "the GOAWAY is one whole frame");
        let data = frame(40);
        let (u, _) = SERVER_START.advance(&data[..5]);
        assert_eq!(u.to_boundary(), 4, "the rest of the header first");
        let (u, _) = u.advance(&data[5..5 + u.to_boundary()]);
        assert_eq!(u.to_boundary(), 40, "then the payload");
        let (u, _) = u.advance(&data[9..]);
        assert!(!u.begun());
    }
}
