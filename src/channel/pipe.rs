//! A channel's incoming bytes for one stream, bounded.

use std::collections::VecDeque;
use std::task::Waker;

use bytes::{Bytes, BytesMut};

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
    store: Store,
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
            store: Store::Contiguous(BytesMut::new()),
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
            // What arrives is read as it came: kept as the pieces russh
            // hands over, never copied on the way in.
            store: Store::Chunks(VecDeque::new(), 0),
            ..Pipe::new(false, None)
        }
    }

    /// Whether its channel is to pause until the reader takes some.
    pub(crate) fn is_full(&self) -> bool {
        self.pause_at.is_some_and(|at| self.len() >= at)
    }

    pub(crate) fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Discards what is buffered and all that comes later.
    pub(crate) fn discard(&mut self) {
        self.null = true;
        self.store = Store::Contiguous(BytesMut::new());
        self.gaps.clear();
    }

    /// Buffers `data`, up to the cap; returns whether some was dropped.
    pub(super) fn push(&mut self, data: &Bytes) -> bool {
        if self.null {
            return false;
        }
        let room = self
            .cap
            .map_or(usize::MAX, |c| c.saturating_sub(self.len()));
        let take = data.len().min(room);
        self.store.push(data, take);
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
            None if self.len() == 0 => Chunk::Empty,
            None => Chunk::Data(self.len()),
        }
    }

    /// Takes up to `n` bytes from the front (at most what [`next`](Self::next) allowed).
    pub(crate) fn take(&mut self, n: usize) -> Bytes {
        let taken = self.store.take(n);
        self.read += taken.len() as u64;
        taken
    }

    /// Copies up to `n` bytes from the front into `into`; how many.
    pub(crate) fn copy_to(&mut self, into: &mut tokio::io::ReadBuf<'_>, n: usize) -> usize {
        let copied = self.store.copy_to(into, n);
        self.read += copied as u64;
        copied
    }

    /// Unread bytes.
    pub(crate) fn len(&self) -> usize {
        match &self.store {
            Store::Contiguous(buf) => buf.len(),
            Store::Chunks(_, len) => *len,
        }
    }

    /// Everything unread, as one buffer, and whether bytes were dropped.
    pub(crate) fn take_all(&mut self) -> (BytesMut, bool) {
        let truncated = !self.gaps.is_empty();
        self.gaps.clear();
        let all = self.store.take_all();
        self.read += all.len() as u64;
        (all, truncated)
    }
}

/// Where a pipe keeps its unread bytes.
#[derive(Debug)]
enum Store {
    /// One buffer: a command's output, which `output` takes whole.
    Contiguous(BytesMut),
    /// The pieces as they came, and their total: a tunnel's bytes, read
    /// as they arrive.
    Chunks(VecDeque<Bytes>, usize),
}

impl Store {
    fn push(&mut self, data: &Bytes, take: usize) {
        if take == 0 {
            return;
        }
        match self {
            Store::Contiguous(buf) => buf.extend_from_slice(&data[..take]),
            Store::Chunks(chunks, len) => {
                chunks.push_back(data.slice(..take));
                *len += take;
            }
        }
    }

    fn take(&mut self, n: usize) -> Bytes {
        match self {
            Store::Contiguous(buf) => buf.split_to(n.min(buf.len())).freeze(),
            Store::Chunks(chunks, len) => match chunks.front_mut() {
                Some(front) => {
                    let taken = front.split_to(n.min(front.len()));
                    if front.is_empty() {
                        chunks.pop_front();
                    }
                    *len -= taken.len();
                    taken
                }
                None => Bytes::new(),
            },
        }
    }

    fn copy_to(&mut self, into: &mut tokio::io::ReadBuf<'_>, n: usize) -> usize {
        let mut copied = 0;
        let mut want = n.min(into.remaining());
        match self {
            Store::Contiguous(buf) => {
                let k = want.min(buf.len());
                into.put_slice(&buf[..k]);
                bytes::Buf::advance(buf, k);
                copied = k;
            }
            Store::Chunks(chunks, len) => {
                while want > 0 {
                    let Some(front) = chunks.front_mut() else {
                        break;
                    };
                    let k = want.min(front.len());
                    into.put_slice(&front[..k]);
                    bytes::Buf::advance(front, k);
                    if front.is_empty() {
                        chunks.pop_front();
                    }
                    copied += k;
                    want -= k;
                }
                *len -= copied;
            }
        }
        copied
    }

    fn take_all(&mut self) -> BytesMut {
        match std::mem::replace(self, Store::Contiguous(BytesMut::new())) {
            Store::Contiguous(buf) => buf,
            Store::Chunks(chunks, len) => {
                let mut all = BytesMut::with_capacity(len);
                for chunk in chunks {
                    all.extend_from_slice(&chunk);
                }
                *self = Store::Chunks(VecDeque::new(), 0);
                all
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_keeps_up_to_its_cap_and_marks_the_gap() {
        let b = |s: &'static [u8]| Bytes::from_static(s);
        let mut pipe = Pipe::new(false, Some(4));
        assert!(!pipe.push(&b(b"ab")));
        assert!(pipe.push(&b(b"cdef")));
        assert!(pipe.push(&b(b"gh")));
        assert_eq!(pipe.len(), 4);
        assert_eq!(pipe.gaps, [(4, 4)]);
        // Read up to the gap, then the gap, then what came after it.
        assert!(matches!(pipe.next(), Chunk::Data(4)));
        assert_eq!(&pipe.take(3)[..], b"abc");
        assert!(matches!(pipe.next(), Chunk::Data(1)));
        assert_eq!(&pipe.take(9)[..], b"d");
        assert!(!pipe.push(&b(b"ijk")));
        assert!(matches!(pipe.next(), Chunk::Gap(4)));
        assert!(matches!(pipe.next(), Chunk::Data(3)));
        let (rest, truncated) = pipe.take_all();
        assert_eq!((&rest[..], truncated), (&b"ijk"[..], false));
        let mut null = Pipe::new(true, Some(4));
        assert!(!null.push(&b(b"abcdefgh")));
        assert_eq!(null.len(), 0);
    }
}
