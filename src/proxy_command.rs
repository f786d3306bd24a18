//! `ProxyCommand`: a local command whose stdin and stdout carry the SSH
//! connection, as `ssh` runs it (`/bin/sh -c`), under the dial's deadline.
//!
//! Why a module of its own: the command is a process, and a process outlives
//! a dropped future unless someone ends it. `ssh` leaves that to the user's
//! terminal; a service cannot. So the command runs in a process group of its
//! own, and whoever drops the stream (the dial at its deadline or on an
//! error, the session when the client goes) kills the whole group (an
//! `ssh -W` and what it started, an `aws ssm` and its plugin) and reaps the
//! child, so that no process and no zombie is left. Its stderr is always
//! drained (a chatty proxy must not block on a full pipe) and its last
//! lines kept, bounded, for the error that names them.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::process_group;

/// The most of the command's stderr kept for an error message: its last
/// bytes, as its last lines say why it failed.
const STDERR_KEPT: usize = 2048;

/// How long the reaper waits for a killed group's leader to be reaped.
const REAP_WAIT: Duration = Duration::from_secs(10);

/// How long a command that has closed its stdout (it is on its way out) is
/// given to finish by itself, so that what it writes to stderr as it goes
/// (why it failed) is not cut off by the kill.
const EXIT_GRACE: Duration = Duration::from_millis(50);

/// The connection through a running `ProxyCommand`: reads its stdout,
/// writes its stdin. Dropping it kills the command's process group.
#[derive(Debug)]
pub(crate) struct ProxyStream {
    stdin: ChildStdin,
    stdout: ChildStdout,
    /// Kills the command's group when dropped.
    group: Group,
    stderr: Stderr,
}

/// The last bytes the command wrote to stderr.
#[derive(Debug, Clone)]
pub(crate) struct Stderr {
    kept: Arc<Mutex<VecDeque<u8>>>,
    /// True (or its sender gone) once stderr is at its end.
    ended: tokio::sync::watch::Receiver<bool>,
}

impl Stderr {
    /// What was kept, as text (lossy), trimmed.
    pub(crate) fn text(&self) -> String {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let (a, b) = kept.as_slices();
        let mut bytes = a.to_vec();
        bytes.extend_from_slice(b);
        String::from_utf8_lossy(&bytes).trim().to_owned()
    }

    /// Waits until stderr is at its end (every process holding it gone),
    /// but not past `until`; then what was kept.
    pub(crate) async fn text_by(&self, until: tokio::time::Instant) -> String {
        let mut ended = self.ended.clone();
        let _ = tokio::time::timeout_at(until, ended.wait_for(|e| *e)).await;
        self.text()
    }

    fn push(&self, bytes: &[u8]) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.extend(bytes);
        let excess = kept.len().saturating_sub(STDERR_KEPT);
        kept.drain(..excess);
    }
}

/// The command's process group: killed and its leader reaped when dropped.
#[derive(Debug)]
struct Group {
    child: Option<Child>,
    /// Set once the command has closed its stdout: it is on its way out.
    closed_stdout: bool,
    /// Its stderr's end: every process that held it is gone.
    stderr_ended: tokio::sync::watch::Receiver<bool>,
}

impl Drop for Group {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let runtime = tokio::runtime::Handle::try_current().ok();
        if let (true, Some(runtime)) = (self.closed_stdout, &runtime) {
            // Ending by itself: a moment to finish writing why (to stderr,
            // whose end says it has), then the group is killed all the same.
            // The leader is not reaped before the kill, so its id still
            // names its group.
            let mut ended = self.stderr_ended.clone();
            runtime.spawn(async move {
                let _ = tokio::time::timeout(EXIT_GRACE, ended.wait_for(|e| *e)).await;
                kill_and_reap(child).await;
            });
            return;
        }
        if let Some(pid) = child.id() {
            // The leader may have exited and its pid been reused only once
            // it is reaped, which happens below, after this.
            process_group::kill(pid);
        }
        let _ = child.start_kill();
        // Reap, so that no zombie is left: at once if it is already gone,
        // else from a task (the kill takes effect within moments).
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Some(runtime) = runtime {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(REAP_WAIT, child.wait()).await;
            });
        }
    }
}

/// Kills the child's process group (its id is the child's, still its own
/// until the child is reaped), then reaps the child.
async fn kill_and_reap(mut child: Child) {
    if let Some(pid) = child.id() {
        process_group::kill(pid);
    }
    let _ = child.start_kill();
    let _ = tokio::time::timeout(REAP_WAIT, child.wait()).await;
}

impl ProxyStream {
    /// Runs `command` with `/bin/sh -c` in a process group of its own, its
    /// stdin and stdout the connection, its stderr drained and kept.
    ///
    /// Must be called within a Tokio runtime (its child and stderr tasks).
    pub(crate) fn spawn(command: &str) -> io::Result<ProxyStream> {
        let mut child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let (stdin, stdout, mut err) =
            match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
                (Some(i), Some(o), Some(e)) => (i, o, e),
                _ => return Err(io::Error::other("the command's pipes were not set up")),
            };
        let (end, ended) = tokio::sync::watch::channel(false);
        let stderr = Stderr {
            kept: Arc::default(),
            ended,
        };
        let kept = stderr.clone();
        // Ends at the command's EOF on stderr: when its group is killed.
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                kept.push(&buf[..n]);
            }
            let _ = end.send(true);
        });
        Ok(ProxyStream {
            stdin,
            stdout,
            group: Group {
                child: Some(child),
                closed_stdout: false,
                stderr_ended: stderr.ended.clone(),
            },
            stderr,
        })
    }

    /// The command's stderr so far (its last bytes), for errors.
    pub(crate) fn stderr(&self) -> Stderr {
        self.stderr.clone()
    }

    /// The command's process id (its group's id), for tests.
    #[cfg(test)]
    fn pid(&self) -> Option<u32> {
        self.group.child.as_ref().and_then(Child::id)
    }
}

impl AsyncRead for ProxyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stdout).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            if buf.filled().len() == before && buf.remaining() > 0 {
                self.group.closed_stdout = true;
            }
        }
        read
    }
}

impl AsyncWrite for ProxyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stdin).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Whether a process with this pid exists (a zombie counts).
    fn exists(pid: u32) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    async fn gone(pid: u32) -> bool {
        for _ in 0..200 {
            if !exists(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn the_command_carries_the_bytes_both_ways() {
        let mut stream = ProxyStream::spawn("cat").unwrap();
        stream.write_all(b"through the proxy\n").await.unwrap();
        let mut buf = [0u8; 18];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"through the proxy\n");
    }

    /// The whole group dies with the stream, and the leader is reaped:
    /// a grandchild (`sleep`, in the background) included.
    #[tokio::test]
    async fn dropping_the_stream_kills_thegroup_and_reaps_it() {
        let stream = ProxyStream::spawn("sleep 30 & echo $! >&2; cat").unwrap();
        let leader = stream.pid().unwrap();
        let stderr = stream.stderr();
        let mut grandchild = None;
        for _ in 0..200 {
            if let Ok(pid) = stderr.text().parse::<u32>() {
                grandchild = Some(pid);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let grandchild = grandchild.expect("the background sleep's pid");
        assert!(exists(leader) && exists(grandchild));
        drop(stream);
        assert!(gone(leader).await, "the leader is left (or a zombie)");
        assert!(gone(grandchild).await, "the grandchild is left");
    }

    #[tokio::test]
    async fn stderr_keeps_its_last_bytes() {
        let stream =
            ProxyStream::spawn("head -c 10000 /dev/zero | tr '\\0' a >&2; echo last words >&2")
                .unwrap();
        let stderr = stream.stderr();
        for _ in 0..200 {
            if stderr.text().ends_with("last words") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let text = stderr.text();
        assert!(text.ends_with("last words"), "{text}");
        assert!(text.len() <= STDERR_KEPT, "{}", text.len());
    }
}
