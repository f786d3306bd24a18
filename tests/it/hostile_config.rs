//! A seeded generator of hostile input for the ssh_config reader and
//! resolver and the known_hosts reader: include fan-out and cycles, long
//! lines, NULs, bytes that are not UTF-8, stray quotes, `=` and `%`, and
//! patterns built to make a backtracking matcher take forever. Every input
//! must be read without a panic, in time and memory bounded per byte of
//! input (the memory counted by an allocator that counts what the reading
//! thread allocates).
//!
//! It runs for `SSH_DIAL_FUZZ_SECONDS` (default 5) per reader, or until a
//! fixed number of inputs is done if that takes longer (about 10 s for both
//! readers in a debug build); `SSH_DIAL_SEED` replays a run. The
//! bounds are for a debug build on a slow machine; the report printed with
//! `--nocapture` gives the worst time and memory per input byte seen.

use crate::support::alloc;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::Rng;
use ssh_dial::SshConfig;

fn budget() -> Duration {
    let secs = std::env::var("SSH_DIAL_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    Duration::from_secs(secs)
}

fn seed() -> u64 {
    std::env::var("SSH_DIAL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0bad_c0f1)
}

/// Text that backtracking matchers choke on, and the names to feed it.
fn hostile_pattern(rng: &mut Rng) -> String {
    match rng.below(5) {
        0 => "*a".repeat(1 + rng.below(30)) + "b",
        1 => "*".repeat(1 + rng.below(2000)),
        2 => format!("{}*?", "?*".repeat(rng.below(200))),
        3 => format!("!*{}", "a*".repeat(rng.below(50))),
        _ => "[a-z]*[!x]".repeat(1 + rng.below(20)),
    }
}

const NAMES: &[&str] = &["web1", "db.example.com", "10.0.0.1", "bastion", "x"];

fn junk(rng: &mut Rng, len: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"aZ09 \t=\"'\\#%$,!*?[]{}@:/~\x00\x01\r\x0c\xff\xc3\xa9\x80";
    (0..len).map(|_| *rng.pick(ALPHABET)).collect()
}

/// One line of a configuration, of every kind the reader meets; with
/// `spoil`, also lines OpenSSH refuses (junk, bad values, stray quotes),
/// which end most loads early.
fn config_line(rng: &mut Rng, files: &[String], me: usize, dir: &Path, spoil: bool) -> Vec<u8> {
    let name = *rng.pick(NAMES);
    let kinds = if spoil { 14 } else { 12 };
    let line = match rng.below(kinds) {
        0 => format!("Host {} {}", hostile_pattern(rng), name),
        1 => format!("Host {name} !{}", hostile_pattern(rng)),
        2 => format!(
            "Match host {},{} user {}",
            hostile_pattern(rng),
            name,
            hostile_pattern(rng)
        ),
        3 => format!(
            "Match {}originalhost {} final",
            if rng.chance(30) { "!" } else { "" },
            name
        ),
        4 => {
            // Fan-out: the same file (or a glob of them) many times.
            let wide = rng.chance(10);
            let times = 1 + rng.below(if wide { 64 } else { 3 });
            // Files after this one (a cycle, which OpenSSH refuses too,
            // only when spoiling).
            let first = if spoil { 0 } else { me + 1 };
            let target = if rng.chance(30) {
                format!("{}/f[{first}-9]", dir.display())
            } else if first < files.len() {
                format!(
                    "{}/{}",
                    dir.display(),
                    files[first + rng.below(files.len() - first)]
                )
            } else {
                format!("{}/none", dir.display())
            };
            format!("Include{}", format!(" {target}").repeat(times))
        }
        5 => format!(
            "HostName %h.{}",
            rng.pick(&["internal", "%%", "%r", "${HOME}"])
        ),
        6 => format!("User {}", rng.pick(&["deploy", "\"a b\"", "'x'", "a\\ b"])),
        7 => format!("IdentityFile ~/.ssh/%r@%h-{}", rng.below(100)),
        8 => format!(
            "ProxyJump {}",
            rng.pick(&["a,b", "b1 , b2", "u@h:22", "none", "x#y"])
        ),
        9 if spoil => format!("Port={}", rng.pick(&["22", "0", "70000", "2222", "x"])),
        9 => format!("Port={}", rng.pick(&["22", "2222"])),
        10 => format!("IgnoreUnknown {}", hostile_pattern(rng)),
        11 => format!("SendEnv {}", "LC_* ".repeat(rng.below(2000))),
        12 => format!("Unknown{} value", rng.below(3)),
        _ => {
            let len = rng.below(200);
            return junk(rng, len);
        }
    };
    let mut line = line.into_bytes();
    if rng.chance(10) {
        // A NUL, a byte that is not UTF-8, a CR, a form feed, or (spoiling)
        // a stray quote somewhere.
        let bytes: &[u8] = if spoil {
            b"\0\xff\xe9\r\"\x0c"
        } else {
            b"\0\xff\xe9\r\x0c"
        };
        let at = rng.below(line.len() + 1);
        line.insert(at, *rng.pick(bytes));
    }
    line
}

/// A configuration of up to 6 files in `dir`: `f0` (the root) to `fN`.
/// Returns the bytes written.
fn config_files(rng: &mut Rng, dir: &Path) -> u64 {
    let count = 1 + rng.below(6);
    let spoil = rng.chance(30);
    let files: Vec<String> = (0..count).map(|i| format!("f{i}")).collect();
    let mut total = 0;
    for (me, file) in files.iter().enumerate() {
        let mut text = Vec::new();
        if me == 0 && !spoil {
            let pattern = hostile_pattern(rng);
            text.extend(format!("IgnoreUnknown {pattern},unknown*\n").into_bytes());
        }
        for _ in 0..rng.below(40) {
            if rng.chance(3) {
                // A long line: up to 256 KiB.
                let len = 1024 << rng.below(9);
                text.extend_from_slice(b"Host ");
                text.extend(std::iter::repeat_n(b'a', len).enumerate().map(|(i, a)| {
                    if i % 97 == 0 {
                        b' '
                    } else {
                        a
                    }
                }));
            } else {
                text.extend(config_line(rng, &files, me, dir, spoil));
            }
            text.push(if rng.chance(5) { b'\r' } else { b'\n' });
        }
        std::fs::write(dir.join(file), &text).unwrap();
        total += text.len() as u64;
    }
    total
}

/// The worst seen, per input byte.
#[derive(Default)]
struct Worst {
    inputs: usize,
    bytes: u64,
    refused: usize,
    time_per_kib: f64,
    peak_per_byte: f64,
    slowest: Duration,
}

impl Worst {
    fn note(&mut self, bytes: u64, took: Duration, peak: isize) {
        self.inputs += 1;
        self.bytes += bytes;
        self.slowest = self.slowest.max(took);
        // Per byte only where the bytes, not the fixed costs, dominate.
        if bytes >= 16 << 10 {
            let kib = bytes as f64 / 1024.0;
            self.time_per_kib = self.time_per_kib.max(took.as_secs_f64() / kib);
            self.peak_per_byte = self.peak_per_byte.max(peak as f64 / bytes as f64);
        }
    }

    fn report(&self, what: &str) -> String {
        format!(
            "{what}: {} inputs, {} bytes, {} refused; worst (inputs of 16 KiB or more) {:.3} ms \
             per KiB, peak {:.2} bytes per byte; slowest {:?}",
            self.inputs,
            self.bytes,
            self.refused,
            self.time_per_kib * 1000.0,
            self.peak_per_byte,
            self.slowest
        )
    }
}

/// Time allowed for reading `bytes` of input: a fixed part (file system,
/// process-wide lookups) and a part per byte, debug build.
fn time_bound(bytes: u64) -> Duration {
    Duration::from_millis(200) + Duration::from_micros(4 * bytes)
}

/// Memory allowed: 4 bytes per byte (the load's bound) and a fixed part.
fn memory_bound(bytes: u64) -> isize {
    (4 * bytes + (256 << 10)) as isize
}

/// Memory allowed to a resolve: what it returns keeps the arguments of
/// keys it does not act on (`SendEnv a b c ...`) as strings, about 13
/// bytes per byte of such a line.
fn resolve_memory_bound(bytes: u64) -> isize {
    (16 * bytes + (256 << 10)) as isize
}

#[test]
fn hostile_configs_are_read_in_bounded_time_and_memory() {
    let seed = seed();
    let mut rng = Rng(seed | 1);
    let (budget, start) = (budget(), Instant::now());
    let mut worst = Worst::default();
    let mut resolves = Worst::default();
    let mut failures = String::new();
    while worst.inputs < 150 || start.elapsed() < budget {
        let n = worst.inputs;
        let dir = tempfile::tempdir().unwrap();
        let bytes = config_files(&mut rng, dir.path());
        let root = dir.path().join("f0");
        let began = Instant::now();
        let (loaded, m) = alloc::measure(|| SshConfig::load(&root));
        let took = began.elapsed();
        if took > time_bound(bytes) || m.peak > memory_bound(bytes) {
            let _ = writeln!(
                failures,
                "input {n} (seed {seed:#x}), {bytes} bytes: load took {took:?}, peak {} bytes",
                m.peak
            );
        }
        worst.note(bytes, took, m.peak);
        let Ok(config) = loaded else {
            worst.refused += 1;
            continue;
        };
        let long = "a".repeat(253);
        for destination in ["web1", "u@db.example.com", long.as_str(), "bastion"] {
            let began = Instant::now();
            let (resolved, m) = alloc::measure(|| config.resolve(destination));
            let took = began.elapsed();
            resolves.refused += usize::from(resolved.is_err());
            resolves.note(bytes, took, m.peak);
            // A resolve walks each file as often as it is included, so its
            // bound is the load's bound on that: 16 MiB at most, and here
            // the generator's fan-out (64 × 64 at worst) of these bytes.
            if took > time_bound(bytes) * 64 || m.peak > resolve_memory_bound(bytes) {
                let _ = writeln!(
                    failures,
                    "input {n} (seed {seed:#x}), {bytes} bytes: resolving {:.20}... took {took:?}, \
                     peak {} bytes",
                    destination, m.peak
                );
            }
        }
    }
    eprintln!(
        "{}",
        worst.report(&format!("ssh_config loads, seed {seed:#x}"))
    );
    eprintln!("{}", resolves.report("ssh_config resolves"));
    assert!(failures.is_empty(), "{failures}");
}

/// One known_hosts line of every kind OpenSSH reads, and junk.
fn known_hosts_line(rng: &mut Rng) -> Vec<u8> {
    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILg4zKcoTwbt5lqhVGjk64meBdTzYRuV14vdclMQCvs6";
    let name = *rng.pick(NAMES);
    let line = match rng.below(9) {
        0 => format!("{name},{} {KEY}", hostile_pattern(rng)),
        1 => format!("{},!{name} {KEY}", hostile_pattern(rng)),
        2 => format!("@revoked {} {KEY}", hostile_pattern(rng)),
        3 => format!("@cert-authority *.{name} {KEY}"),
        4 => format!("|1|{}|{} {KEY}", "A".repeat(28), "B".repeat(28)),
        5 => format!("[{name}]:2222 {KEY} comment"),
        6 => format!("{} {KEY}", "x,".repeat(rng.below(5000))),
        7 => format!("{name} ssh-ed25519 {}", "A".repeat(rng.below(10_000))),
        _ => {
            let len = rng.below(300);
            return junk(rng, len);
        }
    };
    let mut line = line.into_bytes();
    if rng.chance(10) {
        let at = rng.below(line.len() + 1);
        line.insert(at, *rng.pick(&[0u8, 0xff, b'\r', b'\t']));
    }
    line
}

#[test]
fn hostile_known_hosts_are_read_in_bounded_time_and_memory() {
    let seed = seed();
    let mut rng = Rng(seed | 1);
    let (budget, start) = (budget(), Instant::now());
    let mut worst = Worst::default();
    let mut failures = String::new();
    while worst.inputs < 100 || start.elapsed() < budget {
        let n = worst.inputs;
        let mut text = Vec::new();
        for _ in 0..rng.below(200) {
            text.extend(known_hosts_line(&mut rng));
            text.push(b'\n');
        }
        let bytes = text.len() as u64;
        let long = "a".repeat(253);
        let began = Instant::now();
        let (_, m) = alloc::measure(|| {
            for host in ["web1", "db.example.com", long.as_str()] {
                ssh_dial::testing::known_hosts_lines(&text, host, 22);
                ssh_dial::testing::known_hosts_lines(&text, host, 2222);
            }
        });
        let took = began.elapsed();
        // Six lookups, each indexing the text anew.
        if took > time_bound(bytes) * 6 || m.peak > memory_bound(bytes) {
            let _ = writeln!(
                failures,
                "input {n} (seed {seed:#x}), {bytes} bytes: took {took:?}, peak {} bytes",
                m.peak
            );
        }
        worst.note(bytes, took, m.peak);
    }
    eprintln!("{}", worst.report(&format!("known_hosts, seed {seed:#x}")));
    assert!(failures.is_empty(), "{failures}");
}
