//! Classic pcap files (the libpcap format `tcpdump -r` reads):
//! a 24-byte global header, then per record a 16-byte header and the
//! captured bytes. Link type Ethernet; microsecond or nanosecond stamps.
//! Written in little-endian byte order (readers detect it from the magic).
use std::io::{self, Write};

use anyhow::{bail, Result};

pub const MAGIC_MICRO: u32 = 0xa1b2_c3d4;
pub const MAGIC_NANO: u32 = 0xa1b2_3c4d;
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Snapshot length written into the header: portguard captures at most
/// `EVENT_CAPTURE` bytes, but a generous value keeps every reader happy.
pub const SNAPLEN: u32 = 65535;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    Micro,
    #[default]
    Nano,
}

/// Writes a pcap stream to `W` (buffer it yourself; call [`PcapWriter::flush`]).
pub struct PcapWriter<W: Write> {
    out: W,
    precision: Precision,
    records: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header.
    pub fn new(mut out: W, precision: Precision) -> io::Result<PcapWriter<W>> {
        let magic = match precision {
            Precision::Micro => MAGIC_MICRO,
            Precision::Nano => MAGIC_NANO,
        };
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&magic.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes()); // version major
        h.extend_from_slice(&4u16.to_le_bytes()); // version minor
        h.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        h.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        h.extend_from_slice(&SNAPLEN.to_le_bytes());
        h.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter {
            out,
            precision,
            records: 0,
        })
    }

    /// One record: `wall_ns` is nanoseconds since the Unix epoch, `data` the
    /// captured bytes, `orig_len` the length of the frame on the wire
    /// (raised to `data.len()` if smaller).
    pub fn write(&mut self, wall_ns: u64, data: &[u8], orig_len: u32) -> io::Result<()> {
        let data = &data[..data.len().min(SNAPLEN as usize)];
        let secs = (wall_ns / 1_000_000_000).min(u32::MAX as u64) as u32;
        let frac = match self.precision {
            Precision::Micro => (wall_ns % 1_000_000_000) / 1000,
            Precision::Nano => wall_ns % 1_000_000_000,
        } as u32;
        let incl = data.len() as u32;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&frac.to_le_bytes());
        h[8..12].copy_from_slice(&incl.to_le_bytes());
        h[12..16].copy_from_slice(&orig_len.max(incl).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(data)?;
        self.records += 1;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// One record read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Nanoseconds since the Unix epoch.
    pub wall_ns: u64,
    pub orig_len: u32,
    pub data: Vec<u8>,
}

/// Parses a whole pcap file (either byte order, micro or nano). For tests
/// and tooling; never panics on malformed input.
pub fn parse(b: &[u8]) -> Result<(u32, Vec<Record>)> {
    if b.len() < 24 {
        bail!("pcap file of {} bytes has no global header", b.len());
    }
    let raw = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let (le, nano) = match raw {
        MAGIC_MICRO => (true, false),
        MAGIC_NANO => (true, true),
        m if m.swap_bytes() == MAGIC_MICRO => (false, false),
        m if m.swap_bytes() == MAGIC_NANO => (false, true),
        m => bail!("not a pcap file (magic {m:#010x})"),
    };
    let u32_at = |o: usize| {
        let x = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if le {
            u32::from_le_bytes(x)
        } else {
            u32::from_be_bytes(x)
        }
    };
    let linktype = u32_at(20);
    let mut out = Vec::new();
    let mut o = 24;
    while o < b.len() {
        if b.len() - o < 16 {
            bail!("truncated record header at offset {o}");
        }
        let secs = u32_at(o) as u64;
        let frac = u32_at(o + 4) as u64;
        let incl = u32_at(o + 8) as usize;
        let orig = u32_at(o + 12);
        o += 16;
        if b.len() - o < incl {
            bail!("truncated record data at offset {o}");
        }
        out.push(Record {
            wall_ns: secs * 1_000_000_000 + if nano { frac } else { frac * 1000 },
            orig_len: orig,
            data: b[o..o + incl].to_vec(),
        });
        o += incl;
    }
    Ok((linktype, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        for p in [Precision::Micro, Precision::Nano] {
            let mut w = PcapWriter::new(Vec::new(), p).unwrap();
            w.write(1_700_000_000_123_456_789, &[1, 2, 3], 60).unwrap();
            w.write(1_700_000_001_000_000_000, &[4; 20], 10).unwrap();
            let buf = w.into_inner();
            assert_eq!(buf.len(), 24 + 16 + 3 + 16 + 20);
            let (lt, recs) = parse(&buf).unwrap();
            assert_eq!(lt, LINKTYPE_ETHERNET);
            assert_eq!(recs.len(), 2);
            assert_eq!(recs[0].data, vec![1, 2, 3]);
            assert_eq!(recs[0].orig_len, 60);
            assert_eq!(recs[1].orig_len, 20);
            let want = match p {
                Precision::Micro => 1_700_000_000_123_456_000,
                Precision::Nano => 1_700_000_000_123_456_789,
            };
            assert_eq!(recs[0].wall_ns, want);
        }
        assert!(parse(&[0; 10]).is_err());
        assert!(parse(&[0; 24]).is_err());
    }
}
