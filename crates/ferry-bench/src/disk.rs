//! `ferry-bench disk`: how many durable commits a second the disk under a store allows.
//!
//! Every 2xx of the hub waits for an fsync of the store's log, so at low concurrency the
//! disk's write-then-fsync time, not the CPU, sets the pace. This measures it the way the
//! store's writer meets it: each writer thread writes one block (about a commit's worth of
//! log frames) and fsyncs, in a closed loop, overwriting a ring of blocks in place as a
//! reused WAL does. With several writers, it shows whether the disk overlaps their
//! fsyncs: what more than one writer (a sharded store) could gain on this machine.
//!
//! Plain std threads and `File::sync_all` (fsync, as SQLite's `unix` VFS calls it on
//! Linux); no crate offers this measurement in the shape the store uses the disk.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cli::DiskArgs;
use crate::receiver::new_histogram;

/// Bytes of each writer's ring: written once before timing, then overwritten block by block.
const RING_BYTES: u64 = 4 * 1024 * 1024;

/// One writer count's result.
#[derive(Debug, Serialize)]
pub struct DiskRow {
    /// Writer threads, each writing then fsyncing in a closed loop.
    pub writers: u64,
    /// Whether the writers shared one file (at disjoint offsets) rather than one file each.
    pub shared_file: bool,
    /// Write-then-fsync rounds completed by all writers together.
    pub syncs: u64,
    /// `syncs` per second, from the writers' start until the last one stopped.
    pub syncs_per_sec: f64,
    /// This rate over the first row's.
    pub speedup: f64,
    /// Median time of one write-then-fsync.
    pub p50_us: u64,
    /// Its 99th percentile.
    pub p99_us: u64,
    /// Its slowest.
    pub max_us: u64,
}

/// The report `--json` prints.
#[derive(Debug, Serialize)]
pub struct DiskReport {
    /// The directory measured (`--dir`).
    pub dir: String,
    /// Bytes written before each fsync.
    pub write_bytes: u64,
    /// How long each row ran.
    pub window_secs: f64,
    /// One row per writer count, in the order given.
    pub rows: Vec<DiskRow>,
}

/// Runs each writer count in turn in a fresh directory under `--dir`, which is removed.
pub fn run(args: DiskArgs) -> anyhow::Result<ExitCode> {
    if args.duration.is_zero() {
        anyhow::bail!("--duration must be longer than zero");
    }
    // Bounded by the CLI: `--write-kib` 1 to 4096 (and `--writers` 1 to 64 each).
    let block = args.write_kib * 1024;
    let scratch = tempfile::Builder::new()
        .prefix("ferry-bench-disk-")
        .tempdir_in(&args.dir)
        .with_context(|| format!("cannot create a directory under {}", args.dir.display()))?;
    let mut rows: Vec<DiskRow> = Vec::with_capacity(args.writers.len());
    for &writers in &args.writers {
        let (syncs, hist, elapsed) =
            measure(scratch.path(), writers, block, args.shared, args.duration)
                .with_context(|| format!("{writers} writers under {}", args.dir.display()))?;
        let syncs_per_sec = syncs as f64 / elapsed.as_secs_f64();
        let speedup = rows
            .first()
            .map_or(1.0, |first| syncs_per_sec / first.syncs_per_sec);
        rows.push(DiskRow {
            writers,
            shared_file: args.shared,
            syncs,
            syncs_per_sec,
            speedup,
            p50_us: hist.value_at_quantile(0.50),
            p99_us: hist.value_at_quantile(0.99),
            max_us: hist.max(),
        });
    }
    let report = DiskReport {
        dir: args.dir.display().to_string(),
        write_bytes: block,
        window_secs: args.duration.as_secs_f64(),
        rows,
    };
    scratch
        .close()
        .context("cannot remove the scratch directory")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(report: &DiskReport) {
    println!(
        "write {} KiB then fsync, closed loop, {:.1} s per row, under {}",
        report.write_bytes / 1024,
        report.window_secs,
        report.dir
    );
    println!("writers  file     fsyncs/s  speedup  p50 µs  p99 µs  max µs");
    for r in &report.rows {
        println!(
            "{:>7}  {:<7} {:>9.0}  {:>6.2}x  {:>6}  {:>6}  {:>6}",
            r.writers,
            if r.shared_file { "shared" } else { "own" },
            r.syncs_per_sec,
            r.speedup,
            r.p50_us,
            r.p99_us,
            r.max_us
        );
    }
}

/// `writers` threads write and fsync for `window`; returns the rounds completed, their
/// latencies (µs) merged, and the time from the writers' start until the last one stopped.
fn measure(
    dir: &Path,
    writers: u64,
    block: u64,
    shared: bool,
    window: Duration,
) -> anyhow::Result<(u64, Histogram<u64>, Duration)> {
    let ring = ring_blocks(block);
    let files: Vec<(Arc<File>, u64)> = if shared {
        let path = dir.join(format!("shared-{writers}"));
        let file = Arc::new(prepare(&path, block, ring * writers)?);
        (0..writers)
            .map(|i| (file.clone(), i * ring * block))
            .collect()
    } else {
        (0..writers)
            .map(|i| {
                let path = dir.join(format!("own-{writers}-{i}"));
                Ok((Arc::new(prepare(&path, block, ring)?), 0))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = files
        .into_iter()
        .map(|(file, base)| {
            let stop = stop.clone();
            std::thread::spawn(move || write_loop(&file, base, block, ring, &stop))
        })
        .collect();
    std::thread::sleep(window);
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    let mut merged = new_histogram();
    for t in threads {
        let (n, hist) = t
            .join()
            .map_err(|_| anyhow::anyhow!("a writer thread panicked"))??;
        total += n;
        merged.add(&hist).context("histogram")?;
    }
    Ok((total, merged, start.elapsed()))
}

/// Blocks in one writer's ring (at least one).
fn ring_blocks(block: u64) -> u64 {
    (RING_BYTES / block).max(1)
}

/// A file of `blocks` blocks, written and fsynced once, so that the timed writes overwrite
/// in place.
fn prepare(path: &Path, block: u64, blocks: u64) -> anyhow::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let zeros = vec![0u8; usize::try_from(block)?];
    for i in 0..blocks {
        file.write_all_at(&zeros, i * block)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    file.sync_all()
        .with_context(|| format!("cannot fsync {}", path.display()))?;
    Ok(file)
}

/// Writes block after block of a ring starting at `base`, each followed by an fsync, until
/// `stop` (at least once).
fn write_loop(
    file: &File,
    base: u64,
    block: u64,
    ring: u64,
    stop: &AtomicBool,
) -> anyhow::Result<(u64, Histogram<u64>)> {
    let mut hist = new_histogram();
    let mut data = vec![0u8; usize::try_from(block)?];
    let mut n = 0u64;
    // At least one round, however late the thread starts, so every row has a sample.
    loop {
        // Different bytes each round, so nothing below may skip an unchanged page.
        data[..8].copy_from_slice(&n.to_le_bytes());
        let start = Instant::now();
        file.write_all_at(&data, base + (n % ring) * block)
            .context("write failed")?;
        file.sync_all().context("fsync failed")?;
        hist.saturating_record(u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX));
        n += 1;
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    Ok((n, hist))
}
