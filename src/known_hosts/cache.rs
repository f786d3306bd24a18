//! Files read and indexed once, kept while they do not change.
//!
//! A file is looked at (`stat`) on every use and read again when its size,
//! times or inode differ, or when it changed so recently that a rewrite in
//! the same clock tick could hide (git's "racily clean" rule).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use super::Indexed;

/// Files kept at most; past it the cache starts over.
const MAX_FILES: usize = 256;
/// A file modified this recently is read again on its next use.
const RACY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    ctime: (i64, i64),
    ino: u64,
    dev: u64,
}

struct Cached {
    stamp: Stamp,
    racy: bool,
    file: Arc<Indexed>,
}

fn files() -> &'static Mutex<HashMap<PathBuf, Cached>> {
    static FILES: OnceLock<Mutex<HashMap<PathBuf, Cached>>> = OnceLock::new();
    FILES.get_or_init(Mutex::default)
}

/// The file at `path`, indexed; `None` if it does not exist. Blocks on
/// the file system: call it off the runtime's workers.
pub(crate) fn load(path: &Path) -> io::Result<Option<Arc<Indexed>>> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            forget(path);
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let stamp = Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        ctime: (meta.ctime(), meta.ctime_nsec()),
        ino: meta.ino(),
        dev: meta.dev(),
    };
    {
        let files = files().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = files.get(path) {
            if c.stamp == stamp && !c.racy {
                return Ok(Some(c.file.clone()));
            }
        }
    }
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let file = Arc::new(Indexed::new(text));
    let now = SystemTime::now();
    let racy = stamp
        .modified
        .is_none_or(|m| now.duration_since(m).map_or(true, |age| age < RACY));
    let mut files = files().lock().unwrap_or_else(|e| e.into_inner());
    if files.len() >= MAX_FILES {
        files.clear();
    }
    files.insert(
        path.to_owned(),
        Cached {
            stamp,
            racy,
            file: file.clone(),
        },
    );
    Ok(Some(file))
}

/// Drops what is kept for `path` (after writing it, or when it is gone).
pub(crate) fn forget(path: &Path) {
    files()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(path);
}
