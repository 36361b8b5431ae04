//! A progress bar on stderr for long operations, shown only when stderr is a terminal.

use std::io::{self, IsTerminal, Read};

use indicatif::{ProgressBar, ProgressStyle};

/// Inputs smaller than this finish too quickly for a bar to help.
const SHOW_FROM_BYTES: u64 = 32 * 1024 * 1024;

/// Counts bytes read through it into a progress bar.
pub(crate) struct Progress<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Progress<R> {
    /// Wraps `inner`; `len` is the input's size when known.
    pub(crate) fn new(inner: R, len: Option<u64>, verb: &'static str) -> Self {
        let wanted = io::stderr().is_terminal() && len.is_none_or(|n| n >= SHOW_FROM_BYTES);
        let bar = if !wanted {
            ProgressBar::hidden()
        } else if let Some(n) = len {
            ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            )
        } else {
            ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            )
        };
        bar.set_message(verb);
        Self { inner, bar }
    }

    /// Removes the bar from the terminal.
    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }

    fn read_vectored(&mut self, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
        let n = self.inner.read_vectored(bufs)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}
