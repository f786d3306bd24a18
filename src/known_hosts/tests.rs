//! The format read and written, against OpenSSH's own reader where it
//! is installed (`ssh-keygen -F`).

use std::fs::OpenOptions;
use std::io;
use std::path::Path;

use super::line::pattern_list_matches;
use super::write::{entry_line, lock_within};
use super::*;

/// Two real Ed25519 public keys, for tests here and in `host_keys`.
pub(crate) const ED1: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILg4zKcoTwbt5lqhVGjk64meBdTzYRuV14vdclMQCvs6";
pub(crate) const ED2: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHykAdtuNqZDk6gGBjSaUTuyUA1cSpiZoQ3ixvz/XoWH";
/// A real ECDSA P-256 public key.
pub(crate) const EC1: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBM4n7DLU4VZEea8rPLmklR72E4a81cKB38SkS3h0PfhJIDcvAH43gIvFKI40UCc/oZIjKKeBKHD+XDPvZknJqW4=";

fn key(s: &str) -> PublicKey {
    PublicKey::from_openssh(s).unwrap()
}

fn found(text: &str, host: &str, port: u16) -> Found {
    let mut f = Found::default();
    f.load(text.as_bytes(), &host_port(host, port), 0);
    f
}

fn status(text: &str, host: &str, port: u16, k: &str) -> Status {
    found(text, host, port).check(Offer::Plain(&key(k)))
}

fn lines(text: &[u8], host: &str, port: u16) -> Vec<usize> {
    let mut f = Found::default();
    f.load(text, &host_port(host, port), 0);
    f.entries.iter().map(|e| e.line).collect()
}

#[test]
fn plain_and_bracketed_entries_match_their_port_only() {
    let text = format!("example.com {ED1}\n[127.0.0.1]:2222 {ED1}\n");
    assert_eq!(status(&text, "example.com", 22, ED1), Status::Ok(0));
    assert_eq!(status(&text, "EXAMPLE.com", 22, ED1), Status::Ok(0));
    assert_eq!(status(&text, "127.0.0.1", 2222, ED1), Status::Ok(0));
    assert_eq!(status(&text, "127.0.0.1", 2223, ED1), Status::New);
    assert_eq!(status(&text, "example.com", 2222, ED1), Status::New);
}

#[test]
fn any_other_key_on_file_is_a_change_whatever_its_type() {
    let text = format!("# comment\n\nexample.com {ED1}\n");
    assert_eq!(status(&text, "example.com", 22, ED2), Status::Changed(0));
    assert_eq!(status(&text, "example.com", 22, EC1), Status::Changed(0));
    let both = format!("example.com {ED1}\nexample.com {EC1}\n");
    assert_eq!(status(&both, "example.com", 22, EC1), Status::Ok(1));
}

#[test]
fn known_types_follow_the_plain_unrevoked_lines() {
    let ec = key(EC1).algorithm();
    let ed = key(ED1).algorithm();
    let f = found(&format!("h {EC1}\n@cert-authority h {ED1}\n"), "h", 22);
    assert!(f.knows_type(&ec) && !f.knows_type(&ed) && f.has_authority());
    let f = found(&format!("h {EC1}\n@revoked * {EC1}\n"), "h", 22);
    assert!(!f.knows_type(&ec));
    assert!(!f.has_authority());
}

#[test]
fn hashed_entries_match_whole_and_are_written_so() {
    let line = entry_line("example.com", &key(ED1), true).unwrap();
    assert!(line.starts_with("|1|"), "{line}");
    assert_eq!(status(&line, "example.com", 22, ED1), Status::Ok(0));
    assert_eq!(status(&line, "example.org", 22, ED1), Status::New);
    // Never split on commas, never matched in part.
    let (hashed, rest) = line.split_once(' ').unwrap();
    let with_comma = format!("{hashed},example.com {rest}\n");
    assert_eq!(status(&with_comma, "example.com", 22, ED1), Status::New);
    // A salt of another length makes the line unparseable.
    let salt16 = data_encoding::BASE64.encode(&[7u8; 16]);
    let short = format!("|1|{salt16}|AAAA {ED1}\n");
    assert_eq!(
        lines(short.as_bytes(), "example.com", 22),
        Vec::<usize>::new()
    );
}

#[test]
fn wildcards_and_negation() {
    let text = format!("*.example.com,!bad.example.com {ED1}\n");
    assert_eq!(status(&text, "a.example.com", 22, ED1), Status::Ok(0));
    assert_eq!(status(&text, "bad.example.com", 22, ED1), Status::New);
    assert!(pattern_list_matches(b"host-7", b"h?st*"));
    assert!(!pattern_list_matches(b"hst", b"h?st"));
    assert!(pattern_list_matches(b"[10.0.0.7]:2222", b"[10.0.0.*]:2222"));
    // A sub-pattern too long for OpenSSH's buffer fails the whole list.
    let long = format!("h,{}", "x".repeat(1100));
    assert!(!pattern_list_matches(b"h", long.as_bytes()));
}

#[test]
fn revoked_wins_over_a_trusting_line() {
    let text = format!("example.com {ED1}\n@revoked * {ED1}\n");
    assert_eq!(status(&text, "example.com", 22, ED1), Status::Revoked(1));
}

#[test]
fn lines_that_do_not_parse_are_skipped_and_the_rest_count() {
    let mut text = b"garbage\nexample.com ssh-ed25519 notbase64\n".to_vec();
    text.extend_from_slice(b"# caf\xe9 latin-1 comment\n");
    text.extend_from_slice(format!("example.com {ED1} café").as_bytes());
    text.extend_from_slice(b" \xe9\xff\r\n@bogus example.com ");
    text.extend_from_slice(ED2.as_bytes());
    text.extend_from_slice(b"\n\xff\xfe example.com\n");
    assert_eq!(lines(&text, "example.com", 22), vec![4]);
    let mut f = Found::default();
    assert!(f.load(&text, "example.com", 0));
    assert!(!Found::default().load(b"# only\n\n  \t\n", "h", 0));
}

/// A small deterministic generator (xorshift64*), so that a divergence
/// can be replayed from its seed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A random known_hosts line over `names`, `keys` and every kind of
/// junk and syntax OpenSSH reads.
fn random_line(rng: &mut Rng, names: &[&str], keys: &[&str]) -> Vec<u8> {
    let name = *rng.pick(names);
    let pattern = |rng: &mut Rng| -> String {
        let n = *rng.pick(names);
        match rng.below(12) {
            0 => n.to_ascii_uppercase(),
            1 => format!("!{n}"),
            2 => n.replacen('o', "?", 1),
            3 => format!("*{}", &n[n.len().min(3)..]),
            4 => "*".into(),
            5 => format!("{}*", &n[..n.len().min(4)]),
            6 => String::new(),
            _ => n.to_owned(),
        }
    };
    let hosts = match rng.below(10) {
        0 => entry_line(name, &key(ED1), true)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_owned(),
        1 => {
            let hashed = entry_line(name, &key(ED1), true).unwrap();
            format!("{},{}", hashed.split(' ').next().unwrap(), pattern(rng))
        }
        2 => format!(
            "|1|{}|{}",
            data_encoding::BASE64.encode(&[9u8; 16]),
            data_encoding::BASE64.encode(&[1u8; 20])
        ),
        _ => (0..=rng.below(3))
            .map(|_| pattern(rng))
            .collect::<Vec<_>>()
            .join(","),
    };
    let marker = *rng.pick(&["", "", "", "", "@revoked ", "@cert-authority ", "@bogus "]);
    let key = match rng.below(10) {
        0 => "ssh-ed25519 AAAAnotakey".to_owned(),
        1 => "ssh-ed25519".to_owned(),
        2 => "ssh-unknown AAAAC3NzaC1lZDI1NTE5AAAAILg4".to_owned(),
        _ => (*rng.pick(keys)).to_owned(),
    };
    let sep = *rng.pick(&[" ", " ", "\t", "  "]);
    let mut line = format!("{}{marker}{hosts}{sep}{key}", rng.pick(&["", "", " "])).into_bytes();
    match rng.below(8) {
        0 => line.extend_from_slice(b" caf\xe9 comment"),
        1 => line.extend_from_slice(b"\r"),
        2 => line = b"# a comment \xff".to_vec(),
        3 => line = b"\xfe\xff junk".to_vec(),
        _ => {}
    }
    line
}

/// Whether an OpenSSH program is here; without it the test says so and
/// passes, unless `CI` is set, where it must be.
pub(crate) fn have_program(name: &str) -> bool {
    let found = std::process::Command::new(name)
        .arg("-?")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is required in CI (apt-get install -y openssh-client)"
        );
        // Past the test harness's capture, so that it shows on a passing run.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: {name} not found (apt-get install -y openssh-client)"
        );
    }
    found
}

/// The lines `ssh-keygen -l -F lookup -f path` finds, with their markers.
fn ssh_keygen_finds(path: &Path, lookup: &str) -> Vec<(usize, Marker)> {
    let out = std::process::Command::new("ssh-keygen")
        .args(["-l", "-F", lookup, "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("# Host ")?;
            let (_, found) = rest.rsplit_once(" found: line ")?;
            let mut words = found.split_whitespace();
            let line = words.next()?.parse().ok()?;
            let marker = match words.next() {
                Some("REVOKED") => Marker::Revoked,
                Some("CA") => Marker::CertAuthority,
                _ => Marker::None,
            };
            Some((line, marker))
        })
        .collect()
}

/// Differential: which lines name a host, for a few hundred generated
/// files, against OpenSSH's own reader (`ssh-keygen -F`).
#[test]
fn the_lines_that_name_a_host_are_those_ssh_keygen_finds() {
    if !have_program("ssh-keygen") {
        return;
    }
    let seed = std::env::var("SSH_DIAL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0008);
    let mut rng = Rng::new(seed);
    let names = [
        "foo.example",
        "[foo.example]:2222",
        "10.0.0.1",
        "[10.0.0.1]:2222",
        "bar.example",
    ];
    let keys = [ED1, ED2, EC1];
    let dir = tempfile::tempdir().unwrap();
    let mut divergences = Vec::new();
    let files = 300;
    for n in 0..files {
        let mut text = Vec::new();
        for _ in 0..rng.below(8) + 1 {
            text.extend_from_slice(&random_line(&mut rng, &names, &keys));
            text.push(b'\n');
        }
        let path = dir.path().join(format!("kh{n}"));
        std::fs::write(&path, &text).unwrap();
        for lookup in names {
            let theirs = ssh_keygen_finds(&path, lookup);
            let mut found = Found::default();
            found.load(&text, lookup, 0);
            let ours: Vec<(usize, Marker)> =
                found.entries.iter().map(|e| (e.line, e.marker)).collect();
            if ours != theirs {
                divergences.push(format!(
                    "file {n}, {lookup}: ours {ours:?}, ssh-keygen {theirs:?}\n{}",
                    String::from_utf8_lossy(&text)
                ));
            }
        }
    }
    assert!(
        divergences.is_empty(),
        "{} divergences (seed {seed}):\n{}",
        divergences.len(),
        divergences.join("\n")
    );
}

/// The cache never serves a file's old contents: not after a rewrite
/// in the same second (racily clean), nor after one that keeps the
/// size and puts the modification time back (the change time differs).
#[test]
fn the_cache_sees_every_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    let names = |p: &std::path::Path| {
        let file = cache::load(p).unwrap().unwrap();
        let mut found = Found::default();
        found.load_indexed(&file, "a.example", 0);
        found.load_indexed(&file, "b.example", 0);
        found.entries.len()
    };
    std::fs::write(&path, format!("a.example {ED1}\n")).unwrap();
    assert_eq!(names(&path), 1);
    std::fs::write(&path, format!("c.example {ED1}\n")).unwrap();
    assert_eq!(names(&path), 0, "a rewrite within the racy window");

    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::write(&path, format!("a.example {ED1}\n")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert_eq!(names(&path), 1);
    assert_eq!(names(&path), 1, "served from the cache");
    std::fs::write(&path, format!("b.example {ED1}\n")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert_eq!(names(&path), 1);
    let file = cache::load(&path).unwrap().unwrap();
    let mut found = Found::default();
    found.load_indexed(&file, "b.example", 0);
    assert_eq!(
        found.entries.len(),
        1,
        "the same size and mtime, but rewritten"
    );
    std::fs::remove_file(&path).unwrap();
    assert!(cache::load(&path).unwrap().is_none());
}

#[test]
fn a_lock_never_released_fails_learning_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    let holder = std::fs::File::create(&path).unwrap();
    holder.lock().unwrap();
    let other = OpenOptions::new()
        .read(true)
        .append(true)
        .open(&path)
        .unwrap();
    let start = std::time::Instant::now();
    let err = lock_within(&other, std::time::Duration::from_millis(100), &|| false).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(start.elapsed() < std::time::Duration::from_secs(1));
    // A dial that ended stops waiting at once.
    let start = std::time::Instant::now();
    let err = lock_within(&other, std::time::Duration::from_secs(5), &|| true).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(start.elapsed() < std::time::Duration::from_millis(100));
    holder.unlock().unwrap();
    lock_within(&other, std::time::Duration::from_millis(100), &|| false).unwrap();
}

#[test]
fn learning_appends_once_and_refuses_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("known_hosts");
    assert_eq!(
        learn(&path, "[h]:2", &key(ED1), false, &|| false).unwrap(),
        Learned::Added
    );
    assert_eq!(
        learn(&path, "[h]:2", &key(ED1), false, &|| false).unwrap(),
        Learned::AlreadyKnown
    );
    for other in [ED2, EC1] {
        assert_eq!(
            learn(&path, "[h]:2", &key(other), false, &|| false).unwrap(),
            Learned::Refused {
                line: 1,
                revoked: false
            }
        );
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, format!("[h]:2 {ED1}\n"));
}
