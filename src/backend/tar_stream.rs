//! Tar archives sent to the engine while they are written. A blocking task
//! writes the archive into a bounded channel and the request body reads from
//! it, so a large folder is sent without a temporary copy and without
//! holding the whole archive in memory.

use std::io::{self, Write};
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::diagnostics::Error;

/// Bytes per chunk handed to the request body.
const CHUNK_SIZE: usize = 64 * 1024;

/// Chunks the writer may be ahead of the engine. With [`CHUNK_SIZE`], a
/// stream buffers at most about 640 KiB of archive at a time.
const CHUNKS_AHEAD: usize = 8;

/// The chunks of a streamed archive, as a request body reads them. An
/// `Err` item means the writer failed, which aborts the request.
pub type ChunkStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// A tar archive for a request body.
pub enum TarArchive {
    InMemory(Vec<u8>),
    Streamed(StreamedTar),
}

impl From<Vec<u8>> for TarArchive {
    fn from(bytes: Vec<u8>) -> Self {
        TarArchive::InMemory(bytes)
    }
}

impl From<StreamedTar> for TarArchive {
    fn from(streamed: StreamedTar) -> Self {
        TarArchive::Streamed(streamed)
    }
}

impl TarArchive {
    /// Splits the archive into a request body, made by `in_memory` or
    /// `streamed`, and the writer to finish once the request has returned.
    pub(super) fn into_body<B>(
        self,
        in_memory: impl FnOnce(Bytes) -> B,
        streamed: impl FnOnce(ChunkStream) -> B,
    ) -> (B, ArchiveWriter) {
        match self {
            TarArchive::InMemory(bytes) => (in_memory(bytes.into()), ArchiveWriter { task: None }),
            TarArchive::Streamed(StreamedTar { chunks, writer }) => (streamed(chunks), writer),
        }
    }
}

/// An archive that a blocking task is writing.
pub struct StreamedTar {
    chunks: ChunkStream,
    writer: ArchiveWriter,
}

impl StreamedTar {
    /// Starts `write` on a blocking task with an archive whose bytes go to
    /// the returned stream, and ends the archive after it returns. Must be
    /// called inside a Tokio runtime.
    pub fn spawn<F>(write: F) -> Self
    where
        F: FnOnce(&mut tar::Builder<ChunkWriter>) -> Result<(), Error> + Send + 'static,
    {
        let (sender, mut receiver) = mpsc::channel(CHUNKS_AHEAD);
        let task = tokio::task::spawn_blocking(move || write_archive(sender, write));
        let chunks = futures_util::stream::poll_fn(move |context| receiver.poll_recv(context));
        StreamedTar {
            chunks: Box::pin(chunks),
            writer: ArchiveWriter { task: Some(task) },
        }
    }

    /// Splits the archive into its stream of chunks and its writer, for
    /// readers other than a request.
    pub fn into_parts(self) -> (ChunkStream, ArchiveWriter) {
        (self.chunks, self.writer)
    }
}

/// The task writing a streamed archive, or none for an archive in memory.
pub struct ArchiveWriter {
    task: Option<JoinHandle<Result<(), Error>>>,
}

impl ArchiveWriter {
    /// Waits for the writer to end and returns the error that stopped it.
    /// A writer stopped because the reader dropped the stream returns `Ok`,
    /// since the reader's own error explains why it stopped.
    pub async fn finish(self) -> Result<(), Error> {
        let Some(task) = self.task else {
            return Ok(());
        };
        match task.await {
            Ok(written) => written,
            // The writer only ends without a result when it panicked.
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
}

/// Runs `write`, then ends the archive. On failure, sends an error item so
/// that the reader sees a broken stream rather than a shorter archive that
/// still ends like a whole one.
fn write_archive<F>(sender: mpsc::Sender<io::Result<Bytes>>, write: F) -> Result<(), Error>
where
    F: FnOnce(&mut tar::Builder<ChunkWriter>) -> Result<(), Error>,
{
    let mut archive = tar::Builder::new(ChunkWriter {
        sender,
        buffer: Vec::with_capacity(CHUNK_SIZE),
        reader_gone: false,
    });

    let written = write(&mut archive).and_then(|()| {
        archive
            .finish()
            .and_then(|()| archive.get_mut().flush())
            .map_err(|error| Error::docker("streaming an archive", error))
    });

    let writer = archive.get_mut();
    match written {
        Ok(()) => Ok(()),
        Err(_) if writer.reader_gone => Ok(()),
        Err(error) => {
            writer.abort();
            Err(error)
        }
    }
}

/// The end of a streamed archive that the tar builder writes to: it groups
/// bytes into chunks and blocks while the channel is full.
pub struct ChunkWriter {
    sender: mpsc::Sender<io::Result<Bytes>>,
    buffer: Vec<u8>,
    /// Set once a send failed because the stream was dropped.
    reader_gone: bool,
}

impl ChunkWriter {
    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_SIZE));
        if self.reader_gone || self.sender.blocking_send(Ok(chunk.into())).is_err() {
            self.reader_gone = true;
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the reader of the archive stopped reading",
            ));
        }
        Ok(())
    }

    /// Drops the buffered bytes and sends an error item in their place, and
    /// fails every later write, the tar builder's end-of-archive included.
    fn abort(&mut self) {
        self.buffer.clear();
        if !self.reader_gone {
            let failed = io::Error::other("the archive writer failed");
            let _ = self.sender.blocking_send(Err(failed));
        }
        self.reader_gone = true;
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.reader_gone {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the archive stream is closed",
            ));
        }
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK_SIZE {
            self.send_buffer()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    /// Writes `files` files of `size` bytes each into an archive.
    fn archive_of(
        files: usize,
        size: usize,
    ) -> impl FnOnce(&mut tar::Builder<ChunkWriter>) -> Result<(), Error> {
        move |archive| {
            for index in 0..files {
                let mut header = tar::Header::new_gnu();
                header.set_size(size as u64);
                header.set_mode(0o644);
                let content = vec![content_byte(index); size];
                archive
                    .append_data(&mut header, format!("file-{index}"), content.as_slice())
                    .map_err(|error| Error::docker("writing a test archive", error))?;
            }
            Ok(())
        }
    }

    /// Returns a byte other than zero, so that no file's content looks like
    /// the end-of-archive marker.
    fn content_byte(index: usize) -> u8 {
        (index % 250 + 1) as u8
    }

    async fn read_all(chunks: &mut ChunkStream) -> (Vec<u8>, Option<io::Error>) {
        let mut bytes = Vec::new();
        while let Some(chunk) = chunks.next().await {
            match chunk {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(error) => return (bytes, Some(error)),
            }
        }
        (bytes, None)
    }

    #[tokio::test]
    async fn streamed_archive_matches_in_memory_one() {
        let mut in_memory = tar::Builder::new(Vec::new());
        for index in 0..40usize {
            let mut header = tar::Header::new_gnu();
            header.set_size(10_000);
            header.set_mode(0o644);
            let content = vec![content_byte(index); 10_000];
            in_memory
                .append_data(&mut header, format!("file-{index}"), content.as_slice())
                .unwrap();
        }
        let expected = in_memory.into_inner().unwrap();

        let (mut chunks, writer) = StreamedTar::spawn(archive_of(40, 10_000)).into_parts();
        let (bytes, error) = read_all(&mut chunks).await;

        assert!(error.is_none(), "{error:?}");
        assert!(writer.finish().await.is_ok());
        assert_eq!(bytes.len(), expected.len());
        assert!(bytes == expected, "the streamed archive differs");
    }

    #[tokio::test]
    async fn failed_writer_breaks_the_stream() {
        let write = |archive: &mut tar::Builder<ChunkWriter>| {
            archive_of(20, 10_000)(archive)?;
            Err(Error::Read {
                path: "/context/broken.bin".into(),
                reason: "Is a directory (os error 21)".to_string(),
            })
        };

        let (mut chunks, writer) = StreamedTar::spawn(write).into_parts();
        let (bytes, error) = read_all(&mut chunks).await;

        assert!(error.is_some(), "the stream ended without an error");
        assert!(!bytes.ends_with(&[0; 1024]), "the archive was ended");
        let message = writer.finish().await.unwrap_err().to_string();
        assert!(message.contains("/context/broken.bin"), "{message}");
    }

    #[tokio::test]
    async fn dropped_stream_stops_the_writer() {
        // 64 MiB, far more than the channel buffers.
        let (mut chunks, writer) = StreamedTar::spawn(archive_of(64, 1 << 20)).into_parts();
        let first = chunks.next().await;
        drop(chunks);

        let finished =
            tokio::time::timeout(std::time::Duration::from_secs(10), writer.finish()).await;

        assert!(first.is_some_and(|chunk| chunk.is_ok()));
        assert!(finished.is_ok(), "the writer kept running");
        assert!(
            finished.unwrap().is_ok(),
            "a stopped reader is not the writer's error"
        );
    }
}
