//! Differential: ssh-dial's host key verdict against the real `ssh` on a few
//! hundred generated known_hosts files, under `StrictHostKeyChecking yes`
//! and `accept-new`, over one real sshd with Ed25519, ECDSA and RSA host
//! keys. The files mix the server's keys with others of every type,
//! patterns, negations, hashed names, ports, `@revoked` and
//! `@cert-authority` lines and junk; accept-new must also leave the same
//! file behind. `SSH_DIAL_SEED` replays a run, `SSH_DIAL_DIFF_FILES` sets
//! how many files (default 200).

use crate::support;

use std::path::PathBuf;
use std::sync::Arc;

use crate::support::{dial_verdict, ssh_verdict, Rng, Verdict};
use ssh_dial::testing::{ssh_keygen, Sshd};
use ssh_dial::HostKeys;

/// `|1|salt|hash` of `name`, as `ssh-keygen -H` writes it.
fn hashed(name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h");
    std::fs::write(
        &path,
        format!(
            "{name} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILg4zKcoTwbt5lqhVGjk64meBdTzYRuV14vdclMQCvs6\n"
        ),
    )
    .unwrap();
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-H", "-f"])
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&path).unwrap();
    text.split_whitespace().next().unwrap().to_owned()
}

fn public_line(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Both clients on one file, strict and accept-new: ssh's strict verdict,
/// and every divergence.
async fn judge_file(
    sshd: Arc<Sshd>,
    dir: PathBuf,
    n: usize,
    text: Vec<u8>,
) -> (Verdict, Vec<String>) {
    let mut divergences = Vec::new();
    let strict = dir.join(format!("strict{n}"));
    std::fs::write(&strict, &text).unwrap();
    let (theirs_path, ours_path) = (
        dir.join(format!("new_ssh{n}")),
        dir.join(format!("new_ours{n}")),
    );
    std::fs::write(&theirs_path, &text).unwrap();
    std::fs::write(&ours_path, &text).unwrap();
    let openssh = {
        let (sshd, strict, theirs_path) = (sshd.clone(), strict.clone(), theirs_path.clone());
        tokio::task::spawn_blocking(move || {
            (
                ssh_verdict(&sshd, "127.0.0.1", &strict, None, "yes", &[]),
                ssh_verdict(&sshd, "127.0.0.1", &theirs_path, None, "accept-new", &[]),
            )
        })
    };
    let (ours_strict, err_strict) =
        dial_verdict(&sshd, "127.0.0.1", HostKeys::known_hosts(&strict), false).await;
    let policy = HostKeys::accept_new(&ours_path).global_files(Vec::<PathBuf>::new());
    let (ours_new, err_new) = dial_verdict(&sshd, "127.0.0.1", policy, false).await;
    let ((ssh_strict, stderr_strict), (ssh_new, stderr_new)) = openssh.await.unwrap();
    if ssh_strict != ours_strict {
        divergences.push(format!(
            "file {n}, strict: ssh {ssh_strict:?}, ssh-dial {ours_strict:?} ({err_strict:?})\n{stderr_strict}{}",
            String::from_utf8_lossy(&text)
        ));
    }
    let (after_ssh, after_ours) = (
        std::fs::read(&theirs_path).unwrap(),
        std::fs::read(&ours_path).unwrap(),
    );
    if ssh_new != ours_new || after_ssh != after_ours {
        divergences.push(format!(
            "file {n}, accept-new: ssh {ssh_new:?}, ssh-dial {ours_new:?} ({err_new:?})\n{stderr_new}\
             before:\n{}\nafter ssh:\n{}\nafter ssh-dial:\n{}",
            String::from_utf8_lossy(&text),
            String::from_utf8_lossy(&after_ssh),
            String::from_utf8_lossy(&after_ours),
        ));
    }
    (ssh_strict, divergences)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_agree_with_openssh_on_generated_files() {
    if !support::openssh(&["ssh", "ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::builder()
        .host_key_types(&["ed25519", "ecdsa", "rsa"])
        .start()
        .unwrap();
    let port = sshd.addr().port();
    let dir = tempfile::tempdir().unwrap();
    let mut keys: Vec<String> = ["ed25519", "ecdsa", "rsa"]
        .iter()
        .map(|k| sshd.host_key_of(k).unwrap().to_owned())
        .collect();
    for kind in ["ed25519", "ecdsa", "rsa"] {
        let path = dir.path().join(format!("other_{kind}"));
        ssh_keygen(&path, kind, "").unwrap();
        keys.push(public_line(&path));
    }
    let with_port = format!("[127.0.0.1]:{port}");
    let names = [
        "127.0.0.1".to_owned(),
        with_port.clone(),
        with_port.clone(),
        format!("[127.0.0.1]:{}", port + 1),
        "[127.0.0.1]:*".into(),
        "127.0.0.*".into(),
        "*".into(),
        "localhost".into(),
        "!127.0.0.1".into(),
        format!("!{with_port}"),
        hashed("127.0.0.1"),
        hashed(&with_port),
    ];
    let seed = std::env::var("SSH_DIAL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0d1f_u64);
    let files: usize = std::env::var("SSH_DIAL_DIFF_FILES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut rng = Rng(seed);
    let sshd = Arc::new(sshd);
    let mut divergences = Vec::new();
    let mut tally = std::collections::BTreeMap::new();
    let mut running = tokio::task::JoinSet::new();
    for n in 0..files {
        let mut text = Vec::new();
        for _ in 0..rng.below(4) + 1 {
            let hosts = match rng.below(4) {
                0 => format!("{},{}", rng.pick(&names), rng.pick(&names)),
                _ => rng.pick(&names).clone(),
            };
            let marker = *rng.pick(&[
                "",
                "",
                "",
                "",
                "",
                "",
                "@revoked ",
                "@revoked ",
                "@cert-authority ",
            ]);
            let line = match rng.below(12) {
                0 => b"# caf\xe9, a Latin-1 comment".to_vec(),
                1 => format!("{hosts} ssh-ed25519 AAAAnotakey").into_bytes(),
                _ => format!("{marker}{hosts} {}", rng.pick(&keys)).into_bytes(),
            };
            text.extend_from_slice(&line);
            text.push(b'\n');
        }
        // A few files at a time: each waits mostly on processes.
        if running.len() >= 4 {
            let (ssh, found) = running.join_next().await.unwrap().unwrap();
            *tally.entry(format!("{ssh:?}")).or_insert(0) += 1;
            divergences.extend(found);
        }
        running.spawn(judge_file(sshd.clone(), dir.path().to_owned(), n, text));
    }
    while let Some(done) = running.join_next().await {
        let (ssh, found) = done.unwrap();
        *tally.entry(format!("{ssh:?}")).or_insert(0) += 1;
        divergences.extend(found);
    }
    eprintln!("{files} files, strict verdicts of ssh: {tally:?}");
    // Every verdict must have come up, or the files prove little.
    assert_eq!(tally.len(), 4, "{tally:?}");
    assert!(
        divergences.is_empty(),
        "{} divergences (seed {seed}):\n{}",
        divergences.len(),
        divergences.join("\n")
    );
    assert!(
        !sshd.log().is_empty(),
        "control: the sshd served the connections"
    );
}
