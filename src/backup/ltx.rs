//! The LTX file format, version 3 (superfly/ltx v0.5.2, what Litestream 0.5.16+ writes and restores): a 100-byte
//! header, one frame per page (page number, flags `0x0001`, the big-endian compressed size, one raw LZ4 block), a
//! zero page header, a varint page index with its length, and a 16-byte trailer whose file checksum is
//! CRC-64/GO-ISO over the header, the frames with their pages *decompressed*, the end marker, the index and the
//! post-apply checksum. Files are written with flags `0x2` (no database checksums), as Litestream does: its
//! restore refuses files that carry them. `../shared/research/litestream-format.md` §2 is the reference.

use std::io::Read;

use crc::{CRC_64_GO_ISO, Crc, Table};

use crate::error::{Error, Result};

pub const MAGIC: &[u8; 4] = b"LTX1";
pub const HEADER_SIZE: usize = 100;
pub const TRAILER_SIZE: usize = 16;
/// The only header flag: no pre- or post-apply database checksums.
pub const FLAG_NO_CHECKSUM: u32 = 0x2;
/// Page frames carry their compressed size (the v0.5.2 form).
const PAGE_FLAG_SIZE: u16 = 0x1;
/// Every stored checksum has its top bit set.
const CHECKSUM_FLAG: u64 = 1 << 63;

/// Slice-by-16 tables: every page of every file passes through this (several times faster than bytewise).
static CRC64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_GO_ISO);

/// The header fields a writer chooses (the WAL fields, node id and checksums are written as zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub page_size: u32,
    /// The database's size in pages after this file is applied.
    pub commit: u32,
    pub min_txid: u64,
    pub max_txid: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl Header {
    /// A snapshot (MinTXID 1) holds every page 1..=Commit but the lock page.
    pub fn is_snapshot(&self) -> bool {
        self.min_txid == 1
    }

    fn validate(&self) -> Result<()> {
        if !(512..=65_536).contains(&self.page_size) || !self.page_size.is_power_of_two() {
            return Err(ltx(format!("page size {} is not a power of two from 512 to 65536", self.page_size)));
        }
        if self.commit == 0 {
            return Err(ltx("commit must be at least 1 page"));
        }
        if self.min_txid == 0 || self.max_txid < self.min_txid {
            return Err(ltx(format!("TXIDs {}-{} are not a range from 1", self.min_txid, self.max_txid)));
        }
        Ok(())
    }

    fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        out[0..4].copy_from_slice(MAGIC);
        out[4..8].copy_from_slice(&FLAG_NO_CHECKSUM.to_be_bytes());
        out[8..12].copy_from_slice(&self.page_size.to_be_bytes());
        out[12..16].copy_from_slice(&self.commit.to_be_bytes());
        out[16..24].copy_from_slice(&self.min_txid.to_be_bytes());
        out[24..32].copy_from_slice(&self.max_txid.to_be_bytes());
        out[32..40].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        // Pre-apply checksum, WAL offset, size and salts, node id, reserved: zero.
        out
    }

    fn decode(bytes: &[u8]) -> Result<Header> {
        if bytes.len() < HEADER_SIZE || &bytes[0..4] != MAGIC {
            return Err(ltx("not an LTX file (no LTX1 magic)"));
        }
        let u32_at = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap_or_default());
        let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
        let flags = u32_at(4);
        if flags & !FLAG_NO_CHECKSUM != 0 {
            return Err(ltx(format!("unknown header flags {flags:#x}")));
        }
        let header = Header {
            page_size: u32_at(8),
            commit: u32_at(12),
            min_txid: u64_at(16),
            max_txid: u64_at(24),
            timestamp_ms: u64_at(32) as i64,
        };
        header.validate()?;
        Ok(header)
    }
}

fn ltx(message: impl Into<String>) -> Error {
    Error::Internal(format!("LTX: {}", message.into()))
}

/// The header of an LTX file (checked as the encoder checks its own).
pub fn decode_header(bytes: &[u8]) -> Result<Header> {
    Header::decode(bytes)
}

/// The page SQLite reserves for its lock byte in databases over 1 GiB; never stored.
pub fn lock_pgno(page_size: u32) -> u32 {
    0x4000_0000 / page_size + 1
}

/// `<min>-<max>.ltx`, 16 lowercase hex digits each.
pub fn file_name(min_txid: u64, max_txid: u64) -> String {
    format!("{min_txid:016x}-{max_txid:016x}.ltx")
}

/// Writes one LTX file: pages in ascending order (a snapshot: every page 1..=Commit but the lock page).
pub struct Encoder {
    header: Header,
    out: Vec<u8>,
    digest: crc::Digest<'static, u64, Table<16>>,
    index: Vec<u8>,
    last: u32,
}

impl Encoder {
    pub fn new(header: Header) -> Result<Encoder> {
        header.validate()?;
        let head = header.encode();
        let mut digest = CRC64.digest();
        digest.update(&head);
        Ok(Encoder { header, out: head.to_vec(), digest, index: Vec::new(), last: 0 })
    }

    /// Adds page `pgno` (exactly one page of bytes).
    pub fn page(&mut self, pgno: u32, data: &[u8]) -> Result<()> {
        let h = self.header;
        if data.len() != h.page_size as usize {
            return Err(ltx(format!("page {pgno} has {} bytes, not {}", data.len(), h.page_size)));
        }
        if pgno == 0 || pgno > h.commit || pgno == lock_pgno(h.page_size) || pgno <= self.last {
            return Err(ltx(format!("page {pgno} is out of order or out of range (commit {})", h.commit)));
        }
        if h.is_snapshot() {
            let mut expected = self.last + 1;
            if expected == lock_pgno(h.page_size) {
                expected += 1;
            }
            if pgno != expected {
                return Err(ltx(format!("a snapshot holds every page: {expected} comes before {pgno}")));
            }
        }
        let offset = self.out.len();
        // The frame head, then the block compressed straight into the output (no buffer per page).
        let at = offset + 10;
        self.out.resize(at + lz4_flex::block::get_maximum_output_size(data.len()), 0);
        let size = lz4_flex::block::compress_into(data, &mut self.out[at..])
            .map_err(|e| ltx(format!("page {pgno} does not compress: {e}")))?;
        self.out.truncate(at + size);
        let mut frame_head = [0u8; 10];
        frame_head[0..4].copy_from_slice(&pgno.to_be_bytes());
        frame_head[4..6].copy_from_slice(&PAGE_FLAG_SIZE.to_be_bytes());
        frame_head[6..10].copy_from_slice(&(size as u32).to_be_bytes());
        self.out[offset..at].copy_from_slice(&frame_head);
        self.digest.update(&frame_head);
        self.digest.update(data);
        let size = (self.out.len() - offset) as u64;
        for value in [u64::from(pgno), offset as u64, size] {
            varint(&mut self.index, value);
        }
        self.last = pgno;
        Ok(())
    }

    /// The whole file.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        let h = self.header;
        if h.is_snapshot() {
            let last_expected = if h.commit == lock_pgno(h.page_size) { h.commit - 1 } else { h.commit };
            if self.last != last_expected {
                return Err(ltx(format!("a snapshot of {} pages ended at page {}", h.commit, self.last)));
            }
        }
        let end = [0u8; 6];
        self.out.extend_from_slice(&end);
        self.digest.update(&end);
        varint(&mut self.index, 0);
        let length = (self.index.len() as u64).to_be_bytes();
        self.out.extend_from_slice(&self.index);
        self.out.extend_from_slice(&length);
        self.digest.update(&self.index);
        self.digest.update(&length);
        let post_apply = [0u8; 8];
        self.out.extend_from_slice(&post_apply);
        self.digest.update(&post_apply);
        let checksum = CHECKSUM_FLAG | self.digest.finalize();
        self.out.extend_from_slice(&checksum.to_be_bytes());
        Ok(self.out)
    }
}

/// Unsigned LEB128, as Go's `binary.AppendUvarint`.
fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A decoded file: its header and its pages, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub header: Header,
    pub pages: Vec<(u32, Vec<u8>)>,
}

/// Reads a whole LTX file (size-prefixed block frames), checking its file checksum.
pub fn decode(bytes: &[u8]) -> Result<Decoded> {
    let mut pages = Vec::new();
    let header = read_pages(&mut &bytes[..], |pgno, page| {
        pages.push((pgno, page.to_vec()));
        Ok(())
    })?;
    Ok(Decoded { header, pages })
}

fn cut_short(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::UnexpectedEof { ltx("the file is cut short") } else { ltx(e.to_string()) }
}

/// Reads an LTX file from `reader` one page at a time (memory: one page and one compressed block), handing each
/// to `on_page` in file order (ascending page numbers, none above the header's commit), then checks the page
/// index and the file checksum. Pages handed over before a bad checksum is found are not taken back: a caller
/// writes them into a file it discards on error.
pub fn read_pages(reader: &mut impl Read, mut on_page: impl FnMut(u32, &[u8]) -> Result<()>) -> Result<Header> {
    let mut head = [0u8; HEADER_SIZE];
    reader.read_exact(&mut head).map_err(cut_short)?;
    let header = Header::decode(&head)?;
    let page_size = header.page_size as usize;
    let mut digest = CRC64.digest();
    digest.update(&head);
    let mut page = vec![0u8; page_size];
    let mut block = Vec::new();
    let mut last = 0u32;
    let mut count = 0u64;
    loop {
        let mut frame = [0u8; 10];
        reader.read_exact(&mut frame[..6]).map_err(cut_short)?;
        let pgno = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let flags = u16::from_be_bytes([frame[4], frame[5]]);
        if pgno == 0 {
            if flags != 0 {
                return Err(ltx("the page block's end marker has flags"));
            }
            digest.update(&frame[..6]);
            break;
        }
        if flags != PAGE_FLAG_SIZE {
            return Err(ltx(format!("page {pgno} has frame flags {flags:#x} (only size-prefixed blocks are read)")));
        }
        if pgno <= last || pgno > header.commit || pgno == lock_pgno(header.page_size) {
            return Err(ltx(format!(
                "page {pgno} is out of order, the lock page or above the commit ({})",
                header.commit
            )));
        }
        // A snapshot holds every page 1..=commit but the lock page.
        let expected = if last + 1 == lock_pgno(header.page_size) { last + 2 } else { last + 1 };
        if header.is_snapshot() && pgno != expected {
            return Err(ltx(format!("a snapshot holds every page: {expected} comes before {pgno}")));
        }
        reader.read_exact(&mut frame[6..10]).map_err(cut_short)?;
        let size = u32::from_be_bytes([frame[6], frame[7], frame[8], frame[9]]) as usize;
        if size > lz4_flex::block::get_maximum_output_size(page_size) {
            return Err(ltx(format!("page {pgno} claims a block of {size} bytes")));
        }
        block.resize(size, 0);
        reader.read_exact(&mut block).map_err(cut_short)?;
        let n = lz4_flex::block::decompress_into(&block, &mut page)
            .map_err(|e| ltx(format!("page {pgno} does not decompress: {e}")))?;
        if n != page_size {
            return Err(ltx(format!("page {pgno} decompresses to {n} bytes")));
        }
        digest.update(&frame);
        digest.update(&page);
        on_page(pgno, &page)?;
        last = pgno;
        count += 1;
    }
    if header.is_snapshot() {
        let end = if header.commit == lock_pgno(header.page_size) { header.commit - 1 } else { header.commit };
        if last != end {
            return Err(ltx(format!("a snapshot of {} pages ended at page {last}", header.commit)));
        }
    }
    // The index (three varints of at most 10 bytes per page, and a terminator), its length, then the trailer:
    // read with a bound, so a file cannot make this allocate more than its pages justify.
    let limit = (count + 1) * 30 + 8 + TRAILER_SIZE as u64;
    let mut rest = Vec::new();
    reader.take(limit + 1).read_to_end(&mut rest).map_err(cut_short)?;
    if rest.len() as u64 > limit {
        return Err(ltx("the page index is longer than its pages allow"));
    }
    if rest.len() < 8 + TRAILER_SIZE {
        return Err(ltx("the page index is cut short"));
    }
    let index_end = rest.len() - TRAILER_SIZE;
    let length = u64::from_be_bytes(rest[index_end - 8..index_end].try_into().unwrap_or_default());
    if length.checked_add(8) != Some(index_end as u64) {
        return Err(ltx("the page index length does not match"));
    }
    digest.update(&rest[..index_end]);
    digest.update(&rest[index_end..index_end + 8]);
    let stored = u64::from_be_bytes(rest[index_end + 8..].try_into().unwrap_or_default());
    let computed = CHECKSUM_FLAG | digest.finalize();
    if stored != computed {
        return Err(ltx(format!("file checksum mismatch ({stored:#x} stored, {computed:#x} computed)")));
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(size: usize, fill: u8) -> Vec<u8> {
        (0..size).map(|i| fill.wrapping_add((i % 7) as u8)).collect()
    }

    #[test]
    fn the_checksum_is_crc64_go_iso() {
        assert_eq!(CRC64.checksum(b"123456789"), 0xb909_56c7_75a4_1001);
    }

    #[test]
    fn varints_are_leb128() {
        let mut out = Vec::new();
        for value in [0u64, 127, 128, 300, u64::from(u32::MAX)] {
            varint(&mut out, value);
        }
        assert_eq!(out, [0x00, 0x7f, 0x80, 0x01, 0xac, 0x02, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    }

    #[test]
    fn files_round_trip_and_a_flipped_bit_is_caught() {
        let header = Header { page_size: 4096, commit: 3, min_txid: 1, max_txid: 1, timestamp_ms: 1_700_000_000_000 };
        let mut encoder = Encoder::new(header).unwrap();
        let pages: Vec<(u32, Vec<u8>)> = (1..=3).map(|p| (p, page(4096, p as u8))).collect();
        for (pgno, data) in &pages {
            encoder.page(*pgno, data).unwrap();
        }
        let bytes = encoder.finish().unwrap();
        assert_eq!(&bytes[..4], b"LTX1");
        assert_eq!(bytes[bytes.len() - 8] & 0x80, 0x80, "the file checksum has its top bit set");
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded, Decoded { header, pages });
        let mut bad = bytes.clone();
        bad[HEADER_SIZE + 12] ^= 1;
        assert!(decode(&bad).is_err());
    }

    #[test]
    fn snapshots_hold_every_page_and_incrementals_ascend() {
        let snapshot = Header { page_size: 512, commit: 2, min_txid: 1, max_txid: 1, timestamp_ms: 0 };
        let mut e = Encoder::new(snapshot).unwrap();
        assert!(e.page(2, &page(512, 1)).is_err(), "page 1 first");
        e.page(1, &page(512, 1)).unwrap();
        assert!(e.finish().is_err(), "page 2 missing");
        let incremental = Header { page_size: 512, commit: 9, min_txid: 2, max_txid: 2, timestamp_ms: 0 };
        let mut e = Encoder::new(incremental).unwrap();
        e.page(4, &page(512, 4)).unwrap();
        assert!(e.page(4, &page(512, 4)).is_err(), "strictly ascending");
        assert!(e.page(10, &page(512, 4)).is_err(), "above commit");
        assert!(e.page(7, &page(100, 4)).is_err(), "a whole page");
        e.page(9, &page(512, 9)).unwrap();
        assert_eq!(decode(&e.finish().unwrap()).unwrap().pages.len(), 2);
        let bad = Header { page_size: 1000, ..incremental };
        assert!(Encoder::new(bad).is_err());
        assert_eq!(file_name(1, 0x1a), "0000000000000001-000000000000001a.ltx");
        assert_eq!(lock_pgno(4096), 262_145);
    }
}
