//! The byte form of passes and partial results: a tag, then fields as little-endian numbers and
//! length-prefixed arrays. Decoding checks every length against the bytes left, so a truncated or altered
//! message is an error, never a panic or a huge allocation.
use crate::error::{Error, Result};

/// The first bytes of every message, with the format's version.
const MAGIC: &[u8; 6] = b"RSCP\x01\x00";

/// What a decoding error names as its input.
const WHAT: &str = "partial result";

/// The error of a message that is not a well-formed pass or partial result of this run.
pub fn corrupt(problem: impl Into<String>) -> Error {
    Error::data(
        WHAT,
        problem,
        "pass the bytes repscope produced for this run, unchanged, to the same version of repscope",
    )
}

/// Builds one message.
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    pub(crate) fn new(tag: u8) -> Writer {
        let mut v = MAGIC.to_vec();
        v.push(tag);
        Writer(v)
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn usize(&mut self, v: usize) -> &mut Self {
        self.u64(v as u64)
    }
    pub(crate) fn f64(&mut self, v: f64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn bool(&mut self, v: bool) -> &mut Self {
        self.0.push(v as u8);
        self
    }
    pub(crate) fn f64s(&mut self, v: &[f64]) -> &mut Self {
        self.usize(v.len());
        self.0.reserve(8 * v.len());
        v.iter()
            .for_each(|x| self.0.extend_from_slice(&x.to_le_bytes()));
        self
    }
    pub(crate) fn u64s(&mut self, v: &[u64]) -> &mut Self {
        self.usize(v.len());
        self.0.reserve(8 * v.len());
        v.iter()
            .for_each(|x| self.0.extend_from_slice(&x.to_le_bytes()));
        self
    }
    pub(crate) fn u32s(&mut self, v: &[u32]) -> &mut Self {
        self.usize(v.len());
        self.0.reserve(4 * v.len());
        v.iter()
            .for_each(|x| self.0.extend_from_slice(&x.to_le_bytes()));
        self
    }
    pub(crate) fn f32s(&mut self, v: &[f32]) -> &mut Self {
        self.usize(v.len());
        self.0.reserve(4 * v.len());
        v.iter()
            .for_each(|x| self.0.extend_from_slice(&x.to_le_bytes()));
        self
    }
    pub(crate) fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Reads one message.
pub(crate) struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// The message's tag and a reader of its fields.
    pub(crate) fn open(b: &'a [u8]) -> Result<(u8, Reader<'a>)> {
        if b.len() < MAGIC.len() + 1 || &b[..MAGIC.len()] != MAGIC {
            return Err(corrupt(
                "the bytes are not a repscope pass or partial result of this version",
            ));
        }
        Ok((
            b[MAGIC.len()],
            Reader {
                b,
                at: MAGIC.len() + 1,
            },
        ))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() - self.at < n {
            return Err(corrupt(format!(
                "the message ends after {} bytes, in the middle of a field",
                self.b.len()
            )));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub(crate) fn usize(&mut self) -> Result<usize> {
        usize::try_from(self.u64()?).map_err(|_| corrupt("a count does not fit this machine"))
    }
    pub(crate) fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub(crate) fn bool(&mut self) -> Result<bool> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(corrupt(format!("a flag holds {v}, not 0 or 1"))),
        }
    }
    /// A length that `size`-byte items must fill from the bytes left.
    fn len(&mut self, size: usize) -> Result<usize> {
        let n = self.usize()?;
        if n > (self.b.len() - self.at) / size {
            return Err(corrupt(format!(
                "an array of {n} items is longer than the message"
            )));
        }
        Ok(n)
    }
    pub(crate) fn f64s(&mut self) -> Result<Vec<f64>> {
        let n = self.len(8)?;
        Ok(self
            .take(8 * n)?
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect())
    }
    pub(crate) fn u64s(&mut self) -> Result<Vec<u64>> {
        let n = self.len(8)?;
        Ok(self
            .take(8 * n)?
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect())
    }
    pub(crate) fn u32s(&mut self) -> Result<Vec<u32>> {
        let n = self.len(4)?;
        Ok(self
            .take(4 * n)?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect())
    }
    pub(crate) fn f32s(&mut self) -> Result<Vec<f32>> {
        let n = self.len(4)?;
        Ok(self
            .take(4 * n)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect())
    }
    /// Checks that nothing is left over.
    pub(crate) fn end(self) -> Result<()> {
        if self.at != self.b.len() {
            return Err(corrupt(format!(
                "{} bytes are left after the last field",
                self.b.len() - self.at
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut w = Writer::new(7);
        w.u64(5)
            .f64(-0.0)
            .bool(true)
            .f64s(&[1.5, f64::MIN_POSITIVE]);
        w.u64s(&[u64::MAX]);
        w.u32s(&[7, u32::MAX]).f32s(&[-1.5]);
        let b = w.finish();
        let (tag, mut r) = Reader::open(&b).unwrap();
        assert_eq!(tag, 7);
        assert_eq!(r.u64().unwrap(), 5);
        assert_eq!(r.f64().unwrap().to_bits(), (-0.0f64).to_bits());
        assert!(r.bool().unwrap());
        assert_eq!(r.f64s().unwrap(), vec![1.5, f64::MIN_POSITIVE]);
        assert_eq!(r.u64s().unwrap(), vec![u64::MAX]);
        assert_eq!(r.u32s().unwrap(), vec![7, u32::MAX]);
        assert_eq!(r.f32s().unwrap(), vec![-1.5]);
        r.end().unwrap();
        // Every truncation is an error, not a panic.
        for cut in 0..b.len() {
            let res = Reader::open(&b[..cut]).and_then(|(_, mut r)| {
                r.u64()?;
                r.f64()?;
                r.bool()?;
                r.f64s()?;
                r.u64s()?;
                r.u32s()?;
                r.f32s()?;
                r.end()
            });
            assert!(res.is_err(), "cut at {cut}");
        }
        // A length beyond the message is refused before anything is allocated.
        let mut w = Writer::new(1);
        w.u64(u64::MAX / 2);
        let b = w.finish();
        let (_, mut r) = Reader::open(&b).unwrap();
        assert!(r.f64s().is_err());
    }
}
