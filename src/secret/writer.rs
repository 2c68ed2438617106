//! A writer for the tracing subscriber that redacts each log event before
//! it reaches its destination, so a secret in a field, an error's text or
//! a message never reaches the log, whichever code wrote it.
//!
//! The fmt layer asks for a writer per event and writes the formatted event
//! into it; this writer collects the event and writes it, redacted, when the
//! event is done (on drop). It does not filter or format anything.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Makes a [`RedactingWriter`] per event around the writers `inner` makes:
/// `tracing_subscriber::fmt().with_writer(RedactingMakeWriter::new(std::io::stderr))`.
#[derive(Debug, Clone)]
pub struct RedactingMakeWriter<M> {
    inner: M,
}

impl<M> RedactingMakeWriter<M> {
    /// Redacts what `inner`'s writers would receive.
    pub fn new(inner: M) -> RedactingMakeWriter<M> {
        RedactingMakeWriter { inner }
    }
}

impl<'a, M> MakeWriter<'a> for RedactingMakeWriter<M>
where
    M: MakeWriter<'a>,
{
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter::new(self.inner.make_writer())
    }
}

/// Collects one log event and writes it to `inner`, redacted, when dropped.
#[derive(Debug)]
pub struct RedactingWriter<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: Write> RedactingWriter<W> {
    /// A writer that redacts what it passes to `inner`.
    pub fn new(inner: W) -> RedactingWriter<W> {
        RedactingWriter {
            inner,
            pending: Vec::new(),
        }
    }

    fn write_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.pending);
        let redacted = super::redact(&text);
        self.pending.clear();
        self.inner.write_all(redacted.as_bytes())?;
        self.inner.flush()
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    /// Flushes only what was already written: the event is redacted whole
    /// when it is done, so a secret split across two writes is still caught.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        // A log line that cannot be written has nowhere else to go.
        let _ = self.write_pending();
    }
}
