//! The WAL archive's segment files, `<sequence>-<commit Unix ms>.wal`:
//! `LWA2`, the page size (big-endian u32), whole WAL frames (the last
//! version of each page among the batches the segment gathers, see
//! `wal::last_versions`) and a CRC-32 of everything before it, so a torn
//! or damaged segment is refused instead of replayed. They are not
//! compressed: under load they are mostly index leaves full of random
//! token hashes, which zstd's fastest level shrank by 8 % for about a
//! twentieth of the daemon's CPU. Segments of earlier versions
//! (`.wal.zst`: zstd with its own checksum around `LWA1`, the page size
//! and the frames) still replay.

use std::path::Path;

use super::wal;

/// A segment's file name ends so.
pub const SUFFIX: &str = ".wal";
/// A segment written by an earlier version ends so.
const ZSTD_SUFFIX: &str = ".wal.zst";
const MAGIC: &[u8; 4] = b"LWA2";
const ZSTD_MAGIC: &[u8; 4] = b"LWA1";
/// Magic and page size.
const HEAD: usize = 8;
const CRC: usize = 4;

pub fn file_name(seq: u64, commit_ms: i64) -> String {
    format!("{seq:010}-{commit_ms:013}{SUFFIX}")
}

/// The sequence and commit time a segment's file name carries.
pub fn parse_name(name: &str) -> Option<(u64, i64)> {
    let stem = name.strip_suffix(ZSTD_SUFFIX).or_else(|| name.strip_suffix(SUFFIX))?;
    let (seq, ms) = stem.split_once('-')?;
    Some((seq.parse().ok()?, ms.parse().ok()?))
}

/// A segment's bytes: the last version of each page among `runs` (batches
/// of whole frames, in commit order).
pub fn encode(runs: &[&[u8]], page_size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(page_size as u32).to_be_bytes());
    wal::last_versions(runs, page_size, &mut out);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Reads the segment at `path`: its page size and frames, or `None` when
/// it is not a whole segment (wrong magic, failed checksum, cut short).
pub fn read(path: &Path) -> std::io::Result<Option<(usize, Vec<u8>)>> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let zstd = name.ends_with(ZSTD_SUFFIX);
    let mut bytes = if zstd {
        match zstd::decode_all(std::fs::File::open(path)?) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::Other => return Ok(None),
            Err(e) => return Err(e),
        }
    } else {
        std::fs::read(path)?
    };
    let magic = if zstd { ZSTD_MAGIC } else { MAGIC };
    if bytes.len() < HEAD + if zstd { 0 } else { CRC } || &bytes[..4] != magic {
        return Ok(None);
    }
    if !zstd {
        let body = bytes.len() - CRC;
        let stored = u32::from_be_bytes([bytes[body], bytes[body + 1], bytes[body + 2], bytes[body + 3]]);
        if crc32fast::hash(&bytes[..body]) != stored {
            return Ok(None);
        }
        bytes.truncate(body);
    }
    let page_size = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    bytes.drain(..HEAD);
    Ok(Some((page_size, bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(page: u32, commit_size: u32) -> Vec<u8> {
        let mut f = vec![page as u8; 24 + 16];
        f[..4].copy_from_slice(&page.to_be_bytes());
        f[4..8].copy_from_slice(&commit_size.to_be_bytes());
        f
    }

    #[test]
    fn a_segment_reads_back_and_a_damaged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = ([frame(1, 0), frame(2, 2)].concat(), [frame(1, 2)].concat());
        let bytes = encode(&[&a, &b], 16);
        let path = dir.path().join(file_name(7, 1_700_000_000_123));
        assert_eq!(parse_name(&path.file_name().unwrap().to_string_lossy()), Some((7, 1_700_000_000_123)));
        std::fs::write(&path, &bytes).unwrap();
        let (page_size, frames) = read(&path).unwrap().unwrap();
        assert_eq!(page_size, 16);
        assert_eq!(frames, [frame(2, 2), frame(1, 2)].concat(), "last versions, in order");

        let mut flipped = bytes.clone();
        flipped[HEAD + 30] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert!(read(&path).unwrap().is_none(), "a flipped bit fails the checksum");
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(read(&path).unwrap().is_none(), "a torn segment is refused");
    }

    #[test]
    fn a_segment_of_the_earlier_compressed_format_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0000000003-1700000000999.wal.zst");
        let plain = [ZSTD_MAGIC.as_slice(), &16u32.to_be_bytes(), &frame(4, 4)].concat();
        std::fs::write(&path, zstd::encode_all(plain.as_slice(), 1).unwrap()).unwrap();
        assert_eq!(parse_name("0000000003-1700000000999.wal.zst"), Some((3, 1_700_000_000_999)));
        assert_eq!(read(&path).unwrap(), Some((16, frame(4, 4))));
    }
}
