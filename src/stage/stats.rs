//! A stage's figures: counters, and a lock-free log-linear histogram of
//! latencies; durations shown in human units ([`HumanDuration`]).

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
///
/// # Formats
///
/// `Display` is one line, durations in human units
/// ([`HumanDuration`]: `491.5 µs`, `12.3 ms`, `1.20 s`). With the `serde`
/// feature it serialises as an object of the fields above, each latency
/// twice: as text for people (`"latency_p50": "491.5 µs"`) and as whole
/// nanoseconds for programs (`"latency_p50_ns": 491519`), both `null`
/// before the first item. [`latency_histogram`](StageStats::latency_histogram)
/// is left out of JSON.
#[derive(Clone, Debug, PartialEq)]
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
    /// The latencies the percentiles come from: counts since the stage was
    /// built. Subtract an earlier reading ([`LatencyHistogram::since`]) for
    /// the distribution of an interval.
    pub latency_histogram: LatencyHistogram,
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

#[cfg(feature = "serde")]
impl serde::Serialize for StageStats {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let human = |d: Option<Duration>| d.map(|d| HumanDuration(d).to_string());
        let nanos =
            |d: Option<Duration>| d.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let mut s = serializer.serialize_struct("StageStats", 20)?;
        s.serialize_field("name", &self.name)?;
        s.serialize_field("capacity", &self.capacity)?;
        s.serialize_field("workers", &self.workers)?;
        s.serialize_field("queue_depth", &self.queue_depth)?;
        s.serialize_field("in_flight", &self.in_flight)?;
        s.serialize_field("accepted", &self.accepted)?;
        s.serialize_field("refused", &self.refused)?;
        s.serialize_field("completed", &self.completed)?;
        s.serialize_field("panicked", &self.panicked)?;
        s.serialize_field("cancelled", &self.cancelled)?;
        s.serialize_field("replaced", &self.replaced)?;
        s.serialize_field("throughput", &self.throughput)?;
        s.serialize_field("latency_p50", &human(self.latency_p50))?;
        s.serialize_field("latency_p50_ns", &nanos(self.latency_p50))?;
        s.serialize_field("latency_p99", &human(self.latency_p99))?;
        s.serialize_field("latency_p99_ns", &nanos(self.latency_p99))?;
        s.serialize_field("batches", &self.batches)?;
        s.serialize_field("batched_items", &self.batched_items)?;
        s.serialize_field("largest_batch", &self.largest_batch)?;
        s.serialize_field("mean_batch", &self.mean_batch())?;
        s.end()
    }
}

/// A duration in the unit a person reads best, with three or four
/// significant digits: `850 ns`, `491.5 µs`, `12.3 ms`, `1.20 s`,
/// `2 min 05 s`, `3 h 07 min`.
///
/// Every figure milieu shows a person uses it: [`StageStats`]'s `Display`
/// and JSON, and the debug views (`milieu::http::debug`). `Debug` of a
/// [`Duration`] (`491.519µs`, or serde's `{"secs":0,"nanos":491519}`) is
/// for programmers; this is for a dashboard.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use milieu::stage::HumanDuration;
///
/// assert_eq!(HumanDuration(Duration::from_nanos(491_519)).to_string(), "491.5 µs");
/// assert_eq!(HumanDuration(Duration::from_micros(12_345)).to_string(), "12.3 ms");
/// assert_eq!(HumanDuration(Duration::from_millis(1_204)).to_string(), "1.20 s");
/// assert_eq!(HumanDuration(Duration::from_secs(125)).to_string(), "2 min 05 s");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    /// Honours width and alignment (`{:>9}`), for columns.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.text())
    }
}

impl HumanDuration {
    fn text(&self) -> String {
        let nanos = self.0.as_nanos();
        // Each unit up to where its rounded figure would read 1000.0.
        if nanos < 1_000 {
            format!("{nanos} ns")
        } else if nanos < 999_950 {
            format!("{:.1} µs", nanos as f64 / 1e3)
        } else if nanos < 999_950_000 {
            format!("{:.1} ms", nanos as f64 / 1e6)
        } else if nanos < 59_995_000_000 {
            format!("{:.2} s", nanos as f64 / 1e9)
        } else {
            let secs = (nanos as f64 / 1e9).round() as u64;
            if secs < 3_600 {
                format!("{} min {:02} s", secs / 60, secs % 60)
            } else {
                let mins = secs / 60;
                format!("{} h {:02} min", mins / 60, mins % 60)
            }
        }
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
            (Some(p50), Some(p99)) => write!(
                f,
                ", latency p50 {} p99 {}",
                HumanDuration(p50),
                HumanDuration(p99)
            )?,
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

    /// The counts now, as a plain value (the buckets are read one by one:
    /// under load the reading may miss the few items recorded meanwhile).
    pub(super) fn snapshot(&self) -> LatencyHistogram {
        let counts = self
            .buckets
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let count = b.load(Ordering::Relaxed);
                // `BUCKETS` (496) fits in a u16.
                (count > 0).then_some((i as u16, count))
            })
            .collect();
        LatencyHistogram { counts }
    }

    /// The `q`-quantile of the counts now; see [`LatencyHistogram::quantile`].
    #[cfg(test)]
    pub(super) fn quantile(&self, q: f64) -> Option<Duration> {
        self.snapshot().quantile(q)
    }
}

/// A reading of a stage's latency histogram: how many items completed in
/// each bucket since the stage was built (the histogram
/// [`StageStats::latency_histogram`] carries).
///
/// Buckets are log-linear: values below 8 ns have one each, above that
/// every power of two is split into 8 equal buckets, so a quantile (the top
/// of its bucket) is never below the true value and at most 12.5% above
/// it. Two readings subtract ([`since`](LatencyHistogram::since)) into the
/// distribution of the items completed in between, which is how the debug
/// views chart per-interval percentiles.
///
/// # Examples
///
/// ```
/// use milieu::stage::{CloseMode, Stage};
///
/// let stage = Stage::builder("sleepy").build(|ms: u64| {
///     std::thread::sleep(std::time::Duration::from_millis(ms))
/// })?;
/// futures::executor::block_on(stage.submit(1)?)?;
/// let before = stage.stats().latency_histogram;
/// futures::executor::block_on(stage.submit(2)?)?;
/// let after = stage.stats().latency_histogram;
///
/// let between = after.since(&before);
/// assert_eq!((before.count(), after.count(), between.count()), (1, 2, 1));
/// assert!(between.quantile(0.5).unwrap() >= std::time::Duration::from_millis(2));
/// stage.close(CloseMode::Drain)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// `(bucket, count)` for the buckets that are not empty, in bucket
    /// order.
    counts: Vec<(u16, u64)>,
}

impl LatencyHistogram {
    /// How many latencies the reading holds.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|&(_, n)| n).sum()
    }

    /// The `q`-quantile (`q` in 0.0..=1.0, clamped): the top of the bucket
    /// holding the value of rank `ceil(q * count)`; `None` when the reading
    /// is empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        // The float product is exact enough: ranks only need to land in
        // the right bucket, and `clamp` keeps them in 1..=total.
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for &(i, count) in &self.counts {
            seen += count;
            if seen >= rank {
                return Some(Duration::from_nanos(upper_bound(usize::from(i))));
            }
        }
        None // unreachable: the counts sum to `total`
    }

    /// The latencies recorded after `earlier` (a reading of the same
    /// stage): this reading's counts minus `earlier`'s, bucket by bucket.
    /// A bucket that reads lower than in `earlier` (another stage's
    /// reading, or the few items a reading under load missed) counts 0.
    pub fn since(&self, earlier: &LatencyHistogram) -> LatencyHistogram {
        let mut old = earlier.counts.iter().peekable();
        let mut counts = Vec::new();
        for &(i, count) in &self.counts {
            while old.next_if(|&&(j, _)| j < i).is_some() {}
            let before = old.next_if(|&&(j, _)| j == i).map_or(0, |&(_, n)| n);
            if count > before {
                counts.push((i, count - before));
            }
        }
        LatencyHistogram { counts }
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
            latency_histogram: LatencyHistogram::default(),
            batches: 0,
            batched_items: 0,
            largest_batch: 0,
        };
        let line = stats.to_string();
        assert!(!line.contains('\n'));
        assert!(line.starts_with("stage `orders`: 3/8 queued, 1 in flight on 2 workers"));
        assert!(
            line.ends_with("2.5/s, latency p50 40.0 µs p99 90.0 µs"),
            "{line}"
        );
    }

    #[test]
    fn human_durations_pick_the_unit_a_person_reads() {
        let h = |nanos: u64| HumanDuration(Duration::from_nanos(nanos)).to_string();
        assert_eq!(h(0), "0 ns");
        assert_eq!(h(999), "999 ns");
        assert_eq!(h(1_000), "1.0 µs");
        assert_eq!(h(491_519), "491.5 µs");
        // Never "1000.0 µs": the next unit takes over where rounding would.
        assert_eq!(h(999_949), "999.9 µs");
        assert_eq!(h(999_950), "1.0 ms");
        assert_eq!(h(12_345_678), "12.3 ms");
        assert_eq!(h(999_950_000), "1.00 s");
        assert_eq!(h(1_204_000_000), "1.20 s");
        assert_eq!(h(59_994_000_000), "59.99 s");
        assert_eq!(h(59_995_000_000), "1 min 00 s");
        assert_eq!(h(3_599_000_000_000), "59 min 59 s");
        assert_eq!(h(7_620_000_000_000), "2 h 07 min");
        assert_eq!(
            HumanDuration(Duration::MAX).to_string().split(' ').nth(1),
            Some("h")
        );
    }

    #[test]
    fn a_reading_minus_an_earlier_one_is_what_came_between() {
        let h = Histogram::new();
        for _ in 0..10 {
            h.record(Duration::from_micros(10));
        }
        let before = h.snapshot();
        for _ in 0..5 {
            h.record(Duration::from_millis(3));
        }
        h.record(Duration::from_micros(10));
        let after = h.snapshot();
        let between = after.since(&before);
        assert_eq!(
            (before.count(), after.count(), between.count()),
            (10, 16, 6)
        );
        assert!(between.quantile(0.5).unwrap() >= Duration::from_millis(3));
        assert!(between.quantile(0.0).unwrap() < Duration::from_micros(12));
        // Nothing between a reading and itself; never negative.
        assert_eq!(after.since(&after).count(), 0);
        assert_eq!(before.since(&after).count(), 0);
        assert_eq!(after.since(&LatencyHistogram::default()), after);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn json_gives_latencies_as_text_and_as_nanoseconds() {
        let h = Histogram::new();
        h.record(Duration::from_nanos(491_519));
        let stats = StageStats {
            name: "db".into(),
            capacity: 8,
            workers: 1,
            queue_depth: 0,
            in_flight: 0,
            accepted: 1,
            refused: 0,
            completed: 1,
            panicked: 0,
            cancelled: 0,
            replaced: 0,
            throughput: 0.5,
            latency_p50: Some(Duration::from_nanos(491_519)),
            latency_p99: None,
            latency_histogram: h.snapshot(),
            batches: 0,
            batched_items: 0,
            largest_batch: 0,
        };
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["latency_p50"], "491.5 µs");
        assert_eq!(json["latency_p50_ns"], 491_519);
        assert!(json["latency_p99"].is_null() && json["latency_p99_ns"].is_null());
        assert_eq!(json["name"], "db");
        assert!(json.get("latency_histogram").is_none(), "{json}");
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
            latency_histogram: LatencyHistogram::default(),
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
