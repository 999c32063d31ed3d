//! Decoding trail log files on every core: decompress, parse, map and aggregate.
//!
//! Each worker thread pulls the next file, reads it, and folds its records into a private
//! [`Aggregate`]; the aggregates are merged at the end, so the hot loop shares nothing. A
//! gzip file whose uncompressed size (the gzip trailer's ISIZE) is at most
//! `stream_above` bytes is inflated whole with libdeflate, which is about twice as fast as
//! zlib, into a buffer the worker reuses; larger files, truncated or multi-member gzip files
//! are streamed record by record through flate2 instead, so memory stays bounded by
//! `workers × stream_above` whatever the corpus or file size.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::ProgressBar;
use whittle_planner::catalog::Catalog;
use whittle_planner::mapping::Mapper;
use whittle_planner::trail::{FileOutcome, Item, read_log, read_log_stream};
use whittle_planner::usage::Aggregate;

/// One file to decode.
#[derive(Debug)]
pub enum Blob {
    /// A local file, read by the worker itself.
    Path { location: String, path: PathBuf },
    /// An S3 object downloaded into a file of the state directory's `downloads/`, deleted
    /// when the worker is done with it.
    Download {
        location: String,
        file: tempfile::TempPath,
    },
}

#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// Events before this time (ms) are counted as too old and not used.
    pub cutoff_ms: i64,
    /// Files larger than this (uncompressed bytes) are streamed.
    pub stream_above: u64,
}

/// Counters the progress bar shows, shared by the workers; dropping it clears the bar.
#[derive(Debug)]
pub struct Progress {
    events: AtomicU64,
    /// Uncompressed bytes parsed.
    bytes: AtomicU64,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(bar: Option<ProgressBar>) -> Progress {
        Progress {
            events: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            bar,
        }
    }

    fn file_done(&self, events: u64, bytes: u64) {
        // Only a drawn bar reads the counters.
        let Some(bar) = &self.bar else {
            return;
        };
        self.events.fetch_add(events, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        bar.inc(1);
        let secs = bar.elapsed().as_secs_f64().max(0.001);
        bar.set_message(format!(
            "{} events  {:.0} MB/s",
            self.events.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed) as f64 / 1e6 / secs
        ));
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// What a set of files gave: the merged aggregate and the files read to a conclusion (their
/// location and size), which the caller checkpoints with the aggregate.
#[derive(Debug, Default)]
pub struct Decoded {
    pub aggregate: Aggregate,
    pub done: Vec<(String, u64)>,
}

/// Decodes every blob `next` yields on `workers` threads.
pub fn decode_parallel(
    workers: usize,
    next: &(dyn Fn() -> Option<Blob> + Sync),
    options: &DecodeOptions,
    catalog: &Catalog,
    progress: &Progress,
) -> Decoded {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut worker = Worker::new(catalog, options);
                    while let Some(blob) = next() {
                        worker.decode(blob, progress);
                    }
                    worker.decoded
                })
            })
            .collect();
        let mut all = Decoded::default();
        for handle in handles {
            match handle.join() {
                Ok(part) => {
                    all.aggregate.merge(part.aggregate);
                    all.done.extend(part.done);
                }
                // A panic in a worker is a bug; re-raise it rather than lose its files
                // silently (they are not checkpointed, so a re-run reads them again).
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    })
}

struct Worker<'c> {
    mapper: Mapper<'c>,
    options: &'c DecodeOptions,
    decoded: Decoded,
    inflater: libdeflater::Decompressor,
    compressed: Vec<u8>,
    plain: Vec<u8>,
}

/// Why a file could not be read at all, and whether trying again later may help.
struct FileError {
    reason: String,
    /// An IO error (permissions, a vanished file): not checkpointed, so a later run retries.
    transient: bool,
}

impl<'c> Worker<'c> {
    fn new(catalog: &'c Catalog, options: &'c DecodeOptions) -> Worker<'c> {
        Worker {
            mapper: Mapper::new(catalog),
            options,
            decoded: Decoded::default(),
            inflater: libdeflater::Decompressor::new(),
            compressed: Vec::new(),
            plain: Vec::new(),
        }
    }

    fn decode(&mut self, blob: Blob, progress: &Progress) {
        let (location, result) = match blob {
            Blob::Path { location, path } => {
                let result = self.decode_path(&location, &path);
                (location, result)
            }
            Blob::Download { location, file } => {
                let result = self.decode_path(&location, &file);
                drop(file);
                (location, result)
            }
        };
        let stats = &mut self.decoded.aggregate.stats;
        stats.files += 1;
        match result {
            Ok((events, plain_bytes, size)) => {
                stats.bytes += plain_bytes;
                progress.file_done(events, plain_bytes);
                self.decoded.done.push((location, size));
            }
            Err(error) => {
                stats.bad_files += 1;
                stats.warn(format!("{location}: {}", error.reason));
                progress.file_done(0, 0);
                if !error.transient {
                    self.decoded.done.push((location, 0));
                }
            }
        }
    }

    /// Returns (records, uncompressed bytes, file size).
    fn decode_path(
        &mut self,
        location: &str,
        path: &std::path::Path,
    ) -> Result<(u64, u64, u64), FileError> {
        let io = |e: std::io::Error| FileError {
            reason: format!("cannot read: {e}"),
            transient: true,
        };
        // Only regular files are read: a FIFO blocks until a writer comes, and a device
        // (`/dev/zero`) never ends. The open follows a symlink to what it points at. The
        // listing has skipped these already; this guards a file replaced since.
        let not_a_file = |kind: std::fs::FileType| FileError {
            reason: format!("{}; skipped", not_regular(kind)),
            // Not checkpointed: a regular file of that name is read by a later run.
            transient: true,
        };
        // Opened without blocking, then checked on the open file: a FIFO put in place of a
        // listed file (a race with whatever writes the directory) would block a plain `open`
        // until a writer comes. O_NONBLOCK changes nothing for a regular file (open(2): it
        // has no effect on regular files' reads), and anything else is refused below.
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits().cast_signed())
                .open(path)
                .map_err(io)?
        };
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(not_a_file(meta.file_type()));
        }
        let size = meta.len();
        if size > self.options.stream_above {
            // Too big to hold even compressed: stream from the file.
            let mut magic = [0u8; 2];
            let n = file.read(&mut magic).map_err(io)?;
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            let reader = BufReader::with_capacity(1 << 20, file);
            let (records, plain) = if n == 2 && magic == GZIP_MAGIC {
                self.stream(location, flate2::read::MultiGzDecoder::new(reader))
            } else {
                self.stream(location, reader)
            };
            return Ok((records, plain, size));
        }
        self.compressed.clear();
        file.read_to_end(&mut self.compressed).map_err(io)?;
        self.decode_buffer(location)
            .map(|(records, plain)| (records, plain, size))
    }

    /// Decodes the file held in `self.compressed`: returns (records, uncompressed bytes).
    fn decode_buffer(&mut self, location: &str) -> Result<(u64, u64), FileError> {
        let bytes = std::mem::take(&mut self.compressed);
        let result = self.decode_bytes(location, &bytes);
        self.compressed = bytes;
        result
    }

    fn decode_bytes(&mut self, location: &str, bytes: &[u8]) -> Result<(u64, u64), FileError> {
        if bytes.starts_with(&GZIP_MAGIC) {
            let isize = bytes
                .len()
                .checked_sub(4)
                .map(|at| {
                    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
                })
                .unwrap_or(0) as usize;
            if (isize as u64) <= self.options.stream_above {
                let mut plain = std::mem::take(&mut self.plain);
                plain.resize(isize, 0);
                let inflated = self.inflater.gzip_decompress(bytes, &mut plain);
                let result = match inflated {
                    // A size equal to ISIZE means one complete member: the common case.
                    Ok(n) if n == isize && !looks_like_json(&plain[..n]) => Some(Err(not_a_log())),
                    Ok(n) if n == isize => Some(Ok(self.parse(location, &plain[..n]))),
                    // Truncated, corrupt or multi-member: the streaming path reads what it
                    // can and reports where it stopped.
                    _ => None,
                };
                self.plain = plain;
                if let Some(result) = result {
                    return result;
                }
            }
            return Ok(self.stream(location, flate2::read::MultiGzDecoder::new(bytes)));
        }
        if !looks_like_json(bytes) {
            return Err(not_a_log());
        }
        Ok(self.parse(location, bytes))
    }

    /// Parses a whole file in memory: returns (records, bytes).
    fn parse(&mut self, location: &str, bytes: &[u8]) -> (u64, u64) {
        let Worker {
            mapper,
            options,
            decoded,
            ..
        } = self;
        let aggregate = &mut decoded.aggregate;
        let mut index = 0u64;
        let outcome = read_log(bytes, &mut |item| {
            take_item(aggregate, mapper, options.cutoff_ms, location, index, item);
            index += 1;
        });
        report(aggregate, location, &outcome);
        (outcome.records, bytes.len() as u64)
    }

    /// Parses a file from a reader, record by record: returns (records, bytes).
    fn stream<R: Read>(&mut self, location: &str, reader: R) -> (u64, u64) {
        let Worker {
            mapper,
            options,
            decoded,
            ..
        } = self;
        let aggregate = &mut decoded.aggregate;
        let mut counting = CountingReader {
            inner: reader,
            count: 0,
        };
        let mut index = 0u64;
        let outcome = read_log_stream(&mut counting, &mut |item| {
            take_item(aggregate, mapper, options.cutoff_ms, location, index, item);
            index += 1;
        });
        report(aggregate, location, &outcome);
        (outcome.records, counting.count)
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether the bytes start (after white space) like a JSON object or array.
fn looks_like_json(bytes: &[u8]) -> bool {
    matches!(
        bytes.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

/// Why an entry that is not a regular file is not read: `not a regular file (a FIFO)`.
pub(super) fn not_regular(kind: std::fs::FileType) -> String {
    use std::os::unix::fs::FileTypeExt;
    let what = if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_symlink() {
        "a symlink"
    } else {
        "of an unknown kind"
    };
    format!("not a regular file ({what})")
}

fn not_a_log() -> FileError {
    FileError {
        reason: "not a CloudTrail log file (not JSON, plain or gzip)".to_owned(),
        transient: false,
    }
}

fn take_item(
    aggregate: &mut Aggregate,
    mapper: &mut Mapper<'_>,
    cutoff_ms: i64,
    location: &str,
    index: u64,
    item: Item<'_>,
) {
    match item {
        Item::Record(record) => aggregate.add_record(&record, mapper, cutoff_ms, location, index),
        Item::Skipped { index, reason } => {
            aggregate.stats.records += 1;
            aggregate.stats.skip(location, index, &reason);
        }
    }
}

fn report(aggregate: &mut Aggregate, location: &str, outcome: &FileOutcome) {
    if let Some(error) = &outcome.error {
        aggregate.stats.bad_files += 1;
        aggregate.stats.warn(format!("{location}: {error}"));
    }
}

struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::mpsc;
    use std::time::Duration;

    use whittle_planner::catalog::Catalog;

    use super::*;

    const RECORD: &str = r#"{"userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/app/fn","accountId":"111122223333"},"eventTime":"2026-11-20T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1"}"#;

    /// Three records, the second with a NUL byte inside its `eventName`.
    fn log_with_a_nul_byte() -> Vec<u8> {
        let bad = RECORD.replace("GetObject", "Get\0Object");
        format!(r#"{{"Records":[{RECORD},{bad},{RECORD}]}}"#).into_bytes()
    }

    /// Decodes the file at `path` on a thread, failing the test if it blocks.
    fn decode_in_time(path: PathBuf, stream_above: u64) -> Decoded {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let options = DecodeOptions {
                cutoff_ms: 0,
                stream_above,
            };
            let mut worker = Worker::new(Catalog::embedded(), &options);
            let location = "here".to_owned();
            worker.decode(Blob::Path { location, path }, &Progress::new(None));
            let _ = tx.send(worker.decoded);
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("decoding finished instead of blocking")
    }

    #[test]
    fn a_nul_byte_loses_one_record_and_the_file_is_read_to_its_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("a.json");
        std::fs::write(&plain, log_with_a_nul_byte()).expect("write");
        let gzip = dir.path().join("a.json.gz");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&log_with_a_nul_byte()).expect("gzip");
        std::fs::write(&gzip, encoder.finish().expect("gzip")).expect("write");
        // In memory, and streamed (a limit below the file's size).
        for (path, stream_above) in [
            (&plain, 1 << 20),
            (&gzip, 1 << 20),
            (&plain, 10),
            (&gzip, 10),
        ] {
            let what = format!("{} streamed above {stream_above}", path.display());
            let decoded = decode_in_time(path.clone(), stream_above);
            let stats = &decoded.aggregate.stats;
            assert_eq!(stats.records, 3, "{what}: {stats:?}");
            assert_eq!(stats.skipped_total(), 1, "{what}: {stats:?}");
            assert_eq!(stats.bad_files, 0, "{what}: {stats:?}");
            assert_eq!(stats.events(), 2, "{what}: {stats:?}");
            assert!(
                stats
                    .warnings
                    .iter()
                    .any(|w| w.starts_with("here: record 1: record is not valid JSON: ")),
                "{what}: {:?}",
                stats.warnings
            );
            assert_eq!(decoded.done.len(), 1, "{what}: checkpointed as read");
        }
    }

    #[test]
    fn a_file_that_is_not_a_log_is_reported_and_checkpointed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notes.json");
        std::fs::write(&path, "hello, not JSON").expect("write");
        let decoded = decode_in_time(path, 1 << 20);
        assert_eq!(decoded.aggregate.stats.bad_files, 1);
        assert!(
            decoded.aggregate.stats.warnings[0].contains("not a CloudTrail log file"),
            "{:?}",
            decoded.aggregate.stats.warnings
        );
        assert_eq!(decoded.done, vec![("here".to_owned(), 0)]);
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A FIFO would block `open` until a writer comes; none ever does.
        let fifo = dir.path().join("pipe.json");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("run mkfifo");
        assert!(made.success(), "mkfifo failed");
        // A symlink to /dev/zero would be read forever.
        let zero = dir.path().join("zero.json");
        std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
        for path in [fifo, zero] {
            let decoded = decode_in_time(path.clone(), 1 << 20);
            let stats = &decoded.aggregate.stats;
            assert_eq!(stats.bad_files, 1, "{}: {stats:?}", path.display());
            assert!(
                stats.warnings.len() == 1
                    && stats.warnings[0].starts_with("here: not a regular file"),
                "{}: {:?}",
                path.display(),
                stats.warnings
            );
            // Not checkpointed: the next run looks again (and the listing warns first).
            assert!(decoded.done.is_empty(), "{}", path.display());
        }
    }
}
