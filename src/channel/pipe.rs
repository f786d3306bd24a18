//! A channel's incoming bytes for one stream, bounded.

use std::collections::VecDeque;
use std::task::Waker;

use bytes::BytesMut;

/// One stream's bytes, buffered for its reader, in one contiguous buffer:
/// `output` takes it as the result without a copy (a copy would hold the
/// cap twice), and a reader takes bytes from its front.
#[derive(Debug)]
pub(crate) struct Pipe {
    /// Discard everything (`Stdio::null`, or the reader is gone).
    pub(crate) null: bool,
    /// The most unread bytes kept; `None` for no limit.
    cap: Option<usize>,
    /// For a channel that pauses instead (see `Overflow::Pause`): the
    /// unread bytes at which it does.
    pause_at: Option<usize>,
    /// The unread bytes.
    pub(crate) buf: BytesMut,
    /// Where bytes were dropped past the cap: the count of bytes kept before
    /// the place (over the stream's life), and how many were dropped there.
    pub(crate) gaps: VecDeque<(u64, u64)>,
    /// Bytes kept so far, and bytes read so far, over the stream's life.
    kept: u64,
    pub(crate) read: u64,
    pub(crate) eof: bool,
    pub(crate) waker: Option<Waker>,
}

/// What a pipe has next for its reader.
#[derive(Debug)]
pub(crate) enum Chunk {
    /// Up to this many bytes may be read before the next gap.
    Data(usize),
    /// This many bytes were dropped here, past the cap.
    Gap(u64),
    Empty,
}

impl Pipe {
    pub(crate) fn new(null: bool, cap: Option<usize>) -> Self {
        Pipe {
            null,
            cap,
            pause_at: None,
            buf: BytesMut::new(),
            gaps: VecDeque::new(),
            kept: 0,
            read: 0,
            eof: false,
            waker: None,
        }
    }

    /// A pipe that keeps every byte, and is full (its channel pauses) at
    /// `at` unread bytes.
    pub(crate) fn pausing(at: usize) -> Self {
        Pipe {
            pause_at: Some(at),
            ..Pipe::new(false, None)
        }
    }

    /// Whether its channel is to pause until the reader takes some.
    pub(crate) fn is_full(&self) -> bool {
        self.pause_at.is_some_and(|at| self.buf.len() >= at)
    }

    pub(crate) fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Discards what is buffered and all that comes later.
    pub(crate) fn discard(&mut self) {
        self.null = true;
        self.buf = BytesMut::new();
        self.gaps.clear();
    }

    /// Buffers `data`, up to the cap; returns whether some was dropped.
    pub(super) fn push(&mut self, data: &[u8]) -> bool {
        if self.null {
            return false;
        }
        let room = self
            .cap
            .map_or(usize::MAX, |c| c.saturating_sub(self.buf.len()));
        let take = data.len().min(room);
        self.buf.extend_from_slice(&data[..take]);
        self.kept += take as u64;
        let dropped = (data.len() - take) as u64;
        if dropped > 0 {
            match self.gaps.back_mut() {
                Some((at, n)) if *at == self.kept => *n += dropped,
                _ => self.gaps.push_back((self.kept, dropped)),
            }
        }
        self.wake();
        dropped > 0
    }

    /// What the reader gets next.
    pub(crate) fn next(&mut self) -> Chunk {
        match self.gaps.front() {
            Some(&(at, n)) if at == self.read => {
                self.gaps.pop_front();
                Chunk::Gap(n)
            }
            Some(&(at, _)) => Chunk::Data((at - self.read) as usize),
            None if self.buf.is_empty() => Chunk::Empty,
            None => Chunk::Data(self.buf.len()),
        }
    }

    /// Takes up to `n` bytes from the front (at most what [`next`](Self::next) allowed).
    pub(crate) fn take(&mut self, n: usize) -> BytesMut {
        let n = n.min(self.buf.len());
        self.read += n as u64;
        self.buf.split_to(n)
    }

    /// Drops `n` bytes from the front, read by copying them.
    pub(crate) fn advance(&mut self, n: usize) {
        bytes::Buf::advance(&mut self.buf, n);
        self.read += n as u64;
    }

    /// Everything unread, as one buffer, and whether bytes were dropped.
    pub(crate) fn take_all(&mut self) -> (BytesMut, bool) {
        let truncated = !self.gaps.is_empty();
        self.gaps.clear();
        let all = std::mem::take(&mut self.buf);
        self.read += all.len() as u64;
        (all, truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_keeps_up_to_its_cap_and_marks_the_gap() {
        let mut pipe = Pipe::new(false, Some(4));
        assert!(!pipe.push(b"ab"));
        assert!(pipe.push(b"cdef"));
        assert!(pipe.push(b"gh"));
        assert_eq!(&pipe.buf[..], b"abcd");
        assert_eq!(pipe.gaps, [(4, 4)]);
        // Read up to the gap, then the gap, then what came after it.
        assert!(matches!(pipe.next(), Chunk::Data(4)));
        assert_eq!(&pipe.take(3)[..], b"abc");
        assert!(matches!(pipe.next(), Chunk::Data(1)));
        assert_eq!(&pipe.take(9)[..], b"d");
        assert!(!pipe.push(b"ijk"));
        assert!(matches!(pipe.next(), Chunk::Gap(4)));
        assert!(matches!(pipe.next(), Chunk::Data(3)));
        let (rest, truncated) = pipe.take_all();
        assert_eq!((&rest[..], truncated), (&b"ijk"[..], false));
        let mut null = Pipe::new(true, Some(4));
        assert!(!null.push(b"abcdefgh"));
        assert!(null.buf.is_empty());
    }
}
