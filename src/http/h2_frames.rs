//! HTTP/2 frames as bytes pass by: where a connection's bytes stand (in
//! the preface, a frame's header or its payload), so that the HTTPS
//! stream can time a frame a client has begun (`tls_listener`), put a
//! frame of its own between two of the server's (the GOAWAY of a graceful
//! stop) and add a setting to the server's first SETTINGS frame.

/// Where an HTTP/2 connection's bytes stand: in the preface, in a frame
/// header, or in a frame's payload. Only what was *begun* is timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Unit {
    Preface {
        got: usize,
    },
    /// `head`: the frame header's length, type and flags as far as read;
    /// `open`: a header block is still open (only a CONTINUATION may come).
    Header {
        got: usize,
        head: [u8; 5],
        open: bool,
    },
    Payload {
        left: usize,
        open: bool,
    },
}

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;

/// The frame types that carry a header block, and the flag that ends one
/// (RFC 9113 4.3: nothing but its CONTINUATION frames may come between).
const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

/// A GOAWAY frame (RFC 9113 6.8) with NO_ERROR and the largest stream id:
/// the client is to open no more streams, and every stream it has opened
/// will still be answered (so none is retried elsewhere after running
/// here), as the RFC advises for the first notice of a graceful shutdown.
pub(super) const GOAWAY: [u8; 17] = goaway(0x0);

/// A GOAWAY frame with ENHANCE_YOUR_CALM (RFC 9113 7): the connection is
/// being closed for what its client did. It too names the largest stream
/// id, so a client retries none of its requests on its own: any may have
/// run (a login, a refresh) before the connection closed.
pub(super) const GOAWAY_CALM: [u8; 17] = goaway(0xb);

const fn goaway(error: u8) -> [u8; 17] {
    [0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, error]
}

const SETTINGS: u8 = 0x4;
const ACK: u8 = 0x1;
/// SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 6.5.2).
const MAX_CONCURRENT_STREAMS: [u8; 2] = [0, 3];

/// The server's first SETTINGS frame, whole at the start of `bytes`, with
/// SETTINGS_MAX_CONCURRENT_STREAMS = `limit` added (actix-http gives no
/// way to set it); with how many bytes of `bytes` it stands for. `None`
/// when `bytes` does not begin with a whole SETTINGS frame that is not an
/// acknowledgement.
pub(super) fn settings_with_stream_limit(bytes: &[u8], limit: u32) -> Option<(Vec<u8>, usize)> {
    let head = bytes.get(..FRAME_HEADER_LEN)?;
    if head[3] != SETTINGS || head[4] & ACK != 0 {
        return None;
    }
    let payload = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let frame = bytes.get(..FRAME_HEADER_LEN + payload)?;
    let grown = u32::try_from(payload + 6).ok()?.to_be_bytes();
    let mut patched = Vec::with_capacity(frame.len() + 6);
    patched.extend_from_slice(&grown[1..]);
    patched.extend_from_slice(&frame[3..]);
    patched.extend_from_slice(&MAX_CONCURRENT_STREAMS);
    patched.extend_from_slice(&limit.to_be_bytes());
    Some((patched, frame.len()))
}

/// What a server writes first: frames (the preface is the client's).
pub(super) const SERVER_START: Unit = Unit::frame(false);

impl Unit {
    const fn frame(open: bool) -> Unit {
        Unit::Header { got: 0, head: [0; 5], open }
    }

    /// Whether a unit is partly through.
    pub(super) fn begun(self) -> bool {
        match self {
            Unit::Preface { got } | Unit::Header { got, .. } => got > 0,
            Unit::Payload { left, .. } => left > 0,
        }
    }

    /// Whether a frame of another's may go here: no frame begun, no header
    /// block open.
    pub(super) fn between_frames(self) -> bool {
        matches!(self, Unit::Header { got: 0, open: false, .. })
    }

    /// How many bytes are left before the next unit could begin (before
    /// a frame's payload, once in its header: its length is not yet known).
    pub(super) fn to_boundary(self) -> usize {
        match self {
            Unit::Preface { got } => PREFACE_LEN - got,
            Unit::Header { got, .. } => FRAME_HEADER_LEN - got,
            Unit::Payload { left, .. } => left,
        }
    }

    /// Consumes `bytes`; returns the new position and whether a unit
    /// completed on the way.
    pub(super) fn advance(mut self, mut bytes: &[u8]) -> (Unit, bool) {
        let mut completed = false;
        while !bytes.is_empty() {
            let used = bytes.len().min(self.to_boundary());
            let next = match self {
                Unit::Preface { got } if got + used == PREFACE_LEN => Unit::frame(false),
                Unit::Preface { got } => Unit::Preface { got: got + used },
                Unit::Header { got, mut head, open } => {
                    // The length, type and flags: the header's first five bytes.
                    for (at, b) in (got..head.len()).zip(&bytes[..used]) {
                        head[at] = *b;
                    }
                    if got + used < FRAME_HEADER_LEN {
                        Unit::Header { got: got + used, head, open }
                    } else {
                        Unit::after_header(head, open)
                    }
                }
                Unit::Payload { left, open } if used == left => Unit::frame(open),
                Unit::Payload { left, open } => Unit::Payload { left: left - used, open },
            };
            completed |= !next.begun() || matches!((self, next), (Unit::Header { .. }, Unit::Payload { .. }));
            self = next;
            bytes = &bytes[used..];
        }
        (self, completed)
    }

    /// Where a frame whose header is `head` goes on: into its payload, or
    /// (empty) to the next frame; a header block opens or closes with it.
    fn after_header(head: [u8; 5], open: bool) -> Unit {
        let payload = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let open = match head[3] {
            HEADERS | PUSH_PROMISE | CONTINUATION => head[4] & END_HEADERS == 0,
            _ => open,
        };
        if payload == 0 { Unit::frame(open) } else { Unit::Payload { left: payload, open } }
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
        assert_eq!(u, Unit::Payload { left: 2, open: false });
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

    #[test]
    fn the_first_settings_frame_gains_a_stream_limit() {
        // INITIAL_WINDOW_SIZE = 1 MiB, then a WINDOW_UPDATE after it.
        let mut written = vec![0, 0, 6, SETTINGS, 0, 0, 0, 0, 0, 0, 4, 0, 0x10, 0, 0];
        written.extend([0, 0, 4, 0x8, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        let (patched, stands_for) = settings_with_stream_limit(&written, 128).unwrap();
        assert_eq!(stands_for, 15, "the SETTINGS frame alone");
        assert_eq!(patched, [0, 0, 12, SETTINGS, 0, 0, 0, 0, 0, 0, 4, 0, 0x10, 0, 0, 0, 3, 0, 0, 0, 128]);
        let (u, done) = SERVER_START.advance(&patched);
        assert!(done && u.between_frames(), "still one whole frame: {u:?}");
        // Not whole yet, an acknowledgement, or another frame: left alone.
        assert_eq!(settings_with_stream_limit(&written[..12], 128), None);
        assert_eq!(settings_with_stream_limit(&[0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0], 128), None);
        assert_eq!(settings_with_stream_limit(&written[15..], 128), None);
    }

    #[test]
    fn a_header_block_left_open_is_not_between_frames_until_it_ends() {
        let frame_of = |kind: u8, flags: u8, len: usize| {
            let mut f = vec![0, 0, len as u8, kind, flags, 0, 0, 0, 1];
            f.extend(std::iter::repeat_n(0u8, len));
            f
        };
        // HEADERS without END_HEADERS: its CONTINUATIONs must follow at once.
        let (u, _) = SERVER_START.advance(&frame_of(HEADERS, 0, 10));
        assert!(!u.begun() && !u.between_frames(), "{u:?}");
        assert_eq!(u.to_boundary(), FRAME_HEADER_LEN, "up to the next frame's header");
        let (u, _) = u.advance(&frame_of(CONTINUATION, 0, 0));
        assert!(!u.between_frames(), "still open: {u:?}");
        let (u, _) = u.advance(&frame_of(CONTINUATION, END_HEADERS, 4));
        assert!(u.between_frames(), "closed: {u:?}");
        // DATA leaves no block open, whatever its flags.
        let (u, _) = u.advance(&frame_of(0x0, 0x1, 3));
        assert!(u.between_frames());
    }
}
