//! Whole configurations resolved, as `ssh -G` resolves them.

use super::*;

fn resolve(text: &str, dest: &str) -> HostConfig {
    SshConfig::parse(text).unwrap().resolve(dest).unwrap()
}

fn resolve_bytes(text: &[u8], dest: &str) -> Result<HostConfig, ConfigError> {
    let local = Local::current();
    let mut loader = Loader::new(&local);
    loader.root_text("(bytes)", text)?;
    SshConfig::new(loader.finish(), local).resolve(dest)
}

#[test]
fn the_first_obtained_value_wins() {
    let c = resolve("Host db\n Port 2222\nHost *\n Port 22\n User u\n", "db");
    assert_eq!((c.port(), c.user()), (2222, "u"));
}

#[test]
fn a_match_block_does_not_leak_into_the_host_block_above() {
    let text = "Host web\n  User alice\nMatch user nobody-here\n  Port 2200\n";
    let c = resolve(text, "web");
    assert_eq!(c.port(), 22);
    assert_eq!(c.user(), "alice");
}

#[test]
fn negated_patterns_void_the_block() {
    let text = "Host *.example.com !bad.example.com\n  User ok\n";
    assert_eq!(resolve(text, "good.example.com").user(), "ok");
    assert_ne!(resolve(text, "bad.example.com").user(), "ok");
}

#[test]
fn equals_and_quotes_and_hostname_tokens() {
    let c = resolve("Host=x\n  HostName = \"%h.internal\"\n  Port=2022\n", "x");
    assert_eq!((c.hostname(), c.port()), ("x.internal", 2022));
    // strdelim's corners: a leading `=`, a quoted keyword.
    assert_eq!(resolve("=Port 2200\n", "x").port(), 2200);
    assert_eq!(resolve("\"Port\" 2201\n", "x").port(), 2201);
}

#[test]
fn proxy_jump_chains_parse_and_print_as_ssh_does() {
    let c = resolve("Host t\n  ProxyJump a,bob@b:2222,[::1]:22\n", "t");
    let hops: Vec<String> = c.proxy_jump().iter().map(|h| h.to_string()).collect();
    assert_eq!(hops, ["a", "bob@b:2222", "[::1]:22"]);
    assert!(resolve("Host t\n ProxyJump none\n", "t")
        .proxy_jump()
        .is_empty());
}

/// OpenSSH 9.2 cuts a `ProxyJump` value at a `#` and at the first
/// blank after its first byte (its `rtrim`), as `ssh -G` shows; the
/// differential test checks these against the real `ssh`.
#[test]
fn proxy_jump_values_are_cut_where_ssh_cuts_them() {
    for (value, want) in [
        ("b1 , b2", vec!["b1"]),
        ("b1,b2 # c,d", vec!["b1", "b2"]),
        ("b1,b2#x", vec!["b1", "b2"]),
        ("b1,b2 x,y", vec!["b1", "b2"]),
        ("u x@b", vec!["u"]),
        ("= b1", vec!["b1"]),
    ] {
        let c = resolve(&format!("Host t\n  ProxyJump {value}\n"), "t");
        let hops: Vec<&str> = c.proxy_jump().iter().map(|h| h.host()).collect();
        assert_eq!(hops, want, "{value:?}");
    }
    for bad in ["b1, b2", "b1,", ",b1", "b1,,b2"] {
        let e = SshConfig::parse(&format!("Host t\n  ProxyJump {bad}\n")).unwrap_err();
        assert!(e.to_string().contains("ProxyJump"), "{bad:?}: {e}");
    }
    assert_eq!(JumpHost::parse_chain("b1 , b2").unwrap().len(), 1);
    assert!(JumpHost::parse_chain("NONE").unwrap().is_empty());
}

#[test]
fn bad_values_are_errors_that_name_the_line() {
    for text in [
        "Port 0\n",
        "Port x\n",
        "ConnectTimeout 5q\n",
        "Hostnme x\n",
        "Host a\n  StrictHostKeyChecking maybe\n",
        "User \"unterminated\n",
        "Match exec true\n  User x\n",
        "Match canonical\n  User x\n",
        "Match host a \"\" user b\n  User x\n",
    ] {
        let e = SshConfig::parse(text)
            .and_then(|c| c.resolve("h"))
            .unwrap_err();
        assert!(e.to_string().contains("line "), "{text:?}: {e}");
        assert!(!e.is_invalid_input(), "{text:?}: {e}");
    }
}

/// A line ends at its first NUL, as a C string does in OpenSSH: the
/// host dialed is the one before it. (Before, the NUL and what followed
/// stayed in the value.)
#[test]
fn a_nul_ends_the_line() {
    let c = resolve_bytes(b"Host x\n  HostName real.example\0.evil.example\n", "x").unwrap();
    assert_eq!(c.hostname(), "real.example");
    // A quote cut off by the NUL is unterminated, as in OpenSSH.
    assert!(resolve_bytes(b"User \"a\0b\"\n", "x").is_err());
}

/// File names are bytes: one that is not UTF-8 names the file it names
/// (before, it became U+FFFD and named another).
#[test]
fn file_names_keep_their_bytes() {
    let c = resolve_bytes(
        b"IdentityFile /keys/caf\xe9\nUserKnownHostsFile /kh/\xff\nIdentityAgent /a/\xfe\n",
        "x",
    )
    .unwrap();
    assert_eq!(
        c.identity_paths()[0].as_os_str().as_bytes(),
        b"/keys/caf\xe9"
    );
    assert_eq!(
        c.user_known_hosts_paths[0].as_os_str().as_bytes(),
        b"/kh/\xff"
    );
    assert_eq!(
        c.agent_path.as_deref().unwrap().as_os_str().as_bytes(),
        b"/a/\xfe"
    );
    // Shown lossily.
    assert_eq!(c.identity_files()[0], "/keys/caf\u{fffd}");
    // A pattern's bytes match bytes: \xff is not U+FFFD.
    let c = resolve_bytes(b"Host \xff\n  User matched\n", "\u{fffd}").unwrap();
    assert_ne!(c.user(), "matched");
    // A value that must be text is refused, naming the line.
    let e = resolve_bytes(b"HostName caf\xe9\n", "x").unwrap_err();
    assert!(e.to_string().contains("line 1"), "{e}");
    assert!(e.to_string().contains("UTF-8"), "{e}");
}

/// `ssh` refuses a `~/.ssh/config` others can write to, or that
/// belongs to someone else ("Bad owner or permissions"); `load_default`
/// did not check it (included files were checked already). The system
/// file is not checked, as in `ssh`.
#[test]
fn a_user_config_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let user = dir.path().join("config");
    let system = dir.path().join("ssh_config");
    std::fs::write(&user, "Host x\n  Port 2200\n").unwrap();
    std::fs::write(&system, "Port 2201\n").unwrap();
    let load = || SshConfig::load_user_and_system(&user, &system, Local::current());
    for mode in [0o600, 0o644, 0o755] {
        std::fs::set_permissions(&user, std::fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(
            load().unwrap().resolve("x").unwrap().port(),
            2200,
            "{mode:o}"
        );
    }
    for mode in [0o666, 0o620, 0o602] {
        std::fs::set_permissions(&user, std::fs::Permissions::from_mode(mode)).unwrap();
        let e = load().unwrap_err();
        assert!(
            e.to_string().contains("bad owner or permissions"),
            "{mode:o}: {e}"
        );
    }
    std::fs::set_permissions(&user, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&system, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(load().unwrap().resolve("y").unwrap().port(), 2201);
    // `ssh -F` does not check the file it is given either.
    std::fs::set_permissions(&user, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert!(SshConfig::load(&user).is_ok());
}

/// A file included many times is read and kept once; a file that
/// includes itself is refused, as OpenSSH refuses it (at depth 16).
#[test]
fn included_files_are_kept_once() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let leaf = dir.path().join("leaf");
    std::fs::write(&leaf, "Host leaf\n  Port 2200\n").unwrap();
    std::fs::set_permissions(&leaf, std::fs::Permissions::from_mode(0o600)).unwrap();
    let includes = format!("Include {}\n", leaf.display()).repeat(1000);
    let config = SshConfig::parse(&includes).unwrap();
    assert_eq!(config.files.files.len(), 2);
    assert_eq!(config.resolve("leaf").unwrap().port(), 2200);

    let selfish = dir.path().join("selfish");
    std::fs::write(&selfish, format!("Include {}\n", selfish.display())).unwrap();
    std::fs::set_permissions(&selfish, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = SshConfig::load(&selfish).unwrap_err();
    assert!(e.to_string().contains("recursive"), "{e}");
}

/// A FIFO or a directory where a file should be is refused at once, not
/// waited on (before, opening a FIFO with no writer blocked the load
/// for good); `/dev/null` is an empty configuration, as for
/// `ssh -F /dev/null`.
#[test]
fn special_files_are_refused_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let e = SshConfig::load(&fifo).unwrap_err();
    assert!(e.to_string().contains("not a file"), "{e}");
    let e = SshConfig::parse(&format!("Include {}\n", fifo.display())).unwrap_err();
    assert!(e.to_string().contains("not a file"), "{e}");
    let e = SshConfig::load(dir.path()).unwrap_err();
    assert!(e.to_string().contains("not a file"), "{e}");
    assert_eq!(
        SshConfig::load("/dev/null")
            .unwrap()
            .resolve("x")
            .unwrap()
            .port(),
        22
    );
}

/// `Match exec` does not hand the shell a `%r` or `%h` it would read as
/// more than a name, wherever the name came from (here the file).
#[test]
fn match_exec_will_not_run_names_a_shell_would_act_on() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    for (user, host) in [("a;touch ran;#", "x"), ("u", "x$(touch${IFS}ran)")] {
        let text = format!(
            "User \"{user}\"\nHostName {host}\nMatch exec \"cd {} && true %r %h\"\n  Port 2200\n",
            dir.path().display()
        );
        let e = SshConfig::parse(&text)
            .unwrap()
            .allow_match_exec(true)
            .resolve("x")
            .unwrap_err();
        assert!(e.to_string().contains("Match exec not run"), "{e}");
        assert!(!marker.exists());
    }
    // `%%r` is no token: the command runs.
    let ok = SshConfig::parse("User \"a;b\"\nMatch exec \"true %%r\"\n  Port 2200\n")
        .unwrap()
        .allow_match_exec(true)
        .resolve("x")
        .unwrap();
    assert_eq!(ok.port(), 2200);
}

#[test]
fn messages_escape_and_cut_what_the_file_says() {
    let long = "\x1b[31m".repeat(100);
    let e = SshConfig::parse(&format!("{long} x\n"))
        .and_then(|c| c.resolve("h"))
        .unwrap_err();
    let shown = e.to_string();
    assert!(!shown.contains('\x1b'), "{shown}");
    assert!(shown.len() < 300, "{shown}");
}
