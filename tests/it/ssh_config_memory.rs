//! What a loaded ssh_config costs: at most 4 bytes kept per byte of
//! configuration read (each file counted once, however often it is
//! included), and the bounds on what one load reads: 16 MiB of text and
//! 65,536 files, counting a file each time it is included. Measured with an
//! allocator that counts what the loading thread allocates.
//!
//! `cargo test --test it ssh_config_memory:: -- --nocapture` prints the bytes
//! kept per KiB read for each configuration.

use crate::support::alloc;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ssh_dial::SshConfig;

fn write(path: &Path, text: &[u8]) -> u64 {
    std::fs::write(path, text).unwrap();
    text.len() as u64
}

/// `n` host blocks as a real configuration has them.
fn host_blocks(n: usize) -> String {
    let mut text = String::new();
    for i in 0..n {
        let _ = write!(
            text,
            "Host web{i} web{i}.example.com\n  HostName 10.{}.{}.{}\n  User deploy\n  \
             Port {}\n  IdentityFile ~/.ssh/id_{i}\n  ProxyJump bastion{}\n\n",
            i / 65536 % 256,
            i / 256 % 256,
            i % 256,
            2200 + i % 100,
            i % 7
        );
    }
    text
}

/// Configurations as they come, and as they come at their worst: the root
/// file and the bytes read (each file once).
fn configurations(dir: &Path) -> Vec<(&'static str, PathBuf, u64)> {
    let mut out = Vec::new();

    let big = dir.join("big");
    let bytes = write(&big, host_blocks(7_000).as_bytes());
    out.push(("one file of 7,000 host blocks", big, bytes));

    // Each file includes the next twice: 8,191 includes of 13 files.
    let fan = dir.join("fan");
    std::fs::create_dir(&fan).unwrap();
    let mut bytes = 0;
    for level in 0..13 {
        let mut text = host_blocks(1);
        if level < 12 {
            let next = fan.join(format!("f{}", level + 1));
            let _ = writeln!(text, "Include {} {}", next.display(), next.display());
        }
        bytes += write(&fan.join(format!("f{level}")), text.as_bytes());
    }
    out.push((
        "13 files, each including the next twice",
        fan.join("f0"),
        bytes,
    ));

    let many = dir.join("many");
    std::fs::create_dir(&many).unwrap();
    let mut bytes = 0;
    for i in 0..500 {
        bytes += write(
            &many.join(format!("host{i:03}.conf")),
            host_blocks(2).as_bytes(),
        );
    }
    let root = dir.join("many.conf");
    bytes += write(
        &root,
        format!("Include {}/*.conf\n", many.display()).as_bytes(),
    );
    out.push(("500 files through one glob", root, bytes));

    let patterns = dir.join("patterns");
    let line = format!("Host {}\n  Port 2222\n", "a*b?c ".repeat(170_000));
    let bytes = write(&patterns, line.as_bytes());
    out.push(("one 1 MiB line of patterns", patterns, bytes));

    let short = dir.join("short");
    let bytes = write(&short, "Port 22\n".repeat(130_000).as_bytes());
    out.push(("130,000 short lines", short, bytes));

    out
}

/// A load keeps at most 4 bytes per byte it read, and needs at most that
/// on the way. Before, a file was kept split into lines, words and strings
/// (about 17 bytes per byte) once per include: the 13-file configuration
/// here, 3 KiB, took megabytes.
#[test]
fn a_load_keeps_at_most_four_bytes_per_byte_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut report = String::new();
    for (name, root, bytes) in configurations(dir.path()) {
        // Once first: the process's own one-time lookups (user, host name).
        drop(SshConfig::load(&root).unwrap());
        let (config, m) = alloc::measure(|| SshConfig::load(&root).unwrap());
        let per_kib = |n: isize| n as f64 * 1024.0 / bytes as f64;
        let _ = writeln!(
            report,
            "{name}: {bytes} bytes read, {} kept ({:.0} per KiB), peak {} ({:.0} per KiB)",
            m.kept,
            per_kib(m.kept),
            m.peak,
            per_kib(m.peak)
        );
        assert!(
            m.kept as u64 <= 4 * bytes,
            "{name}: {m:?} for {bytes} bytes"
        );
        assert!(
            m.peak as u64 <= 4 * bytes,
            "{name}: {m:?} for {bytes} bytes"
        );
        // And resolving it works, in bounded time.
        let start = Instant::now();
        config.resolve("web3").unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{name}: {:?}",
            start.elapsed()
        );
    }
    eprint!("{report}");
}

/// Past its bounds a load fails at once, saying so, having read (and
/// held) no more than the bound. Before, a 17 MiB file was read whole and
/// kept at 17 times its size; 17 files each including the next twice (9 KiB
/// at the bottom) took 16 GiB and 53 s.
#[test]
fn a_load_past_its_bounds_fails_clearly_and_cheaply() {
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, root: &Path| {
        let start = Instant::now();
        let (result, m) = alloc::measure(|| SshConfig::load(root));
        let took = start.elapsed();
        let err = result.expect_err(name);
        assert!(err.is_too_large(), "{name}: {err}");
        assert!(
            err.to_string().contains("ssh-dial reads no more"),
            "{name}: {err}"
        );
        assert!(m.peak < 17 << 20, "{name}: {m:?}");
        assert!(took < Duration::from_secs(5), "{name}: {took:?}");
        eprintln!("{name}: refused in {took:?}, peak {} bytes: {err}", m.peak);
    };

    let huge = dir.path().join("huge");
    let block = host_blocks(1);
    write(&huge, block.repeat((17 << 20) / block.len() + 1).as_bytes());
    check("a 17 MiB file", &huge);

    // A device that never ends is read up to the bound, not forever.
    check("/dev/zero", Path::new("/dev/zero"));

    let deep = dir.path().join("deep");
    std::fs::create_dir(&deep).unwrap();
    for level in 0..17 {
        let path = deep.join(format!("f{level}"));
        let text = if level < 16 {
            let next = deep.join(format!("f{}", level + 1));
            format!("Include {} {}\n", next.display(), next.display())
        } else {
            "# leaf\n".repeat(9 * 1024 / 7)
        };
        write(&path, text.as_bytes());
    }
    check("17 files each including the next twice", &deep.join("f0"));

    let empty = dir.path().join("empty");
    write(&empty, b"");
    let wide = dir.path().join("wide");
    let line = format!(
        "Include{}\n",
        format!(" {}", empty.display()).repeat(65_536)
    );
    write(&wide, line.as_bytes());
    check("one empty file included 65,536 times", &wide);
}
