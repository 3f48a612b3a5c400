//! The figures of one stage over the last minutes: a bounded ring of
//! per-interval points, each computed from two readings of the stage's
//! cumulative figures.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::stage::{LatencyHistogram, StageStats};

/// The most points a stage keeps, whatever `keep` and the sampling rate:
/// 1024 points of 5 numbers each, a few tens of KiB per stage.
pub(super) const MAX_POINTS: usize = 1024;

/// One interval between two samples.
#[derive(Clone, Debug)]
pub(super) struct Point {
    /// When the interval ended (the later sample).
    pub(super) at: Instant,
    /// How long the interval was.
    pub(super) span: Duration,
    /// Items waiting in the queue at `at`.
    pub(super) queue_depth: usize,
    /// Items completed in the interval, per second.
    pub(super) throughput: f64,
    /// Median latency of the items completed in the interval (`None` if
    /// none completed).
    pub(super) p50: Option<Duration>,
    /// 99th percentile of the same.
    pub(super) p99: Option<Duration>,
}

/// What a sample keeps of the cumulative figures, to subtract from the
/// next one.
#[derive(Debug)]
struct Reading {
    at: Instant,
    completed: u64,
    histogram: LatencyHistogram,
}

/// The ring of one stage.
#[derive(Debug)]
pub(super) struct History {
    keep: Duration,
    last: Option<Reading>,
    points: VecDeque<Point>,
}

impl History {
    pub(super) fn new(keep: Duration) -> History {
        History {
            keep,
            last: None,
            points: VecDeque::new(),
        }
    }

    /// Whether the last sample is `every` old or older (or there is none).
    pub(super) fn due(&self, now: Instant, every: Duration) -> bool {
        self.last
            .as_ref()
            .is_none_or(|last| now.saturating_duration_since(last.at) >= every)
    }

    /// Adds the interval from the last sample to this one (the first
    /// sample only starts the history), then drops what is older than
    /// `keep` or beyond [`MAX_POINTS`].
    pub(super) fn record(&mut self, at: Instant, stats: &StageStats) {
        if let Some(last) = &self.last {
            if at <= last.at {
                return; // two samples at once: nothing between them
            }
            let span = at - last.at;
            let between = stats.latency_histogram.since(&last.histogram);
            self.points.push_back(Point {
                at,
                span,
                queue_depth: stats.queue_depth,
                throughput: stats.completed.saturating_sub(last.completed) as f64
                    / span.as_secs_f64(),
                p50: between.quantile(0.50),
                p99: between.quantile(0.99),
            });
        }
        self.last = Some(Reading {
            at,
            completed: stats.completed,
            histogram: stats.latency_histogram.clone(),
        });
        while self
            .points
            .front()
            .is_some_and(|p| at.saturating_duration_since(p.at) > self.keep)
            || self.points.len() > MAX_POINTS
        {
            self.points.pop_front();
        }
    }

    /// The points, oldest first.
    pub(super) fn points(&self) -> Vec<Point> {
        self.points.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::{CloseMode, Stage};

    fn run(stage: &Stage<u64, u64>, items: u64) {
        for n in 0..items {
            futures::executor::block_on(stage.submit(n).unwrap()).unwrap();
        }
    }

    #[test]
    fn a_point_is_what_happened_between_two_samples() {
        let stage = Stage::builder("h").build(|n: u64| n).unwrap();
        let mut history = History::new(Duration::from_secs(60));
        let start = Instant::now();
        assert!(history.due(start, Duration::from_secs(5)));
        history.record(start, &stage.stats());
        assert!(history.points().is_empty(), "one sample: no interval yet");
        assert!(!history.due(start + Duration::from_secs(4), Duration::from_secs(5)));
        run(&stage, 10);
        history.record(start + Duration::from_secs(2), &stage.stats());
        // Nothing happened in the next interval.
        history.record(start + Duration::from_secs(4), &stage.stats());
        // A sample at the same instant adds nothing.
        history.record(start + Duration::from_secs(4), &stage.stats());
        let points = history.points();
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].throughput, 5.0);
        assert_eq!(points[0].span, Duration::from_secs(2));
        assert!(points[0].p50.is_some() && points[0].p50 <= points[0].p99);
        assert_eq!(points[1].throughput, 0.0);
        assert_eq!((points[1].p50, points[1].p99), (None, None));
        stage.close(CloseMode::Drain).unwrap();
    }

    #[test]
    fn the_ring_keeps_what_is_recent_and_no_more_than_its_bound() {
        let stage = Stage::builder("h").build(|n: u64| n).unwrap();
        let stats = stage.stats();
        let start = Instant::now();
        let mut history = History::new(Duration::from_secs(60));
        for s in 0..=100 {
            history.record(start + Duration::from_secs(s), &stats);
        }
        let points = history.points();
        // Points 40 to 100 s: at most 60 s before the last sample.
        assert_eq!(points.len(), 61);
        assert_eq!(points[0].at, start + Duration::from_secs(40));
        let mut long = History::new(Duration::from_secs(1 << 20));
        for s in 0..=(MAX_POINTS as u64 + 10) {
            long.record(start + Duration::from_secs(s), &stats);
        }
        assert_eq!(long.points().len(), MAX_POINTS);
        stage.close(CloseMode::Drain).unwrap();
    }
}
