//! NumPy `.npz` archives (zip files of `.npy` arrays), read and written.
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use crate::data::matrix::Matrix;
use crate::data::npy;
use crate::error::{Error, Param, Result, Text};

fn open_archive(path: &Path) -> Result<zip::ZipArchive<std::fs::File>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    zip::ZipArchive::new(f).map_err(|e| {
        Error::format(
            path,
            format!("not a readable .npz archive ({e})"),
            "the file is truncated or corrupt: write it again with numpy.savez",
        )
    })
}

/// The array names in an `.npz` file, in archive order (without the `.npy` suffix).
pub fn keys(path: &Path) -> Result<Vec<String>> {
    let ar = open_archive(path)?;
    Ok(ar
        .file_names()
        .filter(|n| n.ends_with(".npy"))
        .map(|n| n.trim_end_matches(".npy").to_string())
        .collect::<Vec<_>>())
}

/// Picks the key to read: the given one, or the only array, or an error that lists the keys.
pub(crate) fn choose_key(path: &Path, keys: &[String], key: Option<&str>) -> Result<String> {
    match key {
        Some(k) => {
            if keys.iter().any(|x| x == k) {
                Ok(k.to_string())
            } else {
                Err(Error::data(
                    path.display().to_string(),
                    format!("no array named '{k}'"),
                    format!("choose one of: {}", keys.join(", ")),
                ))
            }
        }
        None => match keys {
            [only] => Ok(only.clone()),
            [] => Err(Error::data(
                path.display().to_string(),
                "the file holds no arrays",
                "pass a file with data",
            )),
            _ => Err(Error::data(
                path.display().to_string(),
                format!("the file holds {} arrays", keys.len()),
                Text::from("choose one with ")
                    .param(Param::Key)
                    .then(format!(": {}", keys.join(", "))),
            )),
        },
    }
}

/// Raw bytes of one member (decompressed), plus whether it could be mapped directly (stored, not compressed)
/// and at which offset of the file its data begins.
fn member_bytes(path: &Path, key: &str) -> Result<(Vec<u8>, Option<u64>)> {
    let mut ar = open_archive(path)?;
    let corrupt = |e: String| {
        Error::format(
            path,
            format!("array '{key}' cannot be read ({e})"),
            "the archive is corrupt: write it again",
        )
    };
    let mut f = ar
        .by_name(&format!("{key}.npy"))
        .map_err(|e| corrupt(e.to_string()))?;
    let stored = f.compression() == zip::CompressionMethod::Stored;
    let start = f.data_start();
    let mut buf = Vec::with_capacity(f.size().min(1 << 24) as usize);
    f.read_to_end(&mut buf)
        .map_err(|e| corrupt(e.to_string()))?;
    Ok((buf, stored.then_some(start)))
}

/// Where one array of an archive lies.
pub(crate) struct Member {
    /// The array's name (the key chosen).
    pub key: String,
    /// Stored without compression: its bytes lie as they are at `start`.
    pub stored: bool,
    /// The offset of the member's data in the file.
    pub start: u64,
    /// The member's size in bytes (uncompressed).
    pub size: u64,
}

/// Finds the array `key` (or the only one) of an `.npz` file.
pub(crate) fn member(path: &Path, key: Option<&str>) -> Result<Member> {
    let all = keys(path)?;
    let key = choose_key(path, &all, key)?;
    let mut ar = open_archive(path)?;
    let f = ar.by_name(&format!("{key}.npy")).map_err(|e| {
        Error::format(
            path,
            format!("array '{key}': {e}"),
            "write the archive again",
        )
    })?;
    Ok(Member {
        stored: f.compression() == zip::CompressionMethod::Stored,
        start: f.data_start(),
        size: f.size(),
        key,
    })
}

/// Reads one 2-D float array from an `.npz`. Uncompressed little-endian f32 members in C order are
/// memory-mapped; others are converted once.
pub fn read_matrix(path: &Path, key: Option<&str>) -> Result<Matrix> {
    let Member {
        key,
        stored,
        start,
        size,
    } = member(path, key)?;
    let name = format!("{}[{key}]", path.display());
    // Read only the header first when the member is stored, to avoid copying big arrays.
    if stored {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: read-only map of an input file (see npy::read_matrix).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let start = start as usize;
        let end = start.saturating_add(size as usize).min(map.len());
        if start > end {
            return Err(Error::format(
                path,
                format!("array '{key}' starts beyond the end of the file"),
                "the archive is truncated or corrupt: write it again",
            ));
        }
        let h = npy::parse_header(&map[start..end], path)?;
        let (rows, cols) = npy::check_matrix_header(&h, &name)?;
        if start + h.data_offset > end {
            return Err(Error::data(
                &name,
                "the array's data is truncated",
                "write the archive again",
            ));
        }
        if h.size == 4 && !h.big_endian && !h.fortran_order {
            if start + h.data_offset + rows * cols * 4 > end {
                return Err(Error::data(
                    &name,
                    "the array's data is truncated",
                    "write the archive again",
                ));
            }
            return Matrix::from_map(Arc::new(map), start + h.data_offset, rows, cols, name);
        }
        return npy::convert_float_data(
            &map[start + h.data_offset..end],
            npy::Layout::of(&h, rows, cols),
            &name,
        );
    }
    let (buf, _) = member_bytes(path, &key)?;
    let h = npy::parse_header(&buf, path)?;
    let (rows, cols) = npy::check_matrix_header(&h, &name)?;
    npy::convert_float_data(
        &buf[h.data_offset..],
        npy::Layout::of(&h, rows, cols),
        &name,
    )
}

/// Reads labels (1-D integers or strings) from an `.npz` member.
pub fn read_labels(path: &Path, key: Option<&str>) -> Result<crate::data::Labels> {
    let all = keys(path)?;
    let key = choose_key(path, &all, key)?;
    let (buf, _) = member_bytes(path, &key)?;
    npy::labels_from_npy(&buf, path)
}

/// One array to write into an `.npz`.
pub enum NpzArray<'a> {
    F32(&'a [usize], &'a [f32]),
    F64(&'a [usize], &'a [f64]),
    U32(&'a [usize], &'a [u32]),
    I64(&'a [usize], &'a [i64]),
}

fn write_any<W: Write>(w: &mut W, a: &NpzArray) -> std::io::Result<()> {
    match a {
        NpzArray::F32(s, d) => npy::write_array(w, s, d),
        NpzArray::F64(s, d) => npy::write_array(w, s, d),
        NpzArray::U32(s, d) => npy::write_array(w, s, d),
        NpzArray::I64(s, d) => npy::write_array(w, s, d),
    }
}

/// Writes arrays to an uncompressed `.npz` (as numpy.savez does), atomically. The arrays are streamed into
/// the file: no copy of them is held in memory.
pub fn write(path: &Path, arrays: &[(&str, NpzArray)]) -> Result<()> {
    npy::write_file_with(path, |f| write_to(std::io::BufWriter::new(f), arrays))
}

/// The archive written to `out`. On failure the error is the first failure of `out` itself (a full disk),
/// not the archive writer's wrapping of it.
fn write_to<W: Write + std::io::Seek>(out: W, arrays: &[(&str, NpzArray)]) -> std::io::Result<()> {
    let failed = std::cell::RefCell::new(None);
    let result = (|| {
        let latch = Latch {
            inner: out,
            failed: &failed,
        };
        let mut w = zip::ZipWriter::new(latch);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true)
            // Aligned members let readers (repscope included) map f32 data in place.
            .with_alignment(64);
        for (name, arr) in arrays {
            w.start_file(format!("{name}.npy"), opts)
                .map_err(std::io::Error::other)?;
            write_any(&mut w, arr)?;
        }
        w.finish().map_err(std::io::Error::other)?.flush()
    })();
    match failed.into_inner() {
        Some(e) => Err(e),
        None => result,
    }
}

/// A writer that keeps its first error and then accepts everything silently. After a failed write the
/// archive writer, dropped unfinished, still tries to write its directory; the latch lets that end quietly
/// (the file is removed anyway), and the caller reports the first error.
struct Latch<'a, W> {
    inner: W,
    failed: &'a std::cell::RefCell<Option<std::io::Error>>,
}

impl<W> Latch<'_, W> {
    fn keep(&self, e: std::io::Error) -> std::io::Error {
        let copy = match e.raw_os_error() {
            Some(code) => std::io::Error::from_raw_os_error(code),
            None => std::io::Error::new(e.kind(), e.to_string()),
        };
        self.failed.borrow_mut().get_or_insert(e);
        copy
    }
    fn has_failed(&self) -> bool {
        self.failed.borrow().is_some()
    }
}

impl<W: Write> Write for Latch<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.has_failed() {
            return Ok(buf.len());
        }
        self.inner.write(buf).map_err(|e| self.keep(e))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.has_failed() {
            return Ok(());
        }
        self.inner.flush().map_err(|e| self.keep(e))
    }
}

impl<W: Write + std::io::Seek> std::io::Seek for Latch<'_, W> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        if self.has_failed() {
            return Ok(0);
        }
        self.inner.seek(pos).map_err(|e| self.keep(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file that fills up: it takes `room` bytes, then fails every write with ENOSPC.
    struct FullDisk {
        inner: std::io::Cursor<Vec<u8>>,
        room: usize,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let free = self.room.saturating_sub(self.inner.get_ref().len());
            if free == 0 {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            self.inner.write(&buf[..buf.len().min(free)])
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl std::io::Seek for FullDisk {
        fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
            self.inner.seek(pos)
        }
    }

    #[test]
    fn a_full_disk_is_named_without_the_archive_writers_words() {
        let data: Vec<f32> = (0..4096).map(|i| i as f32).collect();
        let shape = [1024usize, 4];
        // The disk fills inside the data, inside the directory, and at the header.
        for room in [100, 9000, 16_400, 16_600] {
            let out = FullDisk {
                inner: std::io::Cursor::new(Vec::new()),
                room,
            };
            let arrays = [
                ("x", NpzArray::F32(&shape, &data)),
                ("y", NpzArray::F32(&shape[..1], &data[..1024])),
            ];
            let e = write_to(out, &arrays).expect_err("the disk is full");
            assert_eq!(e.raw_os_error(), Some(28), "room {room}: {e}");
            let msg = Error::io_write("o.npz", e).to_string();
            assert_eq!(
                msg, "o.npz: the disk is full. Free space or write to another folder",
                "room {room}"
            );
        }
        // With room enough it is a valid archive that reads back.
        let out = FullDisk {
            inner: std::io::Cursor::new(Vec::new()),
            room: usize::MAX,
        };
        write_to(out, &[("x", NpzArray::F32(&shape, &data))]).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_neither_the_file_nor_a_temporary_one() {
        let dir = std::env::temp_dir().join(format!("repscope-npz-full-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("o.npz");
        std::fs::write(&path, b"old").unwrap();
        let e = npy::write_file_with(&path, |f| {
            f.write_all(&[0u8; 1000])?;
            Err(std::io::Error::from_raw_os_error(28))
        })
        .unwrap_err();
        assert!(e.to_string().contains("the disk is full"), "{e}");
        // The old file is as it was, and nothing else is in the folder.
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("o.npz")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
