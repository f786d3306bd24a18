//! Differential: ssh-dial's resolved ssh_config against the real `ssh -G`
//! on generated configurations: `Host` and `Match` blocks (host,
//! originalhost, user, localuser, all, final, negations), `Include` with
//! globs, `Key=Value` and quoting, comments, `%` tokens and `~`, for every
//! key ssh-dial honours. `SSH_DIAL_SEED` replays a run,
//! `SSH_DIAL_DIFF_CONFIGS` sets how many configurations (default 200; each
//! is resolved for 5 destinations).

use crate::support;

use crate::support::Rng;

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len())]
}

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use ssh_dial::{JumpHost, SshConfig};

const NAMES: &[&str] = &[
    "web1",
    "web2",
    "db.example.com",
    "Mixed.Case",
    "10.0.0.1",
    "bastion",
    "jump",
];

const PATTERNS: &[&str] = &[
    "*",
    "web*",
    "web?",
    "*.example.com",
    "!web2",
    "!*.example.com",
    "db*",
    "10.0.0.*",
    "Mixed.Case",
    "mixed.case",
    "bastion",
    "real-*",
    "*.internal",
    "other.example.com",
];

/// Keys and the values they are given, in the syntax ssh takes.
const OPTIONS: &[(&str, &[&str])] = &[
    (
        "HostName",
        &[
            "real-%h",
            "%h.internal",
            "10.1.2.3",
            "Other.Example.COM",
            "%%h",
            "\"quoted %h\"",
        ],
    ),
    ("Port", &["22", "2222", "0022", "65535"]),
    ("User", &["alice", "bob", "root", "'quoted user'"]),
    (
        "IdentityFile",
        &[
            "~/.ssh/id_a",
            "/keys/%h",
            "~/k/%r@%h",
            "id_b",
            "\"/with space/k\"",
            "~/.ssh/id_a",
        ],
    ),
    (
        "CertificateFile",
        &[
            "~/.ssh/id_a-cert.pub",
            "/certs/%h-%r.pub",
            "~/c/%C",
            "\"/with space/cert\"",
            "~/.ssh/id_a-cert.pub",
        ],
    ),
    (
        "ProxyCommand",
        &[
            "ssh -W %h:%p bastion",
            "nc %h %p",
            "none",
            "NONE",
            "sh -c 'exec nc %h %p' # comment",
            "aws ssm start-session --target %h --document-name AWS-StartSSHSession",
        ],
    ),
    ("IdentitiesOnly", &["yes", "no", "true", "False"]),
    (
        "IdentityAgent",
        &[
            "none",
            "SSH_AUTH_SOCK",
            "~/agent/%h.sock",
            "/run/%u/%C.sock",
        ],
    ),
    (
        "ProxyJump",
        &[
            "none",
            "bastion",
            "alice@jump:2200",
            "a,b",
            "j1,[10.0.0.9]:2222",
            "ssh://u@h:23",
            "10.0.0.5",
            // OpenSSH 9.2 cuts the value at a `#` and at the first blank
            // after its first byte.
            "b1 , b2",
            "a,b # c,d",
            "u x@b",
        ],
    ),
    ("ConnectTimeout", &["5", "1m", "none", "10s", "1h30m"]),
    ("ConnectionAttempts", &["1", "3"]),
    ("ServerAliveInterval", &["0", "15", "1m"]),
    ("ServerAliveCountMax", &["2", "5", "0"]),
    (
        "UserKnownHostsFile",
        &[
            "~/.ssh/kh_%h_%p",
            "none",
            "~/a ~/b",
            "/k/%C",
            "/k/%r-%u-%n-%k-%L-%l-%i-%d-%%",
            "\"/with space/%h\"",
        ],
    ),
    (
        "GlobalKnownHostsFile",
        &["/etc/g1", "none", "/etc/g1 /etc/g2", "~/g"],
    ),
    (
        "StrictHostKeyChecking",
        &["yes", "no", "ask", "accept-new", "off", "true"],
    ),
    ("HashKnownHosts", &["yes", "no"]),
    ("HostKeyAlias", &["Alias1", "kalias"]),
    ("AddressFamily", &["inet", "inet6", "any"]),
    (
        "PreferredAuthentications",
        &["publickey,password", "password"],
    ),
    (
        "PubkeyAuthentication",
        &["yes", "no", "unbound", "host-bound"],
    ),
    ("PasswordAuthentication", &["no", "yes"]),
    ("BatchMode", &["yes", "no"]),
    ("Compression", &["yes", "no"]),
    ("ForwardAgent", &["no"]),
];

/// The keys compared: every key ssh-dial honours.
const KEYS: &[&str] = &[
    "user",
    "hostname",
    "port",
    "addressfamily",
    "batchmode",
    "hashknownhosts",
    "identitiesonly",
    "passwordauthentication",
    "pubkeyauthentication",
    "stricthostkeychecking",
    "connectionattempts",
    "serveralivecountmax",
    "serveraliveinterval",
    "hostkeyalias",
    "identityagent",
    "preferredauthentications",
    "identityfile",
    "certificatefile",
    "proxycommand",
    "globalknownhostsfile",
    "userknownhostsfile",
    "connecttimeout",
    "proxyjump",
];

fn option_line(rng: &mut Rng) -> String {
    let (key, values) = OPTIONS[rng.below(OPTIONS.len())];
    let value = pick(rng, values);
    let key = match rng.below(4) {
        0 => key.to_ascii_lowercase(),
        1 => key.to_ascii_uppercase(),
        _ => key.to_owned(),
    };
    let line = match rng.below(4) {
        0 => format!("{key}={value}"),
        1 => format!("{key} = {value}"),
        _ => format!("{key} {value}"),
    };
    let indent = pick(rng, &["", "  ", "\t"]);
    if rng.chance(10) {
        format!("{indent}{line} # comment")
    } else {
        format!("{indent}{line}")
    }
}

fn pattern_list(rng: &mut Rng) -> String {
    let n = 1 + rng.below(3);
    (0..n)
        .map(|_| pick(rng, PATTERNS).to_owned())
        .collect::<Vec<_>>()
        .join(",")
}

fn block_header(rng: &mut Rng) -> String {
    if rng.chance(55) {
        let n = 1 + rng.below(3);
        let patterns: Vec<&str> = (0..n).map(|_| pick(rng, PATTERNS)).collect();
        return format!("Host {}", patterns.join(" "));
    }
    let mut criteria = Vec::new();
    if rng.chance(10) {
        return pick(rng, &["Match all", "Match final all", "Match !final"]).to_owned();
    }
    for _ in 0..1 + rng.below(2) {
        let neg = if rng.chance(20) { "!" } else { "" };
        criteria.push(match rng.below(6) {
            0 => format!("{neg}host {}", pattern_list(rng)),
            1 => format!("{neg}originalhost {}", pattern_list(rng)),
            2 => format!(
                "{neg}user {}",
                pick(rng, &["alice", "root", "bob,!alice", "*", "r*"])
            ),
            3 => format!("{neg}localuser {}", pick(rng, &["root", "nobody", "*"])),
            _ => format!("{neg}final"),
        });
    }
    format!("Match {}", criteria.join(" "))
}

fn config(rng: &mut Rng, dir: &Path, depth: usize) -> String {
    let mut text = String::new();
    for _ in 0..rng.below(3) {
        text += &option_line(rng);
        text.push('\n');
    }
    for b in 0..2 + rng.below(5) {
        text += &block_header(rng);
        text.push('\n');
        for _ in 0..1 + rng.below(4) {
            text += &option_line(rng);
            text.push('\n');
        }
        if depth < 2 && rng.chance(15) {
            let name = format!("inc{depth}{b}-{}.conf", rng.below(1000));
            let included = config(rng, dir, depth + 1);
            std::fs::write(dir.join(&name), included).unwrap();
            let glob = if rng.chance(50) {
                format!("{}/inc{depth}{b}-*.conf", dir.display())
            } else {
                dir.join(&name).display().to_string()
            };
            text += &format!("  Include {glob}\n");
        }
        if rng.chance(10) {
            text += "\n# a comment line\n";
        }
        if rng.chance(2) {
            // Lines both must refuse, or (IgnoreUnknown) both accept.
            text += pick(
                rng,
                &[
                    "Port 0\n",
                    "Hostnme typo\n",
                    "ConnectTimeout 5q\n",
                    "IgnoreUnknown Host*me,Other\nHostnme typo\n",
                    "User \"unterminated\n",
                    "Port 22 33\n",
                    "UserKnownHostsFile /a none\n",
                    "HostName %p\n",
                ],
            );
        }
    }
    text
}

/// Every file of a generated configuration, for a divergence report.
fn dump(dir: &Path) -> String {
    let mut out = String::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for p in paths {
        out += &format!(
            "--- {}\n{}",
            p.display(),
            std::fs::read_to_string(&p).unwrap()
        );
    }
    out
}

/// What `ssh -G` makes of `args` (after `-G -F config`): its `key value`
/// lines, or its complaint.
fn ssh_g_args(config: &Path, args: &[&str]) -> Result<BTreeMap<String, Vec<String>>, String> {
    let out = Command::new("ssh")
        .arg("-G")
        .arg("-F")
        .arg(config)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        map.entry(k.to_owned()).or_default().push(v.to_owned());
    }
    Ok(map)
}

fn ssh_g(config: &Path, destination: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    ssh_g_args(config, &[destination])
}

/// Whether the `ssh` here is Debian's build.
fn debian() -> bool {
    static DEBIAN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DEBIAN.get_or_init(|| {
        let out = Command::new("ssh").arg("-V").output().unwrap();
        String::from_utf8_lossy(&out.stderr).contains("Debian")
    })
}

fn ours(config: &Path, destination: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let resolved = SshConfig::load(config)
        .and_then(|c| c.resolve(destination))
        .map_err(|e| e.to_string())?;
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in resolved.to_ssh_g() {
        map.entry(k.to_owned()).or_default().push(v);
    }
    // Debian patches `ssh` so that an unset ServerAliveInterval is 300 s
    // under BatchMode yes; upstream OpenSSH (and ssh-dial) leave it 0.
    if debian() && resolved.batch_mode() && resolved.server_alive_interval().is_none() {
        map.insert("serveraliveinterval".into(), vec!["300".into()]);
    }
    Ok(map)
}

#[test]
fn resolved_configs_equal_ssh_g() {
    if !support::openssh(&["ssh"]) {
        return;
    }
    let seed = std::env::var("SSH_DIAL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c0f1_u64);
    let configs: usize = std::env::var("SSH_DIAL_DIFF_CONFIGS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut rng = Rng(seed | 1);
    let mut divergences = Vec::new();
    let (mut compared, mut both_refused, mut values) = (0, 0, 0);
    for n in 0..configs {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, config(&mut rng, dir.path(), 0)).unwrap();
        for _ in 0..5 {
            let name = pick(&mut rng, NAMES);
            let destination = match rng.below(4) {
                0 => format!("alice@{name}"),
                1 => format!("root@{name}"),
                _ => name.to_owned(),
            };
            compared += 1;
            let theirs = ssh_g(&path, &destination);
            let mine = ours(&path, &destination);
            match (&theirs, &mine) {
                (Err(_), Err(_)) => both_refused += 1,
                (Ok(t), Ok(m)) => {
                    for key in KEYS {
                        values += 1;
                        if t.get(*key) != m.get(*key) {
                            divergences.push(format!(
                                "config {n} {destination} {key}: ssh {:?}, ssh-dial {:?}\n{}",
                                t.get(*key),
                                m.get(*key),
                                dump(dir.path())
                            ));
                        }
                    }
                }
                _ => divergences.push(format!(
                    "config {n} {destination}: ssh {:?}, ssh-dial {:?}\n{}",
                    theirs.as_ref().err(),
                    mine.as_ref().err(),
                    dump(dir.path())
                )),
            }
        }
    }
    eprintln!(
        "seed {seed:#x}: {configs} configs, {compared} resolutions ({both_refused} refused by both), \
         {values} values compared, {} divergences",
        divergences.len()
    );
    let mut kinds = BTreeMap::new();
    for d in &divergences {
        let head = d.lines().next().unwrap_or("");
        let key = head
            .split(':')
            .next()
            .unwrap_or("")
            .rsplit(' ')
            .next()
            .unwrap_or("")
            .to_owned();
        *kinds.entry(key).or_insert(0) += 1;
    }
    eprintln!("divergences by key: {kinds:?}");
    assert!(
        divergences.is_empty(),
        "{} divergences, first:\n{}",
        divergences.len(),
        divergences
            .iter()
            .find(|d| !d.contains("serveraliveinterval"))
            .unwrap_or(&divergences[0])
    );
    // Both sides refusing everything would compare nothing.
    assert!(compared - both_refused > compared / 2);
}

/// A differential of accept or refuse: both refused (ssh-dial saying the
/// input was invalid), both accepted with the same values, or a divergence.
#[derive(Default)]
struct Tally {
    refused: usize,
    accepted: usize,
    divergences: Vec<String>,
}

impl Tally {
    /// One case: `same` compares what both accepted, or says how they
    /// differ.
    fn add<T>(
        &mut self,
        case: &str,
        theirs: &Result<BTreeMap<String, Vec<String>>, String>,
        ours: &Result<T, ssh_dial::ConfigError>,
        same: impl FnOnce(&BTreeMap<String, Vec<String>>, &T) -> Result<(), String>,
    ) {
        match (theirs, ours) {
            (Err(_), Err(e)) => {
                self.refused += 1;
                if !e.is_invalid_input() {
                    self.divergences
                        .push(format!("{case}: refused, but not as input: {e}"));
                }
            }
            (Ok(t), Ok(o)) => {
                self.accepted += 1;
                if let Err(why) = same(t, o) {
                    self.divergences.push(format!("{case}: {why}"));
                }
            }
            _ => self.divergences.push(format!(
                "{case}: ssh {:?}, ssh-dial {:?}",
                theirs.as_ref().err(),
                ours.as_ref().err().map(ToString::to_string)
            )),
        }
    }

    /// Reports, and fails on a divergence or if either side refused (or
    /// accepted) nearly everything, which would prove nothing.
    fn check(self, what: &str) {
        eprintln!(
            "{what}: {} refused by both, {} accepted by both, {} divergences",
            self.refused,
            self.accepted,
            self.divergences.len()
        );
        assert!(self.divergences.is_empty(), "{:#?}", self.divergences);
        assert!(self.refused > 40 && self.accepted > 40, "{what}");
    }
}

/// Names as a host list, an inventory or a caller might hand them in:
/// shell metacharacters, quotes, blanks, newlines, `$()`, backticks,
/// `${IFS}`, a leading `-`, and ordinary ones.
const HOSTILE: &[&str] = &[
    "a;touch X;#",
    "x;touch X;#",
    "$(touch X)",
    "$(touch${IFS}X)",
    "bastion$(touch${IFS}X)",
    "`touch X`",
    "${IFS}",
    "a b",
    "a -b",
    "a\tb",
    "a\nb",
    "a\rb",
    "a\u{1}b",
    "a\u{7f}b",
    "-oProxyCommand=x",
    "-x",
    "a\\",
    "a\\b",
    "a'b",
    "a\"b",
    "a|b",
    "a&b",
    "a<b",
    "a>b",
    "a(b",
    "a)b",
    "a{b",
    "a}b",
    "a$b",
    "a,b",
    "a*b",
    "a?b",
    "a!b",
    "a#b",
    "a[b]",
    "a%b",
    "a/b",
    "a:22",
    "café",
    "alice",
    "db.example.com",
    "10.0.0.1",
    "::1",
];

/// `ssh` refuses user and host names with shell metacharacters where they
/// come in (its command line); ssh-dial refuses exactly the same ones from
/// its callers (`SshConfig::resolve`), and accepts the others with the
/// same user and host. Before, every name was accepted.
#[test]
fn hostile_names_are_refused_exactly_as_ssh_refuses_them() {
    if !support::openssh(&["ssh"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("config");
    std::fs::write(&empty, "").unwrap();
    let config = SshConfig::load(&empty).unwrap();
    let mut destinations: Vec<(String, Vec<String>)> = Vec::new();
    for name in HOSTILE {
        destinations.push((format!("{name}@host"), vec![format!("{name}@host")]));
        destinations.push((
            format!("alice@{name}"),
            vec!["--".into(), format!("alice@{name}")],
        ));
        destinations.push((name.to_string(), vec!["--".into(), name.to_string()]));
    }
    destinations.push(("a@b@host".into(), vec!["a@b@host".into()]));
    let mut tally = Tally::default();
    for (destination, args) in &destinations {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let theirs = ssh_g_args(&empty, &args);
        let ours = config.resolve(destination);
        tally.add(&format!("{destination:?}"), &theirs, &ours, |t, o| {
            let want = (t["user"][0].as_str(), t["hostname"][0].as_str());
            let got = (o.user(), o.hostname());
            (want == got)
                .then_some(())
                .ok_or_else(|| format!("ssh {want:?}, ssh-dial {got:?}"))
        });
    }
    tally.check(&format!("{} destinations", destinations.len()));
}

/// `ssh -J` (and `-o ProxyJump=` on the command line) refuses a jump user
/// or host with shell metacharacters; `JumpHost::parse_chain`, which is
/// ssh-dial's `-J`, refuses the same specs and reads the others into the
/// same hops (Debian 9.2's cut at a blank or `#` included).
#[test]
fn hostile_jump_hosts_are_refused_exactly_as_ssh_refuses_them() {
    if !support::openssh(&["ssh"]) {
        return;
    }
    let mut specs: Vec<String> = HOSTILE
        .iter()
        .flat_map(|n| {
            [
                n.to_string(),
                format!("{n}@b"),
                format!("u@{n}"),
                format!("b1,{n}"),
            ]
        })
        .collect();
    specs.extend(
        [
            "b1",
            "b1,b2",
            "u@b:2222",
            "[::1]:22",
            "[10.0.0.9]:2222,j1",
            "ssh://u@h:23",
            "ssh://u;x@h",
            "ssh://a%3Bb@h",
            "ssh://a%00b@h",
            "ssh://h/x",
            "ssh://h:22/",
            "ssh://[::1]:22",
            "u x@b",
            "u -x@b",
            "u\\@b",
            "u\\\\x@b",
            "b:22 x",
            "b#c",
            "b1,b#2",
            "b1 , b2",
            " b1",
            "b1, b2",
            "b,",
            ",b",
            "none",
            "NONE",
            "b:0",
            "b:x",
            "@b",
        ]
        .map(str::to_owned),
    );
    let mut tally = Tally::default();
    for spec in &specs {
        let theirs = ssh_g_args(Path::new("/dev/null"), &["-J", spec, "target"]);
        let ours = JumpHost::parse_chain(spec);
        tally.add(&format!("{spec:?}"), &theirs, &ours, |t, hops| {
            // ssh prints the hops before the last as written, the last as
            // it reads it.
            let printed = t.get("proxyjump").map(|v| v[0].clone()).unwrap_or_default();
            let count = if printed.is_empty() {
                0
            } else {
                printed.matches(',').count() + 1
            };
            let last = printed.rsplit(',').next().unwrap_or_default();
            let ours_last = hops.last().map(ToString::to_string).unwrap_or_default();
            (count == hops.len() && last == ours_last)
                .then_some(())
                .ok_or_else(|| format!("ssh {printed:?}, ssh-dial {hops:?}"))
        });
    }
    tally.check(&format!("{} jump specs", specs.len()));
}

/// Configurations with bytes a text reader gets wrong: a NUL in a value
/// (OpenSSH's C strings end there), bytes that are not UTF-8 in patterns
/// and file names, CR line ends, a form feed, a NUL in a keyword. Each
/// resolved by ssh-dial and `ssh -G`: the same values. Before, the NUL and
/// what followed stayed in the value, and `\xff` became U+FFFD.
#[test]
fn bytes_are_read_as_ssh_reads_them() {
    if !support::openssh(&["ssh"]) {
        return;
    }
    let cases: &[(&[u8], &str)] = &[
        (b"Host x\n  HostName real.example\0.evil.example\n", "x"),
        (b"Host x\0y\n  User nul\n", "x"),
        (b"Host x\n  User u\0ser\n", "x"),
        (b"Host \xff\n  User matched\n", "\u{fffd}"),
        (b"Host *\xef\xbf\xbd*\n  User matched\n", "a\u{fffd}b"),
        (b"Host caf\xe9\n  Port 2222\n", "caf\u{e9}"),
        (b"Host x\n  IdentityFile /keys/caf\xe9\n", "x"),
        (b"Host x\n  UserKnownHostsFile /kh/\xff /kh/b\n", "x"),
        (b"Host x\r\n  Port 2200\r\n", "x"),
        (b"Port 2201\x0c\n", "x"),
        (b"Po\0rt 22\n", "x"),
        (b"Host x\n  ProxyJump b1\0,b2\n", "x"),
        (b"# comment \xff\0\nHost x\n  Port 2202\n", "x"),
        (b"Host x\n  HostName \"a\0b\"\n", "x"),
        (b"Match host x\0 user y\n  Port 2203\n", "x"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    let mut divergences = Vec::new();
    for (text, destination) in cases {
        std::fs::write(&path, text).unwrap();
        let theirs = ssh_g(&path, destination);
        let mine = ours(&path, destination);
        let case = format!("{:?} {destination:?}", text.escape_ascii().to_string());
        match (&theirs, &mine) {
            (Err(_), Err(_)) => {}
            (Ok(t), Ok(m)) => {
                for key in KEYS {
                    if t.get(*key) != m.get(*key) {
                        divergences.push(format!(
                            "{case} {key}: ssh {:?}, ssh-dial {:?}",
                            t.get(*key),
                            m.get(*key)
                        ));
                    }
                }
            }
            _ => divergences.push(format!(
                "{case}: ssh {:?}, ssh-dial {:?}",
                theirs.as_ref().err(),
                mine.as_ref().err()
            )),
        }
    }
    assert!(divergences.is_empty(), "{}", divergences.join("\n"));
}
