//! Decoding trail log files on every core: decompress, parse, map and aggregate.
//!
//! Each worker thread pulls the next file, reads it, and folds its records into a private
//! [`Aggregate`]; the aggregates are merged at the end, so the hot loop shares nothing. A
//! gzip file whose uncompressed size (the gzip trailer's ISIZE) is at most
//! `stream_above` bytes is inflated whole with libdeflate, which is about twice as fast as
//! zlib, into a buffer the worker reuses; larger files, truncated or multi-member gzip files
//! are streamed record by record through flate2 instead, so memory stays bounded by
//! `workers × stream_above` whatever the corpus or file size.

use std::fs::File;
use std::io::{BufReader, Read};
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
    /// Bytes already fetched (an S3 object).
    Bytes { location: String, bytes: Vec<u8> },
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
            Blob::Bytes { location, bytes } => {
                let size = bytes.len() as u64;
                self.compressed = bytes;
                let result = self
                    .decode_buffer(&location)
                    .map(|(events, plain)| (events, plain, size));
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
        let mut file = File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        if size > self.options.stream_above {
            // Too big to hold even compressed: stream from the file.
            let mut magic = [0u8; 2];
            let n = file.read(&mut magic).map_err(io)?;
            let file = File::open(path).map_err(io)?;
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
