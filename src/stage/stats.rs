//! A stage's figures: counters, and a lock-free log-linear histogram of
//! latencies.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A stage's figures at one moment, as [`Stage::stats`](super::Stage::stats)
/// reads them: a plain value to log, export or serve.
///
/// The counters are read one by one while the stage runs, so a snapshot
/// taken under load may be off by the few items that moved meanwhile.
/// Once the stage is closed they add up:
/// `accepted == completed + panicked + cancelled`.
///
/// # Examples
///
/// ```
/// use milieu::stage::{CloseMode, Stage};
///
/// let stage = Stage::builder("checksum").build(|data: Vec<u8>| data.len())?;
/// drop(stage.submit(vec![1, 2, 3]));
/// stage.close(CloseMode::Drain)?;
/// let stats = stage.stats();
/// assert_eq!((stats.accepted, stats.completed), (1, 1));
/// assert!(stats.latency_p50 <= stats.latency_p99);
/// println!("{stats}"); // one line: "stage `checksum`: 0/1024 queued, ..."
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct StageStats {
    /// The stage's name.
    pub name: String,
    /// The queue bound.
    pub capacity: usize,
    /// Worker threads running now (0 once closed).
    pub workers: usize,
    /// Items waiting in the queue.
    pub queue_depth: usize,
    /// Items a handler is working on.
    pub in_flight: usize,
    /// Items taken by `submit` or `submit_wait`.
    pub accepted: u64,
    /// Items refused (queue full or stage closed).
    pub refused: u64,
    /// Items whose handler returned.
    pub completed: u64,
    /// Items whose handler panicked.
    pub panicked: u64,
    /// Queued items cancelled by [`CloseMode::Cancel`](super::CloseMode::Cancel).
    pub cancelled: u64,
    /// Workers replaced after a panic.
    pub replaced: u64,
    /// Completed items per second since the stage was built.
    pub throughput: f64,
    /// Median time from `submit` to the handler's return, over completed
    /// items (`None` before the first); see [`Stage`](super::Stage) for
    /// the resolution.
    pub latency_p50: Option<Duration>,
    /// 99th percentile of the same.
    pub latency_p99: Option<Duration>,
    /// Handler calls of a batched stage
    /// ([`StageBuilder::build_batched_with`](super::StageBuilder::build_batched_with)),
    /// each with one or more items; 0 for a stage of single items.
    pub batches: u64,
    /// Items handed to those calls: `batched_items / batches` is the mean
    /// batch size.
    pub batched_items: u64,
    /// The most items one call was handed.
    pub largest_batch: usize,
}

impl StageStats {
    /// The mean number of items per batch (`None` for a stage that has
    /// run no batch).
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::stage::{Batched, Batching, CloseMode, Stage};
    ///
    /// let sum = Stage::builder("sum").build_batched_with(Batching::new(8), || {
    ///     |batch: Vec<Batched<u32>>| batch.into_iter().map(|b| b.item + 1).collect()
    /// })?;
    /// assert_eq!(futures::executor::block_on(sum.submit(1)?)?, 2);
    /// sum.close(CloseMode::Drain)?;
    /// assert_eq!(sum.stats().mean_batch(), Some(1.0));
    ///
    /// let plain = Stage::builder("plain").build(|n: u32| n)?;
    /// assert_eq!(plain.stats().mean_batch(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn mean_batch(&self) -> Option<f64> {
        (self.batches > 0).then(|| self.batched_items as f64 / self.batches as f64)
    }
}

impl fmt::Display for StageStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stage `{}`: {}/{} queued, {} in flight on {} workers; accepted {}, refused {}, \
             completed {}, panicked {}, cancelled {}, replaced {}; {:.1}/s",
            self.name,
            self.queue_depth,
            self.capacity,
            self.in_flight,
            self.workers,
            self.accepted,
            self.refused,
            self.completed,
            self.panicked,
            self.cancelled,
            self.replaced,
            self.throughput,
        )?;
        match (self.latency_p50, self.latency_p99) {
            (Some(p50), Some(p99)) => write!(f, ", latency p50 {p50:?} p99 {p99:?}")?,
            _ => f.write_str(", no latency yet")?,
        }
        if let Some(mean) = self.mean_batch() {
            write!(
                f,
                "; {} batches, mean {mean:.1} items, largest {}",
                self.batches, self.largest_batch
            )?;
        }
        Ok(())
    }
}

/// Sub-buckets per power of two, as a bit count (8 sub-buckets).
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Values 0..8 exactly, then 8 buckets for each power of two from 2^3 to
/// 2^63: (64 - 3 + 1) * 8.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// A lock-free log-linear histogram of durations in nanoseconds.
///
/// Values below 8 ns have a bucket each; above, every power of two is split
/// into 8 equal buckets. A percentile reports the top of its bucket: never
/// below the true value, and at most 12.5% above it (1/8 of a power of
/// two). Recording is one relaxed atomic increment; 496 buckets cover
/// every `u64` of nanoseconds (~584 years) in 4 KiB.
pub(super) struct Histogram {
    buckets: Box<[AtomicU64]>,
}

impl Histogram {
    pub(super) fn new() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(super) fn record(&self, value: Duration) {
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[index(nanos)].fetch_add(1, Ordering::Relaxed);
    }

    /// The `q`-quantile (0.0..=1.0): the top of the bucket holding the
    /// value of rank `ceil(q * count)`; `None` when nothing was recorded.
    pub(super) fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        // The float product is exact enough: ranks only need to land in
        // the right bucket, and `clamp` keeps them in 1..=total.
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Duration::from_nanos(upper_bound(i)));
            }
        }
        None // unreachable: the counts sum to `total`
    }
}

/// The bucket of a value.
fn index(value: u64) -> usize {
    if value < SUB as u64 {
        return value as usize;
    }
    // The highest set bit picks the power of two, the next 3 bits the
    // sub-bucket. For 8..16 this gives 8..16: the linear part continues.
    let exponent = 63 - value.leading_zeros();
    let sub = (value >> (exponent - SUB_BITS)) as usize & (SUB - 1);
    (exponent - SUB_BITS + 1) as usize * SUB + sub
}

/// The largest value that lands in bucket `i`.
fn upper_bound(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let group = (i / SUB) as u32; // 1 for 8..16, 61 for 2^63..
    let sub = (i % SUB) as u64;
    let width = 1u64 << (group - 1);
    let lower = (SUB as u64 + sub) << (group - 1);
    lower + (width - 1) // at most u64::MAX: (16 << 60) - 1 for the last one
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_every_u64() {
        assert_eq!(index(0), 0);
        assert_eq!(index(7), 7);
        assert_eq!(index(8), 8);
        assert_eq!(index(15), 15);
        assert_eq!(index(16), 16);
        assert_eq!(index(17), 16);
        assert_eq!(index(u64::MAX), BUCKETS - 1);
        assert_eq!(upper_bound(BUCKETS - 1), u64::MAX);
        for i in 0..BUCKETS - 1 {
            let top = upper_bound(i);
            assert_eq!(index(top), i, "top of bucket {i}");
            assert_eq!(index(top + 1), i + 1, "after bucket {i}");
        }
    }

    #[test]
    fn a_bucket_is_at_most_an_eighth_of_its_values() {
        for value in (1..200_000u64).chain([1 << 40, (1 << 40) + 12345, u64::MAX / 3]) {
            let top = upper_bound(index(value));
            assert!(top >= value);
            assert!(
                (top - value) as f64 <= value as f64 / 8.0,
                "{value} reported as {top}"
            );
        }
    }

    #[test]
    fn small_values_are_exact() {
        let h = Histogram::new();
        for n in [1, 2, 3, 4, 5, 6, 7] {
            h.record(Duration::from_nanos(n));
        }
        assert_eq!(h.quantile(0.0), Some(Duration::from_nanos(1)));
        assert_eq!(h.quantile(0.5), Some(Duration::from_nanos(4)));
        assert_eq!(h.quantile(1.0), Some(Duration::from_nanos(7)));
    }

    #[test]
    fn percentiles_of_a_uniform_spread_are_within_the_resolution() {
        let h = Histogram::new();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).unwrap();
        let p99 = h.quantile(0.99).unwrap();
        let within = |got: Duration, want: Duration| {
            got >= want && got.as_nanos() as f64 <= want.as_nanos() as f64 * 1.125
        };
        assert!(within(p50, Duration::from_micros(500)), "p50 {p50:?}");
        assert!(within(p99, Duration::from_micros(990)), "p99 {p99:?}");
        assert!(p50 < p99);
    }

    #[test]
    fn a_single_outlier_moves_the_p99_not_the_p50() {
        let h = Histogram::new();
        for _ in 0..99 {
            h.record(Duration::from_micros(10));
        }
        h.record(Duration::from_secs(1));
        assert!(h.quantile(0.5).unwrap() < Duration::from_micros(12));
        assert!(h.quantile(0.99).unwrap() < Duration::from_micros(12));
        assert!(h.quantile(1.0).unwrap() >= Duration::from_secs(1));
    }

    #[test]
    fn empty_and_huge() {
        let h = Histogram::new();
        assert_eq!(h.quantile(0.5), None);
        h.record(Duration::MAX);
        assert_eq!(h.quantile(0.5), Some(Duration::from_nanos(u64::MAX)));
    }

    #[test]
    fn display_is_one_line() {
        let stats = StageStats {
            name: "orders".into(),
            capacity: 8,
            workers: 2,
            queue_depth: 3,
            in_flight: 1,
            accepted: 10,
            refused: 1,
            completed: 6,
            panicked: 0,
            cancelled: 0,
            replaced: 0,
            throughput: 2.5,
            latency_p50: Some(Duration::from_micros(40)),
            latency_p99: Some(Duration::from_micros(90)),
            batches: 0,
            batched_items: 0,
            largest_batch: 0,
        };
        let line = stats.to_string();
        assert!(!line.contains('\n'));
        assert!(line.starts_with("stage `orders`: 3/8 queued, 1 in flight on 2 workers"));
        assert!(line.ends_with("2.5/s, latency p50 40µs p99 90µs"), "{line}");
    }

    #[test]
    fn batches_show_only_on_a_batched_stage() {
        let mut stats = StageStats {
            name: "db".into(),
            capacity: 8,
            workers: 1,
            queue_depth: 0,
            in_flight: 0,
            accepted: 6,
            refused: 0,
            completed: 6,
            panicked: 0,
            cancelled: 0,
            replaced: 0,
            throughput: 1.0,
            latency_p50: None,
            latency_p99: None,
            batches: 0,
            batched_items: 0,
            largest_batch: 0,
        };
        assert!(!stats.to_string().contains("batches"));
        (stats.batches, stats.batched_items, stats.largest_batch) = (4, 6, 3);
        assert_eq!(stats.mean_batch(), Some(1.5));
        let line = stats.to_string();
        assert!(
            line.ends_with("; 4 batches, mean 1.5 items, largest 3"),
            "{line}"
        );
    }
}
