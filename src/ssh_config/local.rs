//! Who and where the local side is, as `ssh` finds it: the passwd entry of
//! the process's uid (through NSS, with libc) and the host name.

/// Who and where the local side is, for `%u`, `%d`, `%l`, `Match
/// localuser` and `~`.
#[derive(Debug, Clone)]
pub(super) struct Local {
    pub(super) user: String,
    pub(super) uid: u32,
    pub(super) home: String,
    pub(super) hostname: String,
}

impl Local {
    /// The calling user, from the passwd entry of the process's uid, and
    /// the machine's host name.
    /// The process's local side, looked up once: the passwd entry may come
    /// from a slow NSS source, and neither it nor the host name changes
    /// under a running program in practice.
    pub(super) fn current() -> Local {
        static CURRENT: std::sync::OnceLock<Local> = std::sync::OnceLock::new();
        CURRENT.get_or_init(Local::look_up).clone()
    }

    fn look_up() -> Local {
        let uid = unsafe { libc::getuid() };
        let (user, home) = passwd(uid).unwrap_or_else(|| {
            (
                std::env::var("USER").unwrap_or_default(),
                std::env::var("HOME").unwrap_or_default(),
            )
        });
        Local {
            user,
            uid,
            home,
            hostname: hostname(),
        }
    }
}

/// The passwd entry's name and home directory (`getpwuid_r`, so that
/// NSS sources other than `/etc/passwd` count, as they do for `ssh`).
fn passwd(uid: u32) -> Option<(String, String)> {
    let mut buf = vec![0u8; 4096];
    loop {
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call, and `buf` outlives
        // the reads of `pwd`'s strings below.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() {
            return None;
        }
        // SAFETY: on success both are NUL-terminated strings inside `buf`.
        let field = |p: *const libc::c_char| unsafe {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        };
        return Some((field(pwd.pw_name), field(pwd.pw_dir)));
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; the result is cut at the
    // first NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
