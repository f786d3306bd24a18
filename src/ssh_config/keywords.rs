//! The keywords OpenSSH knows, and what it checks of a line's value as it
//! reads a file, whether or not the line applies.

use super::jump::parse_proxy_jump;
use super::lexer::Args;
use super::shown;
use super::values::{
    parse_family, parse_flag, parse_int, parse_port, parse_pubkey, parse_strict, parse_time,
};

/// The most known_hosts files of each kind (`SSH_MAX_HOSTS_FILES`).
const MAX_HOSTS_FILES: usize = 32;

/// Checks what OpenSSH checks of each value as it reads a line, whether or
/// not the line applies: a bad value anywhere in a file is an error.
/// `keyword` is `None` for one OpenSSH does not know (refused or not when
/// resolving, as `IgnoreUnknown` says); every line's quotes are checked.
pub(super) fn validate(keyword: Option<&str>, rest: &[u8]) -> Result<(), String> {
    // Counted as they come: a line may hold millions of arguments.
    let mut count = 0usize;
    let mut first: Option<Vec<u8>> = None;
    let (mut empty, mut none) = (false, false);
    for arg in Args::new(rest) {
        let arg = arg?;
        empty |= arg.is_empty();
        none |= arg.eq_ignore_ascii_case(b"none");
        count += 1;
        if first.is_none() {
            first = Some(arg);
        }
    }
    let Some(keyword) = keyword else {
        return Ok(());
    };
    let first = first.as_deref().unwrap_or_default();
    let missing = || Err("missing argument".to_owned());
    match keyword {
        "host" | "match" | "include" => {
            if keyword == "host" && empty {
                return Err("empty argument".to_owned());
            }
            return Ok(());
        }
        "port" => parse_port(first).map(drop)?,
        "identitiesonly" | "hashknownhosts" | "passwordauthentication" | "batchmode" => {
            parse_flag(first).map(drop)?
        }
        "connecttimeout" | "serveraliveinterval" => parse_time(first).map(drop)?,
        "connectionattempts" | "serveralivecountmax" => parse_int(first).map(drop)?,
        "stricthostkeychecking" => parse_strict(first).map(drop)?,
        "addressfamily" => parse_family(first).map(drop)?,
        "pubkeyauthentication" | "dsaauthentication" => parse_pubkey(first).map(drop)?,
        "hostname"
        | "user"
        | "hostkeyalias"
        | "preferredauthentications"
        | "identityfile"
        | "identityfile2"
        | "certificatefile"
        | "identityagent"
        | "ignoreunknown"
            if first.is_empty() =>
        {
            return missing()
        }
        "identityagent" => {
            if first.starts_with(b"$")
                && !first.starts_with(b"${")
                && !first[1..]
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
            {
                return Err(format!("invalid environment name {}", shown(first)));
            }
        }
        "userknownhostsfile" | "globalknownhostsfile" => {
            if count == 0 {
                return missing();
            }
            if empty {
                return Err("empty argument".to_owned());
            }
            if count > 1 && none {
                return Err("\"none\" argument must appear alone".to_owned());
            }
            if count > MAX_HOSTS_FILES {
                return Err("too many files".to_owned());
            }
            return Ok(());
        }
        "proxyjump" => parse_proxy_jump(rest).map(drop)?,
        _ => return Ok(()),
    }
    if keyword_takes_one(keyword) && count > 1 {
        return Err(format!("keyword {keyword} extra arguments at end of line"));
    }
    Ok(())
}

fn keyword_takes_one(keyword: &str) -> bool {
    matches!(
        keyword,
        "port"
            | "identitiesonly"
            | "hashknownhosts"
            | "passwordauthentication"
            | "batchmode"
            | "connecttimeout"
            | "serveraliveinterval"
            | "connectionattempts"
            | "serveralivecountmax"
            | "stricthostkeychecking"
            | "addressfamily"
            | "pubkeyauthentication"
            | "dsaauthentication"
            | "hostname"
            | "user"
            | "hostkeyalias"
            | "preferredauthentications"
            | "identityfile"
            | "identityfile2"
            | "certificatefile"
            | "identityagent"
            | "ignoreunknown"
    )
}

/// The lowercase spelling of a keyword OpenSSH knows, if it knows it.
pub(super) fn canonical(keyword: &[u8]) -> Option<&'static str> {
    static SORTED: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    let sorted = SORTED.get_or_init(|| {
        let mut all: Vec<&'static str> = HONOURED.iter().chain(KEYWORDS).copied().collect();
        all.sort_unstable();
        all
    });
    let mut buf = [0u8; 40];
    let lower = buf.get_mut(..keyword.len())?;
    lower.copy_from_slice(keyword);
    lower.make_ascii_lowercase();
    let lower = &*lower;
    sorted
        .binary_search_by(|k| k.as_bytes().cmp(lower))
        .ok()
        .map(|i| sorted[i])
}

/// The keywords ssh-dial acts on.
const HONOURED: &[&str] = &[
    "host",
    "match",
    "include",
    "hostname",
    "port",
    "user",
    "identityfile",
    "identityfile2",
    "identitiesonly",
    "identityagent",
    "certificatefile",
    "proxyjump",
    "proxycommand",
    "connecttimeout",
    "connectionattempts",
    "serveraliveinterval",
    "serveralivecountmax",
    "userknownhostsfile",
    "globalknownhostsfile",
    "stricthostkeychecking",
    "hashknownhosts",
    "hostkeyalias",
    "addressfamily",
    "preferredauthentications",
    "pubkeyauthentication",
    "dsaauthentication",
    "passwordauthentication",
    "batchmode",
    "ignoreunknown",
];

/// The keywords OpenSSH 9.2 knows (with Debian's GSSAPI additions) that
/// ssh-dial keeps as read and does not act on.
const KEYWORDS: &[&str] = &[
    "protocol",
    "cipher",
    "fallbacktorsh",
    "globalknownhostsfile2",
    "rhostsauthentication",
    "userknownhostsfile2",
    "useroaming",
    "usersh",
    "useprivilegedport",
    "afstokenpassing",
    "kerberosauthentication",
    "kerberostgtpassing",
    "rsaauthentication",
    "rhostsrsaauthentication",
    "compressionlevel",
    "gssapiauthentication",
    "gssapidelegatecredentials",
    "gssapikeyexchange",
    "gssapiclientidentity",
    "gssapiserveridentity",
    "gssapirenewalforcesrekey",
    "gssapitrustdns",
    "gssapikexalgorithms",
    "pkcs11provider",
    "smartcarddevice",
    "forwardagent",
    "forwardx11",
    "forwardx11trusted",
    "forwardx11timeout",
    "exitonforwardfailure",
    "xauthlocation",
    "gatewayports",
    "kbdinteractiveauthentication",
    "kbdinteractivedevices",
    "challengeresponseauthentication",
    "skeyauthentication",
    "tisauthentication",
    "hostbasedauthentication",
    "addkeystoagent",
    "ciphers",
    "macs",
    "remoteforward",
    "localforward",
    "permitremoteopen",
    "escapechar",
    "checkhostip",
    "compression",
    "tcpkeepalive",
    "keepalive",
    "numberofpasswordprompts",
    "syslogfacility",
    "loglevel",
    "logverbose",
    "dynamicforward",
    "hostkeyalgorithms",
    "casignaturealgorithms",
    "bindaddress",
    "bindinterface",
    "clearallforwardings",
    "enablesshkeysign",
    "verifyhostkeydns",
    "nohostauthenticationforlocalhost",
    "rekeylimit",
    "sendenv",
    "setenv",
    "controlpath",
    "controlmaster",
    "controlpersist",
    "tunnel",
    "tunneldevice",
    "localcommand",
    "permitlocalcommand",
    "remotecommand",
    "visualhostkey",
    "kexalgorithms",
    "ipqos",
    "requesttty",
    "sessiontype",
    "stdinnull",
    "forkafterauthentication",
    "proxyusefdpass",
    "canonicaldomains",
    "canonicalizefallbacklocal",
    "canonicalizehostname",
    "canonicalizemaxdots",
    "canonicalizepermittedcnames",
    "streamlocalbindmask",
    "streamlocalbindunlink",
    "revokedhostkeys",
    "fingerprinthash",
    "updatehostkeys",
    "hostbasedacceptedalgorithms",
    "hostbasedkeytypes",
    "pubkeyacceptedalgorithms",
    "pubkeyacceptedkeytypes",
    "securitykeyprovider",
    "knownhostscommand",
    "requiredrsasize",
    "enableescapecommandline",
];
