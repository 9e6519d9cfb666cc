//! A log file rotated by size and by age, its rotated files kept by count and by age.
//!
//! Written here because `tracing-appender`'s rolling file rotates by time only and keeps
//! files by count only; the hub needs both limits on both sides. It is fed by
//! `tracing-appender`'s non-blocking writer, so rotation happens on that writer's thread,
//! never on a request's.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// When to rotate and what to keep.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// Rotate before the file would grow past this many bytes.
    pub max_bytes: u64,
    /// Rotate once the file is this old.
    pub max_age: Duration,
    /// Rotated files kept at most.
    pub keep_files: usize,
    /// Rotated files older than this are deleted.
    pub keep_for: Option<Duration>,
}

/// The active log file.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    rotation: Rotation,
    file: File,
    size: u64,
    opened: SystemTime,
    /// Rotations made by this process.
    rotations: u64,
}

impl RotatingFile {
    /// Open (or create, with its directory) the file at `path` to append to it. A file
    /// already there keeps its age (from its modification time) and size.
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = append(path)?;
        let meta = file.metadata()?;
        let mut this = RotatingFile {
            path: path.to_path_buf(),
            rotation,
            file,
            size: meta.len(),
            opened: meta.modified().unwrap_or_else(|_| SystemTime::now()),
            rotations: 0,
        };
        // A size of 0 means the file is new: its age starts now.
        if this.size == 0 {
            this.opened = SystemTime::now();
        }
        this.prune();
        Ok(this)
    }

    /// Rotate now: the file is renamed `<name>.<UTC time>` and a new one started; then the
    /// rotated files beyond `keep_files`, or older than `keep_for`, are deleted.
    pub fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let stamp = humantime::format_rfc3339_millis(SystemTime::now())
            .to_string()
            .replace([':', '-'], "")
            .replace('.', "-");
        // The time, then this process's rotation count (zero-padded): names sort by age
        // even for rotations within one millisecond.
        let mut rotated;
        loop {
            self.rotations += 1;
            rotated = self.rotated_name(&format!("{stamp}-{:06}", self.rotations));
            if !rotated.exists() {
                break;
            }
        }
        std::fs::rename(&self.path, &rotated)?;
        self.file = append(&self.path)?;
        self.size = 0;
        self.opened = SystemTime::now();
        self.prune();
        Ok(())
    }

    fn rotated_name(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".");
        name.push(suffix);
        self.path.with_file_name(name)
    }

    /// The rotated files, oldest first (their names sort by time).
    pub fn rotated(&self) -> Vec<PathBuf> {
        let Some(name) = self.path.file_name().and_then(|n| n.to_str()) else {
            return Vec::new();
        };
        let prefix = format!("{name}.");
        let dir = match self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(d) => d.to_path_buf(),
            None => PathBuf::from("."),
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .map(|e| e.path())
            .collect();
        files.sort();
        files
    }

    /// Delete the rotated files beyond `keep_files` (oldest first) and those older than
    /// `keep_for`. A file that cannot be deleted is left; the next rotation tries again.
    fn prune(&self) {
        let files = self.rotated();
        let excess = files.len().saturating_sub(self.rotation.keep_files);
        let now = SystemTime::now();
        for (i, file) in files.iter().enumerate() {
            let too_old = self.rotation.keep_for.is_some_and(|keep| {
                std::fs::metadata(file)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > keep)
            });
            if i < excess || too_old {
                let _ = std::fs::remove_file(file);
            }
        }
    }
}

fn append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Logs name flows, systems and errors: readable by the hub's user only.
        options.mode(0o600);
    }
    options.open(path)
}

/// Each write is one or more whole lines (the non-blocking writer hands over one formatted
/// event at a time), so a rotation never splits a line.
impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let full = self.size > 0 && self.size + buf.len() as u64 > self.rotation.max_bytes;
        let old = SystemTime::now()
            .duration_since(self.opened)
            .unwrap_or_default()
            >= self.rotation.max_age;
        if full || (old && self.size > 0) {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotation(max_bytes: u64, keep_files: usize) -> Rotation {
        Rotation {
            max_bytes,
            max_age: Duration::from_secs(3600),
            keep_files,
            keep_for: None,
        }
    }

    #[test]
    fn rotates_by_size_and_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/ferry.log");
        let mut log = RotatingFile::open(&path, rotation(100, 3)).unwrap();
        // One write per line, as the non-blocking writer hands them over.
        for i in 0..40 {
            let line = format!("line {i:02} {}\n", "x".repeat(20));
            log.write_all(line.as_bytes()).unwrap();
        }
        // 30-byte lines, 3 to a file: 13 files were made, 3 rotated ones kept.
        let rotated = log.rotated();
        assert_eq!(rotated.len(), 3, "{rotated:?}");
        for file in &rotated {
            assert!(std::fs::metadata(file).unwrap().len() <= 100);
        }
        let active = std::fs::read_to_string(&path).unwrap();
        assert!(active.contains("line 39"), "{active}");
        // The newest rotated file holds the lines just before the active ones.
        let newest = std::fs::read_to_string(rotated.last().unwrap()).unwrap();
        assert!(newest.contains("line 38"), "{newest}");
    }

    #[test]
    fn rotates_by_age_and_deletes_rotated_files_past_keep_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.log");
        let rotation = Rotation {
            max_bytes: 1 << 20,
            max_age: Duration::from_millis(50),
            keep_files: 100,
            keep_for: Some(Duration::from_secs(3600)),
        };
        let mut log = RotatingFile::open(&path, rotation).unwrap();
        writeln!(log, "first").unwrap();
        std::thread::sleep(Duration::from_millis(80));
        writeln!(log, "second").unwrap();
        let rotated = log.rotated();
        assert_eq!(rotated.len(), 1, "rotated by age");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second\n");
        // The first rotated file was last written two hours ago: past `keep_for`.
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        File::options()
            .write(true)
            .open(&rotated[0])
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        log.rotate().unwrap();
        let kept = log.rotated();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(std::fs::read_to_string(&kept[0]).unwrap(), "second\n");
    }
}
