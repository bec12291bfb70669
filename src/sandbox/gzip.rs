//! Gzip answers that cost no compression per request: a page compressed up front as the start
//! of a gzip member flushed to a byte boundary ([`GzipStart`]), which each request finishes with
//! its links tail in stored deflate blocks and the trailer (CRC-32 continued over the tail); and
//! whether a request's `Accept-Encoding` takes gzip. Which answers are compressed, and when, is
//! decided by the server (`server.rs`) and the pre-rendering (`data.rs`).

use bytes::Bytes;
use hyper::header::{self, HeaderMap};

/// The deflate level of gzip answers: the fastest, since compressing 1 GB of pages at start-up
/// must stay quick (synthetic pages get ~3.9x smaller; ~2 s on two cores for 2,000,000 rows,
/// rendering included).
const GZIP_LEVEL: u32 = 1;

/// The start of a gzip member: the header and the deflate blocks of some bytes, flushed to a
/// byte boundary but not final, so that [`GzipStart::finish`] can append more bytes and the
/// trailer without compressing these again.
pub(super) struct GzipStart {
    pub(super) bytes: Bytes,
    /// CRC-32 of the uncompressed bytes.
    crc: u32,
    /// How many uncompressed bytes.
    len: u64,
}

/// A gzip member header: deflate, no flags, no time, "fastest" (level 1), unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 0xff];

impl GzipStart {
    /// Compresses `data` at [`GZIP_LEVEL`], ending with a sync flush.
    pub(super) fn new(data: &[u8]) -> Self {
        use flate2::{Compress, Compression, FlushCompress};
        let mut deflate = Compress::new(Compression::new(GZIP_LEVEL), false);
        let mut out = Vec::with_capacity(GZIP_HEADER.len() + data.len() / 3 + 1024);
        out.extend_from_slice(&GZIP_HEADER);
        loop {
            // More than 6 bytes free, so that a flush marker never repeats (zlib's advice).
            if out.capacity() - out.len() < 1024 {
                out.reserve(out.len() / 2 + 1024);
            }
            let consumed = usize::try_from(deflate.total_in()).unwrap_or(usize::MAX);
            let rest = data.get(consumed..).unwrap_or_default();
            if let Err(e) = deflate.compress_vec(rest, &mut out, FlushCompress::Sync) {
                // Only a misuse of the stream fails, and this is its only use.
                panic!("sandbox: deflate failed: {e}");
            }
            // The flush is complete once all input is in and the output was not filled.
            if deflate.total_in() == data.len() as u64 && out.len() < out.capacity() {
                break;
            }
        }
        // Kept for the sandbox's life: give back the spare capacity.
        out.shrink_to_fit();
        let mut crc = flate2::Crc::new();
        crc.update(data);
        Self {
            bytes: Bytes::from(out),
            crc: crc.sum(),
            len: data.len() as u64,
        }
    }

    /// The rest of the member after [`GzipStart::bytes`]: `tail` in stored deflate blocks (the
    /// last one final), then the trailer (CRC-32 and length of everything).
    pub(super) fn finish(&self, tail: &[u8]) -> Bytes {
        const MAX_STORED: usize = u16::MAX as usize;
        let blocks = tail.len().div_ceil(MAX_STORED).max(1);
        let mut out = Vec::with_capacity(tail.len() + 5 * blocks + 8);
        for block in 0..blocks {
            let chunk = &tail[block * MAX_STORED..((block + 1) * MAX_STORED).min(tail.len())];
            // BFINAL on the last block, BTYPE 00 (stored): we are at a byte boundary.
            out.push(u8::from(block + 1 == blocks));
            let len = chunk.len() as u16;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        out.extend_from_slice(&crc32_update(self.crc, tail).to_le_bytes());
        // ISIZE is the length modulo 2^32.
        out.extend_from_slice(&((self.len + tail.len() as u64) as u32).to_le_bytes());
        Bytes::from(out)
    }
}

/// The CRC-32 (gzip's) of some bytes whose CRC-32 is `crc`, followed by `data`.
fn crc32_update(crc: u32, data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut n = 0;
        while n < 256 {
            let mut c = n as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[n] = c;
            n += 1;
        }
        table
    };
    let mut c = !crc;
    for &byte in data {
        c = TABLE[((c ^ u32::from(byte)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Whether `Accept-Encoding` accepts gzip (or x-gzip) with a weight above 0. `*` is not
/// taken as gzip: a client that wants it names it.
pub(super) fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| {
            let mut params = item.split(';');
            let coding = params.next().unwrap_or_default().trim();
            let refused = params.any(|param| {
                let (key, value) = param.split_once('=').unwrap_or((param, ""));
                key.trim().eq_ignore_ascii_case("q")
                    && value.trim().parse::<f64>().is_ok_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip"))
                && !refused
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn gzip_starts_finish_into_valid_gzip() {
        let inflate = |member: &[u8]| {
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(member), &mut text)
                .unwrap();
            text
        };
        let big: Vec<u8> = (0..200_000u32).flat_map(|n| n.to_le_bytes()).collect();
        for (head, tail) in [
            (&b"{\"data\":"[..], &b"{\"next\":null}}"[..]),
            (&b"x"[..], &b""[..]),
            (&big[..100_000], &big[100_000..]),
        ] {
            let start = GzipStart::new(head);
            let member = [&start.bytes[..], &start.finish(tail)].concat();
            assert_eq!(inflate(&member), [head, tail].concat());
        }
        let mut crc = flate2::Crc::new();
        crc.update(&big);
        assert_eq!(crc32_update(0, &big), crc.sum());
        assert_eq!(
            crc32_update(crc32_update(0, &big[..7]), &big[7..]),
            crc.sum()
        );

        let accepts = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).unwrap(),
            );
            accepts_gzip(&headers)
        };
        for yes in ["gzip", "br, GZip;q=0.5", "deflate, x-gzip", "gzip;q=1.0"] {
            assert!(accepts(yes), "{yes}");
        }
        for no in [
            "identity",
            "br, zstd",
            "*",
            "gzip;q=0",
            "gzip; q=0.000",
            "gzipx",
        ] {
            assert!(!accepts(no), "{no}");
        }
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
