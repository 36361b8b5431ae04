//! File I/O on threads of its own, so that on a machine with a spare core the kernel's copying
//! overlaps the cryptography: [`ReadAhead`] reads blocks ahead of the thread that consumes them,
//! [`WriteBehind`] writes blocks behind the thread that produces them. At most [`IN_FLIGHT`]
//! blocks of [`BLOCK`] bytes wait on either side, so memory stays bounded whatever the file size.

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// The unit handed between threads.
pub(crate) const BLOCK: usize = 1 << 20;
/// Blocks queued between the two threads.
pub(crate) const IN_FLIGHT: usize = 4;

/// A [`Read`] whose source is read on another thread, up to [`IN_FLIGHT`] blocks ahead. A read
/// fills every buffer it is given unless the source ends (or fails) first.
pub(crate) struct ReadAhead {
    blocks: Receiver<io::Result<Vec<u8>>>,
    /// Emptied blocks, returned to the reading thread for reuse.
    spent: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
    ended: bool,
    /// An error that came after bytes a read already returned: the next read's.
    failed: Option<io::Error>,
}

impl ReadAhead {
    pub(crate) fn new(mut source: impl Read + Send + 'static) -> Self {
        let (send, blocks) = sync_channel(IN_FLIGHT);
        let (spent, reuse) = sync_channel::<Vec<u8>>(IN_FLIGHT + 2);
        std::thread::spawn(move || {
            loop {
                let mut block = reuse.try_recv().unwrap_or_default();
                block.resize(BLOCK, 0);
                let (n, failed) = fill(&mut source, &mut block);
                block.truncate(n);
                // An empty block is the end; the bytes before an error come before it. A
                // consumer that went away wants nothing more.
                if (n > 0 || failed.is_none()) && (send.send(Ok(block)).is_err() || n == 0) {
                    return;
                }
                if let Some(e) = failed {
                    let _ = send.send(Err(e));
                    return;
                }
            }
        });
        Self {
            blocks,
            spent,
            current: Vec::new(),
            at: 0,
            ended: false,
            failed: None,
        }
    }

    /// Waits for the next block; false at the end of the source.
    fn next_block(&mut self) -> io::Result<bool> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.ended {
            return Ok(false);
        }
        let next = self
            .blocks
            .recv()
            .map_err(|_| io::Error::other("the reading thread stopped"))??;
        self.ended = next.is_empty();
        let spent = std::mem::replace(&mut self.current, next);
        let _ = self.spent.try_send(spent);
        self.at = 0;
        Ok(!self.ended)
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_vectored(&mut [io::IoSliceMut::new(buf)])
    }

    fn read_vectored(&mut self, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
        let mut total = 0;
        for buf in bufs.iter_mut() {
            let mut done = 0;
            while done < buf.len() {
                if self.at == self.current.len() {
                    match self.next_block() {
                        Ok(true) => {}
                        Ok(false) => return Ok(total + done),
                        Err(e) if total + done == 0 => return Err(e),
                        Err(e) => {
                            self.failed = Some(e);
                            return Ok(total + done);
                        }
                    }
                }
                let n = (buf.len() - done).min(self.current.len() - self.at);
                buf[done..done + n].copy_from_slice(&self.current[self.at..self.at + n]);
                self.at += n;
                done += n;
            }
            total += done;
        }
        Ok(total)
    }
}

/// Fills `block` from `source` unless it ends or fails first: the number of bytes read, and
/// the error that stopped it.
fn fill(source: &mut impl Read, block: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut n = 0;
    while n < block.len() {
        match source.read(&mut block[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

/// A [`Write`] whose sink is written on another thread, up to [`IN_FLIGHT`] blocks behind.
/// [`WriteBehind::finish`] waits for every byte to reach the sink and hands the sink back; an
/// error of the sink surfaces at the next write or at `finish`.
pub(crate) struct WriteBehind<W> {
    blocks: Option<SyncSender<Vec<u8>>>,
    reuse: Receiver<Vec<u8>>,
    current: Vec<u8>,
    thread: Option<JoinHandle<io::Result<W>>>,
}

impl<W: Write + Send + 'static> WriteBehind<W> {
    pub(crate) fn new(mut sink: W) -> Self {
        let (blocks, receive) = sync_channel::<Vec<u8>>(IN_FLIGHT);
        let (give_back, reuse) = sync_channel(IN_FLIGHT + 2);
        let thread = std::thread::spawn(move || {
            for mut block in receive {
                sink.write_all(&block)?;
                block.clear();
                let _ = give_back.try_send(block);
            }
            sink.flush()?;
            Ok(sink)
        });
        Self {
            blocks: Some(blocks),
            reuse,
            current: Vec::with_capacity(BLOCK),
            thread: Some(thread),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let fresh = self
            .reuse
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BLOCK));
        let full = std::mem::replace(&mut self.current, fresh);
        let sent = self.blocks.as_ref().map(|b| b.send(full));
        match sent {
            Some(Ok(())) => Ok(()),
            // The writing thread stopped: its error says why.
            _ => Err(self
                .join()
                .err()
                .unwrap_or_else(|| io::Error::other("the writing thread stopped"))),
        }
    }

    fn join(&mut self) -> io::Result<W> {
        self.blocks = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the writing thread panicked")),
            None => Err(io::Error::other("the output was already closed")),
        }
    }

    /// Writes what is buffered, waits for the writing thread, and returns the sink, flushed.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        if !self.current.is_empty() {
            self.send()?;
        }
        self.join()
    }
}

impl<W> Drop for WriteBehind<W> {
    /// Hands over what is buffered, as `BufWriter` would, and waits for the writing thread, so
    /// that the sink is dropped (a temporary file deleted) before the caller goes on, even on
    /// an error path.
    fn drop(&mut self) {
        if !self.current.is_empty() {
            let rest = std::mem::take(&mut self.current);
            if let Some(blocks) = &self.blocks {
                let _ = blocks.send(rest);
            }
        }
        self.blocks = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl<W: Write + Send + 'static> Write for WriteBehind<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let written = data.len();
        while !data.is_empty() {
            let take = (BLOCK - self.current.len()).min(data.len());
            self.current.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.current.len() == BLOCK {
                self.send()?;
            }
        }
        Ok(written)
    }

    /// Hands what is buffered to the writing thread (which writes it in order); use
    /// [`WriteBehind::finish`] to wait until it has reached the sink.
    fn flush(&mut self) -> io::Result<()> {
        if self.current.is_empty() {
            Ok(())
        } else {
            self.send()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn read_ahead_yields_the_source_exactly_in_any_read_sizes() {
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17] {
            let data = pattern(len);
            let mut ahead = ReadAhead::new(io::Cursor::new(data.clone()));
            let mut got = Vec::new();
            let mut sizes = [1usize, 4096, 70_000, BLOCK + 5].iter().cycle();
            loop {
                let mut a = vec![0u8; *sizes.next().unwrap()];
                let mut b = vec![0u8; 3000];
                let n = ahead
                    .read_vectored(&mut [io::IoSliceMut::new(&mut a), io::IoSliceMut::new(&mut b)])
                    .unwrap();
                if n == 0 {
                    break;
                }
                let from_a = n.min(a.len());
                got.extend_from_slice(&a[..from_a]);
                got.extend_from_slice(&b[..n - from_a]);
            }
            assert_eq!(got, data, "len {len}");
            assert_eq!(ahead.read(&mut [0u8; 8]).unwrap(), 0);
        }
    }

    struct Failing(usize);

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("the disk went away"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(1);
            self.0 -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_read_error_arrives_after_the_bytes_before_it() {
        let mut ahead = ReadAhead::new(Failing(BLOCK + 10));
        let mut got = Vec::new();
        let err = ahead.read_to_end(&mut got).unwrap_err();
        assert_eq!(err.to_string(), "the disk went away");
        assert_eq!(got.len(), BLOCK + 10);
    }

    #[test]
    fn write_behind_delivers_everything_in_order() {
        for len in [0, 1, BLOCK, 5 * BLOCK + 3] {
            let data = pattern(len);
            let mut behind = WriteBehind::new(Vec::new());
            for piece in data.chunks(65_537) {
                behind.write_all(piece).unwrap();
            }
            behind.flush().unwrap();
            assert_eq!(behind.finish().unwrap(), data, "len {len}");
        }
    }

    #[derive(Debug)]
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::StorageFull, "no space left"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_write_error_surfaces_at_a_later_write_or_at_finish() {
        let mut behind = WriteBehind::new(Full);
        let outcome = (0..20)
            .try_for_each(|_| behind.write_all(&pattern(BLOCK)))
            .and_then(|()| behind.finish().map(drop));
        assert_eq!(outcome.unwrap_err().kind(), io::ErrorKind::StorageFull);
        let small = WriteBehind::new(Full);
        let mut small = small;
        small.write_all(b"x").unwrap();
        assert_eq!(
            small.finish().unwrap_err().kind(),
            io::ErrorKind::StorageFull
        );
    }
}
