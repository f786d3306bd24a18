//! SFTP against a real sshd (`internal-sftp`, and OpenSSH's `sftp-server`
//! where a test needs to see the server's process), and against
//! `sftp_server.py`, a hostile stand-in set as the `sftp` subsystem: one
//! that never answers, answers half, floods, returns short reads and
//! shuffles its replies. Content is checked with sha256, and against
//! OpenSSH's `sftp` on the same files.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use ssh_dial::testing::Sshd;
use ssh_dial::{Client, Dialer, Metadata, OpenOptions, Sftp};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::support;

const SCRIPT: &str = include_str!("sftp_server.py");

fn sha256(path: &Path) -> String {
    use std::io::Read;
    let mut hasher = Sha256::new();
    let mut file = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A file of `len` pseudo-random bytes from `seed`.
fn random_file(dir: &Path, name: &str, len: usize, seed: u64) -> PathBuf {
    let mut rng = support::Rng(seed | 1);
    let data: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The hostile server in `mode`, as the sshd's `sftp` subsystem; the
/// directory it lives in names it among the processes (the marker).
fn hostile_sshd(mode: &str, extra: &[&str]) -> (Sshd, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("sftp_server.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let mut builder = Sshd::builder().config_line(&format!(
        "Subsystem sftp {python} {} {mode}",
        script.display()
    ));
    for line in extra {
        builder = builder.config_line(line);
    }
    (builder.start().unwrap(), dir)
}

/// A session on a real sshd's internal-sftp, and a directory to work in;
/// none if OpenSSH is missing.
struct Internal {
    sshd: Sshd,
    _client: Client,
    sftp: Sftp,
    dir: tempfile::TempDir,
}

async fn internal() -> Option<Internal> {
    if skip() {
        return None;
    }
    let sshd = Sshd::start().unwrap();
    let client = support::connect_sshd(&sshd, Dialer::builder()).await;
    let sftp = client.sftp().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    Some(Internal {
        sshd,
        _client: client,
        sftp,
        dir,
    })
}

fn skip() -> bool {
    !support::openssh(&["sshd", "ssh-keygen"])
}

#[tokio::test]
async fn content_is_identical_at_every_size_both_ways() {
    let Some(Internal {
        sshd,
        sftp,
        dir,
        _client,
    }) = internal().await
    else {
        return;
    };
    assert_eq!(
        sftp.request_sizes(),
        (261_120, 261_120),
        "limits@openssh.com"
    );
    let d = dir.path();
    let sizes = [
        0,
        1,
        32 * 1024 - 1,
        32 * 1024,
        32 * 1024 + 1,
        261_119,
        261_120,
        261_121,
        3 * 1024 * 1024 + 7,
    ];
    for (i, len) in sizes.into_iter().enumerate() {
        let local = random_file(d, &format!("src{i}"), len, i as u64);
        let remote = d.join(format!("remote{i}"));
        let back = d.join(format!("back{i}"));
        assert_eq!(sftp.put(&local, text(&remote)).await.unwrap(), len as u64);
        assert_eq!(sftp.get(text(&remote), &back).await.unwrap(), len as u64);
        assert_eq!(sha256(&local), sha256(&remote), "put of {len} bytes");
        assert_eq!(sha256(&local), sha256(&back), "get of {len} bytes");
    }
    // A sparse file: 20 MiB with 5 bytes in it, read as its zeros are.
    let sparse = d.join("sparse");
    let file = std::fs::File::create(&sparse).unwrap();
    file.set_len(20 << 20).unwrap();
    std::os::unix::fs::FileExt::write_at(&file, b"hello", 7 << 20).unwrap();
    let back = d.join("sparse.back");
    assert_eq!(sftp.get(text(&sparse), &back).await.unwrap(), 20 << 20);
    assert_eq!(sha256(&sparse), sha256(&back));
    let up = d.join("sparse.up");
    sftp.put(&sparse, text(&up)).await.unwrap();
    assert_eq!(sha256(&sparse), sha256(&up));
    // Streams both ways.
    let mut sink = Vec::new();
    sftp.get_to(text(&sparse), &mut sink).await.unwrap();
    assert_eq!(sink.len(), 20 << 20);
    assert_eq!(&sink[7 << 20..(7 << 20) + 5], b"hello");
    let streamed = d.join("streamed");
    let mut source: &[u8] = &sink;
    sftp.put_from(&mut source, text(&streamed)).await.unwrap();
    assert_eq!(sha256(&sparse), sha256(&streamed));
    // OpenSSH's sftp reads the same bytes from the same server.
    if support::openssh(&["sftp"]) {
        let theirs = d.join("theirs");
        openssh_get(&sshd, &remote_of(d, 8), &theirs);
        assert_eq!(sha256(&theirs), sha256(&d.join("src8")));
    }
}

fn remote_of(d: &Path, i: usize) -> PathBuf {
    d.join(format!("remote{i}"))
}

/// `sftp -b` of `get remote local` against `sshd`.
fn openssh_get(sshd: &Sshd, remote: &Path, local: &Path) {
    let known = sshd
        .write_file("known_hosts", &sshd.known_hosts_line())
        .unwrap();
    let batch = sshd
        .write_file(
            "batch",
            &format!("get {} {}\n", remote.display(), local.display()),
        )
        .unwrap();
    let out = std::process::Command::new("sftp")
        .args(["-F", "/dev/null", "-o", "BatchMode=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .arg("-i")
        .arg(sshd.user_key_path())
        .args(["-P", &sshd.addr().port().to_string(), "-b"])
        .arg(&batch)
        .arg(format!("{}@127.0.0.1", sshd.user()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A server that answers each read with a random part of what was asked,
/// and sends its replies in shuffled order: the bytes come out the same.
#[tokio::test]
async fn short_reads_and_shuffled_replies_keep_the_content() {
    if skip() {
        return;
    }
    let (sshd, _script) = hostile_sshd("short", &[]);
    let client = support::connect_sshd(&sshd, Dialer::builder()).await;
    let sftp = client.sftp().await.unwrap();
    // No limits@openssh.com: 32 KiB requests.
    assert_eq!(sftp.request_sizes(), (32 * 1024, 32 * 1024));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (i, len) in [0usize, 1, 32 * 1024 + 1, 2 * 1024 * 1024 + 3]
        .into_iter()
        .enumerate()
    {
        let local = random_file(d, &format!("src{i}"), len, 40 + i as u64);
        let back = d.join(format!("back{i}"));
        let up = d.join(format!("up{i}"));
        assert_eq!(sftp.get(text(&local), &back).await.unwrap(), len as u64);
        assert_eq!(sha256(&local), sha256(&back), "get of {len} bytes");
        sftp.put(&local, text(&up)).await.unwrap();
        assert_eq!(sha256(&local), sha256(&up), "put of {len} bytes");
    }
    // A File reads through short reads too.
    let mut file = sftp.open(text(&d.join("src2"))).await.unwrap();
    let mut all = Vec::new();
    file.read_to_end(&mut all).await.unwrap();
    assert_eq!(all, std::fs::read(d.join("src2")).unwrap());
}

#[tokio::test]
async fn small_operations_and_their_errors() {
    let Some(Internal {
        sftp,
        dir,
        sshd: _sshd,
        _client,
    }) = internal().await
    else {
        return;
    };
    let d = text(dir.path()).to_owned();
    let at = |name: &str| format!("{d}/{name}");

    sftp.create_dir(&at("sub")).await.unwrap();
    assert!(sftp.metadata(&at("sub")).await.unwrap().is_dir());
    let mut f = sftp.create(&at("sub/a")).await.unwrap();
    f.write_all(b"alpha").await.unwrap();
    f.close().await.unwrap();
    let m = sftp.metadata(&at("sub/a")).await.unwrap();
    assert_eq!((m.len(), m.is_file()), (Some(5), true));

    sftp.set_metadata(&at("sub/a"), Metadata::new().with_permissions(0o600))
        .await
        .unwrap();
    assert_eq!(
        sftp.metadata(&at("sub/a"))
            .await
            .unwrap()
            .permissions()
            .unwrap()
            & 0o777,
        0o600
    );
    let when = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    sftp.set_metadata(&at("sub/a"), Metadata::new().with_times(when, when))
        .await
        .unwrap();
    assert_eq!(
        sftp.metadata(&at("sub/a")).await.unwrap().modified(),
        Some(when)
    );

    sftp.symlink(&at("sub/a"), &at("link")).await.unwrap();
    assert_eq!(sftp.read_link(&at("link")).await.unwrap(), at("sub/a"));
    assert!(sftp.metadata(&at("link")).await.unwrap().is_file());
    assert_eq!(
        sftp.symlink_metadata(&at("link"))
            .await
            .unwrap()
            .file_type(),
        ssh_dial::FileType::Symlink
    );
    sftp.hard_link(&at("sub/a"), &at("hard")).await.unwrap();
    assert_eq!(std::fs::read(at("hard")).unwrap(), b"alpha");

    // posix-rename replaces the target, as rename(2).
    std::fs::write(at("b"), b"old").unwrap();
    sftp.rename(&at("hard"), &at("b")).await.unwrap();
    assert_eq!(std::fs::read(at("b")).unwrap(), b"alpha");

    let mut names: Vec<String> = sftp
        .read_dir(&d)
        .await
        .unwrap()
        .iter()
        .map(|e| e.file_name().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["b", "link", "sub"]);
    assert_eq!(
        sftp.canonicalize(&format!("{d}/sub/../sub")).await.unwrap(),
        at("sub")
    );
    assert!(sftp.fs_stats(&d).await.unwrap().blocks > 0);

    // Errors name the operation, the path (escaped) and the status.
    let missing = format!("{d}/no\x1b[31mne");
    let err = sftp.metadata(&missing).await.unwrap_err();
    assert!(err.is_not_found() && !err.is_timeout(), "{err}");
    assert_eq!(
        (err.operation(), err.path()),
        ("stat", Some(missing.as_str()))
    );
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!(
            "sftp stat {d}/no\\u{{1b}}[31mne: SSH_FX_NO_SUCH_FILE (2)"
        )),
        "{shown}"
    );
    let err = sftp.get(&missing, at("x")).await.unwrap_err();
    assert!(err.is_not_found() && err.operation() == "get", "{err}");
    let err = sftp.remove_dir(&at("sub")).await.unwrap_err();
    assert_eq!(err.status(), Some(4), "{err}");
    // A NUL would cut the path short on the server: refused before sending.
    let err = sftp.remove_file(&at("sub\0/a")).await.unwrap_err();
    assert!(err.to_string().contains("NUL"), "{err}");
    // Transfers too, both ways, and the session goes on.
    let err = sftp.put(at("x"), &at("sub\0/a")).await.unwrap_err();
    assert!(err.is_invalid_input() && err.operation() == "put", "{err}");
    let err = sftp.get(&at("sub\0/a"), at("y")).await.unwrap_err();
    assert!(err.is_invalid_input() && err.operation() == "get", "{err}");
    let err = sftp
        .get_to(&at("sub\0/a"), &mut Vec::new())
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");

    sftp.remove_file(&at("sub/a")).await.unwrap();
    sftp.remove_dir(&at("sub")).await.unwrap();
    assert!(sftp.metadata(&at("sub")).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn a_file_reads_writes_and_seeks() {
    let Some(Internal {
        sftp,
        dir,
        sshd: _sshd,
        _client,
    }) = internal().await
    else {
        return;
    };
    let path = format!("{}/f", text(dir.path()));
    let options = OpenOptions::new().read(true).write(true).create(true);
    let mut f = sftp.open_with(&path, options).await.unwrap();
    let big: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    f.write_all(&big).await.unwrap();
    assert_eq!(f.seek(std::io::SeekFrom::End(-10)).await.unwrap(), 599_990);
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).await.unwrap();
    assert_eq!(tail, &big[599_990..]);
    f.seek(std::io::SeekFrom::Start(3)).await.unwrap();
    f.write_all(b"XY").await.unwrap();
    f.seek(std::io::SeekFrom::Current(-2)).await.unwrap();
    let mut two = [0u8; 2];
    f.read_exact(&mut two).await.unwrap();
    assert_eq!(&two, b"XY");
    f.set_len(10).await.unwrap();
    assert_eq!(f.metadata().await.unwrap().len(), Some(10));
    f.sync_all().await.unwrap();
    drop(f);
    let mut appending = sftp
        .open_with(&path, OpenOptions::new().append(true))
        .await
        .unwrap();
    appending.write_all(b"++").await.unwrap();
    appending.close().await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap().len(), 12);
}

/// The subsystem's channel lives past the dialer's open timeout (which
/// bounds its open, not its life).
#[tokio::test]
async fn a_session_outlives_the_open_timeout() {
    if skip() {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let builder = Dialer::builder().open_timeout(Duration::from_millis(300));
    let client = support::connect_sshd(&sshd, builder).await;
    let sftp = client.sftp().await.unwrap();
    let opened = Instant::now();
    // The condition is time itself: a second past the open timeout.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(opened.elapsed() > Duration::from_millis(300));
    sftp.canonicalize(".").await.unwrap();
}

/// Runs `work` with a plain timer of `limit` beside it: its result, how
/// long it took, and how late the runtime woke the timer (on a machine
/// whose cores are shared, that lateness is the machine's, not ours).
async fn beside_a_timer<T>(
    limit: Duration,
    work: impl std::future::Future<Output = T>,
) -> (T, Duration, Duration) {
    let start = Instant::now();
    let work = async {
        let result = work.await;
        (result, start.elapsed())
    };
    let ((result, took), late) = tokio::join!(work, async {
        tokio::time::sleep(limit).await;
        start.elapsed().saturating_sub(limit)
    });
    (result, took, late)
}

/// What each operation against a hostile server gives, and how long it
/// took past its deadline.
async fn hostile_round(client: &Client, mode: &str, dir: &Path) {
    let op_limit = Duration::from_millis(300);
    let transfer_limit = Duration::from_millis(600);
    let slack = Duration::from_millis(20);
    let open = client
        .sftp_builder()
        .timeout(op_limit)
        .transfer_timeout(transfer_limit)
        .stall_timeout(None)
        .open();
    let (opened, took, late) = beside_a_timer(op_limit, open).await;
    let sftp: Sftp = match (mode, opened) {
        ("silent", Err(e)) => {
            assert!(e.is_timeout(), "{mode}: {e}");
            assert!(
                took <= op_limit + slack + late,
                "{mode}: open took {took:?} (the runtime's own timer was {late:?} late)"
            );
            return;
        }
        (_, Ok(s)) => s,
        (_, Err(e)) => panic!("{mode}: {e}"),
    };
    // 65 copies of each reply of a 1 MiB get would be 65 MiB to read.
    let len = if mode == "duplicates" {
        64 << 10
    } else {
        1 << 20
    };
    let local = random_file(dir, &format!("{mode}.src"), len, 3);
    let remote = format!("{}/{mode}.remote", text(dir));
    // put, get, stat, each bounded by its deadline.
    let ops: [(&str, Duration); 3] = [
        ("put", transfer_limit),
        ("get", transfer_limit),
        ("stat", op_limit),
    ];
    for (op, limit) in ops {
        let work = async {
            match op {
                "put" => sftp.put(&local, &remote).await.map(drop),
                "get" => sftp.get(text(&local), dir.join("back")).await.map(drop),
                _ => sftp.metadata(text(&local)).await.map(drop),
            }
        };
        let (result, took, late) = beside_a_timer(limit, work).await;
        assert!(
            took <= limit + slack + late,
            "{mode} {op}: {took:?} (the runtime's own timer was {late:?} late)"
        );
        match (mode, result) {
            ("mute" | "half", Err(e)) => assert!(e.is_timeout(), "{mode} {op}: {e}"),
            // One request, answered if it fell on an answered turn.
            ("half", Ok(())) if op == "stat" => {}
            ("oversize", Err(e)) => {
                assert!(e.is_protocol() || e.is_closed(), "{mode} {op}: {e}");
                assert!(sftp.is_closed());
            }
            ("duplicates", Ok(())) => {}
            (_, result) => panic!("{mode} {op}: {result:?}"),
        }
    }
    if mode == "duplicates" {
        assert_eq!(sha256(&local), sha256(Path::new(&remote)));
        assert_eq!(sha256(&local), sha256(&dir.join("back")));
    }
}

/// A subsystem that never answers, answers INIT only, answers half the
/// requests, sends a 100 MiB packet, or floods duplicate replies: every
/// operation returns by its deadline + 20 ms, and once the session is
/// dropped nothing is left: no task, no descriptor, no session channel,
/// no server process.
#[test]
fn hostile_servers_bound_every_operation_and_leave_nothing() {
    if skip() {
        return;
    }
    support::counting_fds(true, || async {
        for mode in ["silent", "mute", "half", "oversize", "duplicates"] {
            let (sshd, script_dir) = hostile_sshd(mode, &[]);
            let marker = script_dir.path().to_str().unwrap().to_owned();
            let client = support::connect_sshd(&sshd, Dialer::builder()).await;
            let (tasks, fds) = (support::alive_tasks(), support::open_fds());
            let dir = tempfile::tempdir().unwrap();
            hostile_round(&client, mode, dir.path()).await;
            let gone = support::wait_until(Duration::from_secs(3), || {
                client.sessions_in_use() == 0
                    && support::alive_tasks() <= tasks
                    && support::open_fds() <= fds
                    && support::processes_with(&marker) == 0
            })
            .await;
            assert!(
                gone,
                "{mode}: sessions {}, tasks {} (before {tasks}), fds {} (before {fds}), servers {}",
                client.sessions_in_use(),
                support::alive_tasks(),
                support::open_fds(),
                support::processes_with(&marker)
            );
            // The connection is fine for what comes next.
            assert_eq!(client.exec("echo ok").await.unwrap().stdout, b"ok\n");
            client.close().await;
        }
    });
}

/// The copy example as a user runs it: a file up, a directory down with
/// `-r`, content by sha256; a failure is one `error:` line and exit 255.
#[tokio::test]
async fn the_copy_example_copies_files_and_directories() {
    let Some(Internal {
        sshd,
        dir,
        _client,
        sftp: _sftp,
    }) = internal().await
    else {
        return;
    };
    let d = dir.path();
    let known = sshd
        .write_file("known_hosts", &sshd.known_hosts_line())
        .unwrap();
    let copy = |paths: &[String]| {
        std::process::Command::new(support::example("copy"))
            .args(["-F", "none", "-p", &sshd.addr().port().to_string()])
            .arg("-i")
            .arg(sshd.user_key_path())
            .arg("--known-hosts")
            .arg(&known)
            .args(paths)
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .unwrap()
    };
    let host = format!("{}@127.0.0.1", sshd.user());
    let tree = d.join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    let a = random_file(&tree, "a", 300_000, 11);
    let b = random_file(&tree.join("sub"), "b", 5, 12);
    let up = d.join("up");
    let out = copy(&[text(&a).into(), format!("{host}:{}", up.display())]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(sha256(&a), sha256(&up));
    let down = d.join("down");
    let out = copy(&[
        "-r".into(),
        format!("{host}:{}", tree.display()),
        text(&down).into(),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(sha256(&a), sha256(&down.join("a")));
    assert_eq!(sha256(&b), sha256(&down.join("sub/b")));
    let out = copy(&[
        format!("{host}:{}/missing", d.display()),
        text(&down).into(),
    ]);
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: sftp stat ") && stderr.contains("NO_SUCH_FILE"),
        "{stderr}"
    );
}

/// OpenSSH's sftp-server, started with `-d DIR` (its start directory), so
/// that DIR names its process; and the process's id once it runs.
fn sftp_server_sshd(dir: &Path, extra: &[&str]) -> Sshd {
    let mut builder = Sshd::builder().config_line(&format!(
        "Subsystem sftp /usr/lib/openssh/sftp-server -d {}",
        dir.display()
    ));
    for line in extra {
        builder = builder.config_line(line);
    }
    builder.start().unwrap()
}

/// Opens given up at every point (timeouts of 0 to 3 ms, files and
/// directories): a handle the server opened for one is closed when its
/// reply comes, so the server ends up holding nothing, and the session
/// goes on.
#[tokio::test]
async fn opens_given_up_anywhere_leave_no_handle_on_the_server() {
    if skip() || !Path::new("/usr/lib/openssh/sftp-server").exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sshd = sftp_server_sshd(d, &[]);
    let client = support::connect_sshd(&sshd, Dialer::builder()).await;
    let sftp = client.sftp().await.unwrap();
    let source = random_file(d, "source", 1000, 3);
    let mut rng = support::Rng(11);
    let mut finished = 0;
    for i in 0..300 {
        let wait = Duration::from_micros(rng.below(3000) as u64);
        let done = if i % 3 == 0 {
            tokio::time::timeout(wait, sftp.read_dir(text(d)))
                .await
                .is_ok()
        } else {
            tokio::time::timeout(wait, sftp.open(text(&source)))
                .await
                .is_ok()
        };
        finished += usize::from(done);
    }
    assert!(
        support::wait_until(Duration::from_secs(3), || files_open_under(d) == 0).await,
        "the server still holds {} open ({finished} of 300 finished in time)",
        files_open_under(d)
    );
    assert_eq!(
        sftp.metadata(text(&source)).await.unwrap().len(),
        Some(1000)
    );
    println!("{finished} of 300 opens finished before their timeout");
}

/// The files under `dir` the process whose command line names `dir` holds
/// open.
fn files_open_under(dir: &Path) -> usize {
    let marker = text(dir);
    let mut open = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&cmdline).contains(marker) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        open += fds
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .filter(|target| target.starts_with(dir))
            .count();
    }
    open
}

/// A transfer given up (at its deadline, or its future dropped) closes
/// its remote file on the server, and the session goes on.
#[tokio::test]
async fn a_transfer_given_up_closes_its_remote_file() {
    if skip() || !Path::new("/usr/lib/openssh/sftp-server").exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sshd = sftp_server_sshd(d, &[]);
    let client = support::connect_sshd(&sshd, Dialer::builder()).await;
    let sftp = client
        .sftp_builder()
        .transfer_timeout(Duration::from_millis(300))
        .open()
        .await
        .unwrap();
    let remote = d.join("up");
    // A source that gives 1 MiB, then nothing, and never ends.
    let (mut feed, mut stuck) = tokio::io::duplex(2 << 20);
    feed.write_all(&vec![7u8; 1 << 20]).await.unwrap();
    let err = sftp.put_from(&mut stuck, text(&remote)).await.unwrap_err();
    assert!(err.is_timeout() && err.operation() == "put", "{err}");
    assert!(
        support::wait_until(Duration::from_secs(2), || files_open_under(d) == 0).await,
        "the server still holds {} files open",
        files_open_under(d)
    );
    // The same, the future dropped instead.
    let put = sftp.put_from(&mut stuck, text(&remote));
    assert!(tokio::time::timeout(Duration::from_millis(100), put)
        .await
        .is_err());
    assert!(support::wait_until(Duration::from_secs(2), || files_open_under(d) == 0).await);
    // A get whose destination stops taking bytes.
    let source = random_file(d, "source", 8 << 20, 5);
    let (mut full, _never_read) = tokio::io::duplex(64 << 10);
    let get = sftp.get_to(text(&source), &mut full);
    assert!(tokio::time::timeout(Duration::from_millis(100), get)
        .await
        .is_err());
    assert!(support::wait_until(Duration::from_secs(2), || files_open_under(d) == 0).await);
    // A file dropped without close.
    let file = sftp.open(text(&source)).await.unwrap();
    assert_eq!(files_open_under(d), 1);
    drop(file);
    assert!(support::wait_until(Duration::from_secs(2), || files_open_under(d) == 0).await);
    // The session is still good.
    assert_eq!(
        sftp.metadata(text(&source)).await.unwrap().len(),
        Some(8 << 20)
    );
    assert_eq!(client.sessions_in_use(), 1);
    drop(sftp);
    assert!(support::wait_until(Duration::from_secs(2), || client.sessions_in_use() == 0).await);
}

/// `sftp()` dropped at random points of its start leaves no channel on
/// either side (the server allows one session: a channel left open there
/// would refuse the next), no task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_dropped_anywhere_leaves_nothing() {
    if skip() {
        return;
    }
    let sshd = Sshd::builder()
        .config_line("MaxSessions 1")
        .start()
        .unwrap();
    let client = support::connect_sshd(&sshd, Dialer::builder()).await;
    let tasks = support::alive_tasks();
    let mut rng = support::Rng(0x5f7);
    let mut opened = 0;
    for _ in 0..40 {
        let after = Duration::from_micros(rng.below(6_000) as u64);
        if let Ok(Ok(sftp)) = tokio::time::timeout(after, client.sftp()).await {
            opened += 1;
            drop(sftp);
        }
        assert!(
            support::wait_until(Duration::from_secs(2), || client.sessions_in_use() == 0).await
        );
    }
    assert!(
        support::wait_until(Duration::from_secs(2), || support::alive_tasks() <= tasks).await,
        "tasks {} (before {tasks})",
        support::alive_tasks()
    );
    // sshd's one session slot is free (once sshd has seen the last
    // close and its session process ended: it refuses with "connect
    // failed" until then).
    let until = Instant::now() + Duration::from_secs(2);
    let sftp = loop {
        match client.sftp().await {
            Ok(sftp) => break sftp,
            Err(e) if Instant::now() < until => {
                assert!(e.to_string().contains("connect failed"), "{e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("sshd's session slot is still taken: {e}"),
        }
    };
    sftp.canonicalize(".").await.unwrap();
    println!("{opened} of 40 opens finished before their drop");
}

/// The fleet runner's `--put` and `--get`: a file to every host, and each
/// host's copy back into a directory of its own; a host whose file is
/// missing fails in "transfer", the others succeed.
#[tokio::test]
async fn the_fleet_puts_and_gets_files_on_every_host() {
    let Some(Internal {
        sshd,
        dir,
        _client,
        sftp: _sftp,
    }) = internal().await
    else {
        return;
    };
    let d = dir.path();
    let port = sshd.addr().port();
    let hosts = d.join("hosts");
    let user = sshd.user();
    std::fs::write(
        &hosts,
        format!("{user}@127.0.0.1:{port}\n{user}@localhost:{port}\n"),
    )
    .unwrap();
    let fleet = |args: &[&str]| {
        std::process::Command::new(support::example("fleet"))
            .args(["--json", "--accept-any-host-key", "-F", "none", "-i"])
            .arg(sshd.user_key_path())
            .arg("--hosts")
            .arg(&hosts)
            .args(args)
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .unwrap()
    };
    let source = random_file(d, "source", 700_000, 21);
    let remote = d.join("remote");
    let out = fleet(&[
        "--put",
        &format!("{}:{}", source.display(), remote.display()),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(sha256(&source), sha256(&remote));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines.iter().all(|l| l["transferred"] == 700_000),
        "{lines:?}"
    );
    let back = d.join("back");
    let out = fleet(&["--get", &format!("{}:{}", remote.display(), back.display())]);
    assert!(out.status.success(), "{out:?}");
    for host in ["127.0.0.1", "localhost"] {
        let copy = back.join(format!("{host}:{port}")).join("remote");
        assert_eq!(sha256(&source), sha256(&copy), "{host}");
    }
    let out = fleet(&[
        "--get",
        &format!("{}/missing:{}", d.display(), back.display()),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\"phase\":\"transfer\"") && text.contains("NO_SUCH_FILE"),
        "{text}"
    );
}

/// A server that answers once, then floods copies of that answer: they
/// are read and dropped as they come, memory stays flat, the next request
/// times out on time, and the channel and the server's process go when
/// the session is dropped.
#[test]
fn a_flood_of_replies_takes_no_memory() {
    if skip() || support::rerun_alone() {
        return;
    }
    let (sshd, script_dir) = hostile_sshd("spew", &[]);
    let marker = script_dir.path().to_str().unwrap().to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = support::connect_sshd(&sshd, Dialer::builder()).await;
        let before = support::rss();
        let limit = Duration::from_millis(300);
        let sftp = client.sftp_builder().timeout(limit).open().await.unwrap();
        sftp.canonicalize("/").await.unwrap();
        // The flood runs; sample the memory as it does, for a second to
        // settle and a second more to see it flat. (Measured here: 14.8 MiB
        // after the first second, the same after ten; a buffer that kept
        // the flood grew by a GiB in 4 s.)
        let mut peak = 0;
        let mut settled = 0;
        for i in 0..40 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            peak = peak.max(support::rss().saturating_sub(before));
            if i == 19 {
                settled = peak;
            }
        }
        assert!(peak < 32 << 20, "RSS grew {peak} bytes under the flood");
        assert!(
            peak - settled < 2 << 20,
            "RSS grew {settled} bytes in the flood's first second, {peak} by the second"
        );
        let (result, took, late) = beside_a_timer(limit, sftp.metadata("/")).await;
        let err = result.unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert!(
            took <= limit + Duration::from_millis(20) + late,
            "{took:?} (the runtime's own timer was {late:?} late)"
        );
        drop(sftp);
        let gone = support::wait_until(Duration::from_secs(3), || {
            client.sessions_in_use() == 0 && support::processes_with(&marker) == 0
        })
        .await;
        assert!(gone, "sessions {}", client.sessions_in_use());
        println!(
            "peak RSS growth under the flood: {:.1} MiB",
            peak as f64 / 1048576.0
        );
    });
}

/// The fleet's transfers through a pool: a host named three times in a
/// put and again in a get is logged in to once, and every copy is whole.
#[tokio::test]
async fn the_fleets_transfers_reuse_a_pools_connection() {
    use ssh_dial::fleet::{Fleet, Host};
    use ssh_dial::pool::Pool;
    use ssh_dial::{Auth, HostKeys};
    let Some(Internal { sshd, dir, .. }) = internal().await else {
        return;
    };
    let d = dir.path();
    let known = sshd
        .write_file("known_hosts", &sshd.known_hosts_line())
        .unwrap();
    let dialer = Dialer::builder()
        .timeout(Duration::from_secs(10))
        .host_keys(HostKeys::known_hosts(known))
        .build();
    let pool = Pool::new(dialer.clone(), Auth::key(sshd.user_key().clone()));
    let fleet = Fleet::builder(dialer)
        .concurrency(3)
        .pool(pool.clone())
        .build();
    let hosts: Vec<Host> = (0..3)
        .map(|_| Host::new(sshd.addr(), sshd.user()).unwrap())
        .collect();
    let source = random_file(d, "source", 300_000, 23);
    let remote = d.join("remote");
    let reports = fleet
        .put(hosts.clone(), &source, text(&remote))
        .collect()
        .await;
    assert!(reports.iter().all(|r| r.is_success()), "{reports:?}");
    assert_eq!(sha256(&source), sha256(&remote));
    let back = d.join("back");
    let reports = fleet
        .get(hosts[..1].to_vec(), text(&remote), &back)
        .collect()
        .await;
    assert!(reports.iter().all(|r| r.is_success()), "{reports:?}");
    let copy = back.join(hosts[0].addr()).join("remote");
    assert_eq!(sha256(&source), sha256(&copy));
    // The Internal's own client logged in once; the pool once more.
    assert_eq!(
        sshd.log().matches("Accepted publickey").count(),
        2,
        "{}",
        sshd.log()
    );
    assert_eq!(pool.state().statistics.dials, 1);
}

/// A server whose directory listing never ends: the listing fails at its
/// cap (a million entries) well before its timeout, the directory handle
/// is closed, and the session goes on.
#[tokio::test]
async fn a_listing_that_never_ends_fails_at_its_cap() {
    if skip() {
        return;
    }
    let (sshd, _dir) = hostile_sshd("endless", &[]);
    let client = support::connect_sshd(&sshd, Dialer::builder()).await;
    let sftp = client
        .sftp_builder()
        .timeout(Duration::from_secs(120))
        .open()
        .await
        .unwrap();
    let start = Instant::now();
    let err = sftp.read_dir("/").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("the listing passed 1000000 entries"),
        "{err}"
    );
    assert!(!err.is_timeout() && !err.is_closed(), "{err}");
    assert_eq!(err.operation(), "read_dir");
    sftp.canonicalize("/").await.unwrap();
    println!("failed at the cap after {:?}", start.elapsed());
}
