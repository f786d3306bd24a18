//! Loading: the files a configuration begins with and those they
//! `Include`, each read once and kept as read, within the bounds of a
//! load.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::keywords::{canonical, validate};
use super::lexer::{keyword_and_rest, lines, Args};
use super::local::Local;
use super::tokens::tilde;
use super::{shown, shown_path, ConfigError};
use crate::pattern;

/// How deep `Include` may nest, as in OpenSSH (`READCONF_MAX_DEPTH`).
const MAX_DEPTH: usize = 16;
/// The most configuration text one load reads, counting a file each time
/// it is included: what a resolve walks. OpenSSH has no bound; a real
/// configuration is a few KiB.
const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// The most files one load reads, counting a file each time it is
/// included.
const MAX_CONFIG_FILES: u64 = 65_536;

/// Every file a load read, each once.
#[derive(Debug, Default, Clone)]
pub(super) struct Files {
    pub(super) files: Vec<File>,
    /// The files the load began with, in order (the user's, the system's).
    pub(super) roots: Vec<u32>,
}

/// One file as read. Its lines are split again by every resolve, which
/// costs less than keeping them split (a line is a few bytes; a split one
/// was several allocations).
#[derive(Clone)]
pub(super) struct File {
    /// For messages.
    pub(super) path: Box<str>,
    pub(super) text: Box<[u8]>,
    /// The `Include` lines that matched files, in line order.
    pub(super) includes: Box<[Include]>,
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("path", &self.path)
            .field("bytes", &self.text.len())
            .field("includes", &self.includes.len())
            .finish()
    }
}

#[derive(Debug, Clone)]
pub(super) struct Include {
    pub(super) line: u32,
    /// The files it names, as indices into [`Files::files`].
    pub(super) files: Box<[u32]>,
}

/// What including a file costs a resolve: its bytes and files, counting
/// each include again, and how deep its includes nest below it.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    bytes: u64,
    files: u64,
    height: usize,
}

/// A file met before in this load.
#[derive(Debug, Clone, Copy)]
enum Seen {
    /// Being read: met again, it includes itself.
    Reading,
    Read(u32, Cost),
}

/// Reads the files of one load, each once (by device and inode), and
/// keeps count of what a resolve will walk.
pub(super) struct Loader<'a> {
    local: &'a Local,
    files: Vec<File>,
    roots: Vec<u32>,
    /// By device, inode and whether read as a user file (which changes
    /// what its `Include`s mean).
    seen: HashMap<(u64, u64, bool), Seen>,
    /// Bytes read, each file once: what the load keeps.
    read: u64,
    /// What the roots cost, together.
    total: Cost,
}

impl<'a> Loader<'a> {
    pub(super) fn new(local: &'a Local) -> Self {
        Loader {
            local,
            files: Vec::new(),
            roots: Vec::new(),
            seen: HashMap::new(),
            read: 0,
            total: Cost::default(),
        }
    }

    pub(super) fn finish(mut self) -> Files {
        self.files.shrink_to_fit();
        Files {
            files: self.files,
            roots: self.roots,
        }
    }

    /// Reads a file the load begins with; false if it does not exist.
    pub(super) fn root(
        &mut self,
        path: &Path,
        user: bool,
        check_perm: bool,
    ) -> Result<bool, ConfigError> {
        match self.read_file(path, user, 0, check_perm)? {
            Some((id, cost)) => {
                self.add_root(id, cost, path)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub(super) fn root_text(&mut self, name: &str, text: &[u8]) -> Result<(), ConfigError> {
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(too_many_bytes(name));
        }
        self.read += text.len() as u64;
        let (includes, cost) = self.parse(name, text, true, 0)?;
        let id = self.push(name, text.into(), includes);
        self.add_root(id, cost, Path::new(name))
    }

    fn add_root(&mut self, id: u32, cost: Cost, path: &Path) -> Result<(), ConfigError> {
        self.roots.push(id);
        self.total = add_cost(self.total, cost, &shown_path(path))?;
        Ok(())
    }

    fn push(&mut self, path: &str, text: Box<[u8]>, includes: Vec<Include>) -> u32 {
        let id = self.files.len() as u32;
        self.files.push(File {
            path: path.into(),
            text,
            includes: includes.into_boxed_slice(),
        });
        id
    }

    /// `read_config_file_depth`: opens `path` (`None` if it does not
    /// exist), checks its owner and mode if asked, and parses it unless
    /// this load read it already.
    fn read_file(
        &mut self,
        path: &Path,
        user: bool,
        depth: usize,
        check_perm: bool,
    ) -> Result<Option<(u32, Cost)>, ConfigError> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
        let name = shown_path(path);
        if depth > MAX_DEPTH {
            return Err(ConfigError::new(format!(
                "{name}: too many recursive configuration includes"
            )));
        }
        // Non-blocking, so that a FIFO without a writer cannot hold the
        // load (and is refused below).
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path);
        let file = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ConfigError::new(format!(
                    "cannot read config file {name}: {}",
                    crate::text::fmt_io(&e)
                )))
            }
        };
        let meta = file
            .metadata()
            .map_err(|e| ConfigError::new(format!("{name}: {}", crate::text::fmt_io(&e))))?;
        let kind = meta.file_type();
        if kind.is_dir() || kind.is_fifo() || kind.is_socket() {
            return Err(ConfigError::new(format!(
                "cannot read config file {name}: not a file"
            )));
        }
        if check_perm
            && ((meta.uid() != 0 && meta.uid() != self.local.uid) || meta.mode() & 0o022 != 0)
        {
            return Err(ConfigError::new(format!(
                "bad owner or permissions on {name}"
            )));
        }
        let key = (meta.dev(), meta.ino(), user);
        match self.seen.get(&key) {
            Some(Seen::Reading) => {
                return Err(ConfigError::new(format!(
                    "{name}: too many recursive configuration includes (it includes itself)"
                )))
            }
            Some(&Seen::Read(id, cost)) => {
                if depth + cost.height > MAX_DEPTH {
                    return Err(ConfigError::new(format!(
                        "{name}: too many recursive configuration includes"
                    )));
                }
                return Ok(Some((id, cost)));
            }
            None => {}
        }
        let room = MAX_CONFIG_BYTES - self.read;
        if meta.len() > room {
            return Err(too_many_bytes(&name));
        }
        let text = read_bounded(&file, meta.len(), room).map_err(|e| {
            ConfigError::new(format!(
                "cannot read config file {name}: {}",
                crate::text::fmt_io(&e)
            ))
        })?;
        let Some(text) = text else {
            return Err(too_many_bytes(&name));
        };
        drop(file);
        self.read += text.len() as u64;
        self.seen.insert(key, Seen::Reading);
        let (includes, cost) = self.parse(&name, &text, user, depth)?;
        let id = self.push(&name, text.into_boxed_slice(), includes);
        self.seen.insert(key, Seen::Read(id, cost));
        Ok(Some((id, cost)))
    }

    /// Checks each line as OpenSSH checks it on reading, whether or not it
    /// applies, and reads the files it includes.
    fn parse(
        &mut self,
        path: &str,
        text: &[u8],
        user: bool,
        depth: usize,
    ) -> Result<(Vec<Include>, Cost), ConfigError> {
        let mut cost = Cost {
            bytes: text.len() as u64,
            files: 1,
            height: 0,
        };
        let mut includes = Vec::new();
        for (number, line) in lines(text) {
            let Some((keyword, rest)) = keyword_and_rest(line) else {
                continue;
            };
            let err = |m: String| ConfigError::at(path, number, m);
            if rest.is_empty() {
                return Err(err(format!(
                    "no argument after keyword {}",
                    shown(&keyword)
                )));
            }
            let keyword = canonical(&keyword);
            validate(keyword, rest).map_err(err)?;
            if keyword != Some("include") {
                continue;
            }
            let mut files = Vec::new();
            for arg in Args::new(rest) {
                let arg = arg.map_err(err)?;
                for found in self.include_paths(&arg, user).map_err(err)? {
                    if let Some((id, included)) = self.read_file(&found, user, depth + 1, true)? {
                        files.push(id);
                        cost = add_cost(cost, included, path)?;
                    }
                }
            }
            if !files.is_empty() {
                includes.push(Include {
                    line: number as u32,
                    files: files.into_boxed_slice(),
                });
            }
        }
        Ok((includes, cost))
    }

    /// `Include`: the argument anchored (`~/.ssh/` for user files,
    /// `/etc/ssh/` for system ones) and globbed.
    fn include_paths(&self, arg: &[u8], user: bool) -> Result<Vec<PathBuf>, String> {
        if arg.is_empty() {
            return Err("empty Include argument".to_owned());
        }
        if arg[0] == b'~' && !user {
            return Err(format!("bad include path {}", shown(arg)));
        }
        let anchored = if arg[0] == b'/' || arg[0] == b'~' {
            arg.to_vec()
        } else if user {
            [b"~/.ssh/".as_slice(), arg].concat()
        } else {
            [b"/etc/ssh/".as_slice(), arg].concat()
        };
        let anchored = tilde(&anchored, glob_home(self.local).as_bytes());
        let found = glob(&anchored);
        if found.len() as u64 > MAX_CONFIG_FILES {
            return Err(format!(
                "Include {} matches more than {MAX_CONFIG_FILES} files",
                shown(arg)
            ));
        }
        Ok(found)
    }
}

/// Reads `file` (`size` bytes, as far as its metadata knows: a device
/// says 0), or `None` if it holds more than `room`. The buffer grows to no
/// more than `room` and a byte, whatever the file says.
fn read_bounded(file: &std::fs::File, size: u64, room: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let limit = room as usize + 1;
    let mut text: Vec<u8> = Vec::with_capacity((size as usize).min(limit));
    let mut reader = file.take(limit as u64);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if text.capacity() - text.len() < n {
            // Doubling, but never past the limit (`take` keeps `n` within it).
            let grow = text.capacity().max(8192).min(limit - text.len()).max(n);
            text.reserve_exact(grow);
        }
        text.extend_from_slice(&chunk[..n]);
    }
    if text.len() > room as usize {
        return Ok(None);
    }
    text.shrink_to_fit();
    Ok(Some(text))
}

/// `cost` with `included` added, or the error for passing a bound.
fn add_cost(cost: Cost, included: Cost, path: &str) -> Result<Cost, ConfigError> {
    let sum = Cost {
        bytes: cost.bytes.saturating_add(included.bytes),
        files: cost.files.saturating_add(included.files),
        height: cost.height.max(included.height + 1),
    };
    if sum.bytes > MAX_CONFIG_BYTES {
        return Err(too_many_bytes(path));
    }
    if sum.files > MAX_CONFIG_FILES {
        return Err(ConfigError::too_large(format!(
            "{path}: more than {MAX_CONFIG_FILES} configuration files, counting each file as often \
             as it is included: ssh-dial reads no more per load"
        )));
    }
    Ok(sum)
}

fn too_many_bytes(path: &str) -> ConfigError {
    ConfigError::too_large(format!(
        "{path}: more than 16 MiB of configuration, counting each file as often as it is \
         included: ssh-dial reads no more per load"
    ))
}

/// `glob(3)` with `GLOB_TILDE` takes `~` from `$HOME` first.
fn glob_home(local: &Local) -> String {
    std::env::var("HOME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| local.home.clone())
}

/// A small `glob(3)` over bytes: `*`, `?` and `[...]` within path
/// components ([`pattern::fnmatch`]), names starting with `.` only matched
/// by a pattern that starts with `.`, results sorted. A path without magic
/// is returned if it exists.
fn glob(pattern: &[u8]) -> Vec<PathBuf> {
    let absolute = pattern.starts_with(b"/");
    let mut found = vec![PathBuf::from(if absolute { "/" } else { "." })];
    let parts: Vec<&[u8]> = pattern
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty())
        .collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let mut next = Vec::new();
        for dir in &found {
            if !part.iter().any(|b| matches!(b, b'*' | b'?' | b'[')) {
                let p = dir.join(OsStr::from_bytes(part));
                if (last && p.exists()) || (!last && p.is_dir()) {
                    next.push(p);
                }
                continue;
            }
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<OsString> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name())
                .filter(|n| {
                    let n = n.as_bytes();
                    (!n.starts_with(b".") || part.starts_with(b".")) && pattern::fnmatch(part, n)
                })
                .collect();
            names.sort();
            for n in names {
                let p = dir.join(n);
                if last || p.is_dir() {
                    next.push(p);
                }
            }
        }
        found = next;
    }
    if parts.is_empty() {
        return Vec::new();
    }
    found
        .into_iter()
        .map(|p| match p.strip_prefix("./") {
            Ok(rel) if !absolute => rel.to_path_buf(),
            _ => p,
        })
        .collect()
}
