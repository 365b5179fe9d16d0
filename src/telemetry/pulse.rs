//! The pulse: node-wide figures for the dashboard's plots, kept in memory (no external time-series database).
//!
//! `Pulse` (a field of `Metrics`) holds atomic counters bumped right where the Prometheus series are recorded:
//! requests and 5xx answers with their latency in log-spaced buckets, sign-ins that succeeded or failed, tokens
//! issued, outbox messages sent or dead, plugin calls and failed calls. Every `STEP_SECS` the sampler (`run`,
//! started and stopped by `app::run_with_routes`) takes the counters (swapping them to zero) into a `Sample`
//! and pushes it into a `Ring`: the last hour at 10 s (360 samples) and the last day at 5 minutes (288
//! aggregates rolled up from the 10 s samples as they arrive). The current, unfinished window is read without
//! taking it, so the dashboard's latest point is "now" and a fresh node shows something at once.
//!
//! Memory is bounded and fixed: a `Sample` is 64 bytes (a test pins it), so the hour holds 23,040 bytes, the
//! day 18,432 and the open 5-minute aggregate 64 more; the counters and the 112 latency buckets are 968 bytes.
//! About 42 KB per node, whatever the traffic or the number of tenants.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use crate::app::{App, AppState};

/// The sampling period of the hour ring.
pub const STEP_SECS: i64 = 10;
/// Samples in the hour ring.
pub const HOUR_SAMPLES: usize = 360;
/// The width of one aggregate of the day ring.
pub const ROLLUP_SECS: i64 = 300;
/// Aggregates in the day ring.
pub const DAY_SAMPLES: usize = 288;
/// Latency buckets: bucket `i` holds durations from 2^(i/4) µs up to the next; the last also holds anything
/// slower (from about 4.5 minutes).
const BUCKETS: usize = 112;
const PER_OCTAVE: f64 = 4.0;

/// What the plots show of one window (10 s in the hour ring, 5 minutes in the day ring).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// The end of the window, unix seconds.
    pub at: i64,
    /// The window's length in seconds (rates divide by it).
    pub secs: f32,
    pub requests: u32,
    /// Answers with a 5xx status.
    pub errors: u32,
    /// Request latency percentiles in milliseconds; 0 when there was no request.
    pub p50_ms: f32,
    pub p99_ms: f32,
    pub logins_ok: u32,
    pub logins_failed: u32,
    pub tokens: u32,
    /// Outbox messages waiting, at the end of the window (the largest seen in an aggregate).
    pub outbox_pending: u32,
    pub outbox_sent: u32,
    pub outbox_dead: u32,
    pub plugin_calls: u32,
    /// Plugin calls whose outcome was not `ok`.
    pub plugin_failures: u32,
}

impl Sample {
    /// Adds a later window `s` into this aggregate: counts and lengths are summed, the pending depth and the
    /// p99 keep their largest value (a spike stays visible), the p50 is the mean weighted by requests.
    pub fn absorb(&mut self, s: &Sample) {
        let (mine, theirs) = (self.requests as f64, s.requests as f64);
        if mine + theirs > 0.0 {
            self.p50_ms = ((self.p50_ms as f64 * mine + s.p50_ms as f64 * theirs) / (mine + theirs)) as f32;
        }
        self.p99_ms = self.p99_ms.max(s.p99_ms);
        self.at = self.at.max(s.at);
        self.secs += s.secs;
        self.requests = self.requests.saturating_add(s.requests);
        self.errors = self.errors.saturating_add(s.errors);
        self.logins_ok = self.logins_ok.saturating_add(s.logins_ok);
        self.logins_failed = self.logins_failed.saturating_add(s.logins_failed);
        self.tokens = self.tokens.saturating_add(s.tokens);
        self.outbox_pending = self.outbox_pending.max(s.outbox_pending);
        self.outbox_sent = self.outbox_sent.saturating_add(s.outbox_sent);
        self.outbox_dead = self.outbox_dead.saturating_add(s.outbox_dead);
        self.plugin_calls = self.plugin_calls.saturating_add(s.plugin_calls);
        self.plugin_failures = self.plugin_failures.saturating_add(s.plugin_failures);
    }
}

/// Which ring a plot reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last hour at 10 s.
    Hour,
    /// The last day at 5 minutes.
    Day,
}

impl Window {
    /// `day` is the day; anything else the hour.
    pub fn parse(raw: Option<&str>) -> Window {
        if raw == Some("day") { Window::Day } else { Window::Hour }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Hour => "hour",
            Window::Day => "day",
        }
    }
}

/// The 5-minute aggregate being filled.
#[derive(Debug, Clone, Copy)]
struct Open {
    /// `at / ROLLUP_SECS` of its samples (a sample ending on the boundary belongs to the slot before).
    slot: i64,
    sample: Sample,
}

/// The two rings. Plain data, so the roll-up can be tested without a clock.
#[derive(Debug)]
pub struct Ring {
    hour: VecDeque<Sample>,
    day: VecDeque<Sample>,
    open: Option<Open>,
    /// When the window not yet taken began, unix milliseconds.
    started_ms: i64,
}

impl Ring {
    pub fn new(started_ms: i64) -> Ring {
        Ring {
            hour: VecDeque::with_capacity(HOUR_SAMPLES),
            day: VecDeque::with_capacity(DAY_SAMPLES),
            open: None,
            started_ms,
        }
    }

    /// Adds a finished 10 s window: into the hour (the oldest leaves past 360) and into its 5-minute aggregate,
    /// which joins the day (the oldest leaving past 288) once a sample of a later slot arrives.
    pub fn push(&mut self, s: Sample) {
        if self.hour.len() == HOUR_SAMPLES {
            self.hour.pop_front();
        }
        self.hour.push_back(s);
        let slot = (s.at - 1).div_euclid(ROLLUP_SECS);
        if self.open.is_some_and(|o| o.slot == slot) {
            if let Some(open) = self.open.as_mut() {
                open.sample.absorb(&s);
            }
            return;
        }
        if let Some(done) = self.open.take() {
            if self.day.len() == DAY_SAMPLES {
                self.day.pop_front();
            }
            self.day.push_back(done.sample);
        }
        self.open = Some(Open { slot, sample: Sample { at: (slot + 1) * ROLLUP_SECS, ..s } });
    }

    pub fn hour(&self) -> &VecDeque<Sample> {
        &self.hour
    }

    pub fn day(&self) -> &VecDeque<Sample> {
        &self.day
    }

    /// The 5-minute aggregate not yet in the day ring.
    pub fn open(&self) -> Option<Sample> {
        self.open.map(|o| o.sample)
    }
}

/// One x position of a plot: a time and its sample, if there is one.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    /// Unix seconds: the end of the window.
    pub at: i64,
    pub sample: Option<Sample>,
    /// The unfinished window (the last slot).
    pub current: bool,
}

/// What a plot of one window shows: `HOUR_SAMPLES` or `DAY_SAMPLES` slots of history, then the current one.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub window: Window,
    pub step_secs: i64,
    pub slots: Vec<Slot>,
}

/// Places `history` (oldest first) on a grid of `keep` slots `step` apart that ends at its newest sample (a
/// node that has not sampled yet ends one step before `latest`), then appends `latest` as the current slot.
fn grid(history: &VecDeque<Sample>, latest: Sample, keep: usize, step: i64) -> Vec<Slot> {
    let keep_i = keep as i64;
    let anchor = history.back().map_or(latest.at - step, |s| s.at);
    let mut slots: Vec<Slot> =
        (0..keep_i).map(|i| Slot { at: anchor - (keep_i - 1 - i) * step, sample: None, current: false }).collect();
    for s in history {
        let back = ((anchor - s.at) as f64 / step as f64).round() as i64;
        if (0..keep_i).contains(&back)
            && let Some(slot) = slots.get_mut((keep_i - 1 - back) as usize)
        {
            slot.sample = Some(*s);
        }
    }
    slots.push(Slot { at: latest.at, sample: Some(latest), current: true });
    slots
}

/// Node-wide counters and the rings of samples taken from them.
pub struct Pulse {
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; BUCKETS],
    logins_ok: AtomicU64,
    logins_failed: AtomicU64,
    tokens: AtomicU64,
    outbox_sent: AtomicU64,
    outbox_dead: AtomicU64,
    plugin_calls: AtomicU64,
    plugin_failures: AtomicU64,
    ring: Mutex<Ring>,
}

impl Default for Pulse {
    fn default() -> Self {
        Self::new()
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The latency bucket of a duration.
fn bucket_of(seconds: f64) -> usize {
    let micros = seconds * 1e6;
    if micros.is_nan() || micros < 1.0 {
        return 0;
    }
    ((micros.log2() * PER_OCTAVE) as usize).min(BUCKETS - 1)
}

/// The lower bound of bucket `i` in microseconds.
fn bucket_floor(i: usize) -> f64 {
    (i as f64 / PER_OCTAVE).exp2()
}

/// The `q` quantile (0..1) of the durations counted in `buckets`, in milliseconds, interpolated within its
/// bucket; 0 when nothing was counted.
fn quantile_ms(buckets: &[u64], q: f64) -> f32 {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (i, &count) in buckets.iter().enumerate() {
        if count == 0 {
            continue;
        }
        if (seen + count) as f64 >= rank {
            let within = ((rank - seen as f64) / count as f64).clamp(0.0, 1.0);
            let (lo, hi) = (bucket_floor(i), bucket_floor(i + 1));
            return (lo * (hi / lo).powf(within) / 1000.0) as f32;
        }
        seen += count;
    }
    (bucket_floor(BUCKETS - 1) / 1000.0) as f32
}

fn to_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl Pulse {
    pub fn new() -> Self {
        Pulse {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
            logins_ok: AtomicU64::new(0),
            logins_failed: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            outbox_sent: AtomicU64::new(0),
            outbox_dead: AtomicU64::new(0),
            plugin_calls: AtomicU64::new(0),
            plugin_failures: AtomicU64::new(0),
            ring: Mutex::new(Ring::new(now_ms())),
        }
    }

    /// An HTTP answer with `status`, after `seconds`.
    pub fn request(&self, status: u16, seconds: f64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency[bucket_of(seconds)].fetch_add(1, Ordering::Relaxed);
    }

    /// A tenant sign-in attempt with the outcome label of `gatehouse_login_attempts_total`: `success` counts as
    /// succeeded; `second_factor` and `unverified` are neither (the sign-in goes on, or the audit log records
    /// no failure); every other outcome failed.
    pub fn sign_in(&self, outcome: &str) {
        let counter = match outcome {
            "success" => &self.logins_ok,
            "second_factor" | "unverified" => return,
            _ => &self.logins_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn token_issued(&self) {
        self.tokens.fetch_add(1, Ordering::Relaxed);
    }

    pub fn outbox_sent(&self) {
        self.outbox_sent.fetch_add(1, Ordering::Relaxed);
    }

    pub fn outbox_dead(&self) {
        self.outbox_dead.fetch_add(1, Ordering::Relaxed);
    }

    pub fn plugin_call(&self, ok: bool) {
        self.plugin_calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.plugin_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The window from `started_ms` to `now_ms` as counted so far: taken (the counters start again from zero)
    /// or only read.
    fn window(&self, started_ms: i64, now_ms: i64, outbox_pending: u32, take: bool) -> Sample {
        let read = |c: &AtomicU64| if take { c.swap(0, Ordering::Relaxed) } else { c.load(Ordering::Relaxed) };
        let buckets: Vec<u64> = self.latency.iter().map(read).collect();
        Sample {
            at: now_ms.div_euclid(1000),
            secs: ((now_ms - started_ms).max(1) as f64 / 1000.0) as f32,
            requests: to_u32(read(&self.requests)),
            errors: to_u32(read(&self.errors)),
            p50_ms: quantile_ms(&buckets, 0.50),
            p99_ms: quantile_ms(&buckets, 0.99),
            logins_ok: to_u32(read(&self.logins_ok)),
            logins_failed: to_u32(read(&self.logins_failed)),
            tokens: to_u32(read(&self.tokens)),
            outbox_pending,
            outbox_sent: to_u32(read(&self.outbox_sent)),
            outbox_dead: to_u32(read(&self.outbox_dead)),
            plugin_calls: to_u32(read(&self.plugin_calls)),
            plugin_failures: to_u32(read(&self.plugin_failures)),
        }
    }

    /// Ends the current window at `now_ms` and pushes it into the rings; the sampler's one step.
    pub fn sample(&self, now_ms: i64, outbox_pending: u32) -> Sample {
        let mut ring = self.lock();
        let sample = self.window(ring.started_ms, now_ms, outbox_pending, true);
        ring.started_ms = now_ms;
        ring.push(sample);
        sample
    }

    /// Samples in the hour ring (360 once the node has run an hour).
    pub fn samples_in_hour(&self) -> usize {
        self.lock().hour.len()
    }

    /// The slots a plot of `window` shows, the last one being the window so far (up to `now_ms`). In the day
    /// view that last slot is the open 5-minute aggregate with the window so far added.
    pub fn timeline(&self, window: Window, now_ms: i64, outbox_pending: u32) -> Timeline {
        let ring = self.lock();
        let current = self.window(ring.started_ms, now_ms, outbox_pending, false);
        let (slots, step_secs) = match window {
            Window::Hour => (grid(&ring.hour, current, HOUR_SAMPLES, STEP_SECS), STEP_SECS),
            Window::Day => {
                let latest = match ring.open() {
                    Some(mut open) => {
                        open.absorb(&current);
                        open.outbox_pending = current.outbox_pending;
                        open
                    }
                    None => current,
                };
                (grid(&ring.day, latest, DAY_SAMPLES, ROLLUP_SECS), ROLLUP_SECS)
            }
        };
        Timeline { window, step_secs, slots }
    }
}

/// Outbox messages waiting on this node, as the dispatcher counts them.
pub fn outbox_pending(app: &App) -> u32 {
    let total: i64 = crate::email::outbox::Kind::ALL.into_iter().map(|kind| app.outbox.pending(kind)).sum();
    u32::try_from(total.max(0)).unwrap_or(u32::MAX)
}

/// The sampler: one `Pulse::sample` every `STEP_SECS`, the first one a step after start. Runs until aborted.
pub async fn run(app: AppState) {
    let period = Duration::from_secs(STEP_SECS as u64);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        app.metrics.pulse.sample(now_ms(), outbox_pending(&app));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: i64, requests: u32, logins_ok: u32) -> Sample {
        Sample { at, secs: 10.0, requests, logins_ok, p50_ms: 2.0, p99_ms: at as f32, ..Sample::default() }
    }

    #[test]
    fn a_sample_is_64_bytes_as_the_module_doc_says() {
        assert_eq!(std::mem::size_of::<Sample>(), 64);
    }

    #[test]
    fn the_hour_keeps_the_last_360_samples() {
        let mut ring = Ring::new(0);
        let start = 1_800_000_000; // a multiple of 300
        for i in 1..=400 {
            ring.push(sample(start + i * STEP_SECS, 1, 0));
        }
        assert_eq!(ring.hour().len(), HOUR_SAMPLES);
        assert_eq!(ring.hour().front().unwrap().at, start + 41 * STEP_SECS, "the oldest 40 left");
        assert_eq!(ring.hour().back().unwrap().at, start + 400 * STEP_SECS);
    }

    #[test]
    fn five_minutes_roll_up_into_one_aggregate() {
        let mut ring = Ring::new(0);
        let start = 1_800_000_000;
        // 30 samples end within the first five minutes (the last exactly on the boundary), then one more.
        for i in 1..=31 {
            ring.push(sample(start + i * STEP_SECS, 2, u32::from(i % 3 == 0)));
        }
        assert_eq!(ring.day().len(), 1, "the first slot is done");
        let done = ring.day()[0];
        assert_eq!(done.at, start + ROLLUP_SECS);
        assert_eq!(done.requests, 60, "30 × 2");
        assert_eq!(done.logins_ok, 10);
        assert_eq!(done.secs, 300.0);
        assert_eq!(done.p99_ms, (start + 300) as f32, "the largest p99");
        assert_eq!(done.p50_ms, 2.0);
        let open = ring.open().unwrap();
        assert_eq!((open.at, open.requests), (start + 2 * ROLLUP_SECS, 2));

        // A day and more of samples: 288 aggregates kept.
        for i in 32..=(31 + 290 * 30) {
            ring.push(sample(start + i * STEP_SECS, 1, 0));
        }
        assert_eq!(ring.day().len(), DAY_SAMPLES);
        assert!(ring.day().iter().all(|s| s.requests == 30), "every slot sums its 30 samples");
    }

    #[test]
    fn quantiles_come_from_the_buckets() {
        let pulse = Pulse::new();
        for _ in 0..98 {
            pulse.request(200, 0.002);
        }
        pulse.request(500, 0.5);
        pulse.request(500, 0.5);
        let s = pulse.sample(now_ms(), 3);
        assert_eq!((s.requests, s.errors, s.outbox_pending), (100, 2, 3));
        assert!((1.5..2.5).contains(&s.p50_ms), "p50 {}", s.p50_ms);
        assert!((350.0..600.0).contains(&s.p99_ms), "p99 {}", s.p99_ms);
        // Taken: the next window starts from zero.
        assert_eq!(pulse.sample(now_ms(), 0).requests, 0);
    }

    #[test]
    fn the_current_window_is_the_last_slot_before_any_sample() {
        let pulse = Pulse::new();
        pulse.request(200, 0.01);
        pulse.sign_in("success");
        pulse.sign_in("wrong_password");
        pulse.sign_in("second_factor");
        let now = now_ms() + 1500;
        for window in [Window::Hour, Window::Day] {
            let timeline = pulse.timeline(window, now, 0);
            let keep = if window == Window::Hour { HOUR_SAMPLES } else { DAY_SAMPLES };
            assert_eq!(timeline.slots.len(), keep + 1);
            let last = timeline.slots.last().unwrap();
            assert!(last.current);
            let s = last.sample.unwrap();
            assert_eq!((s.requests, s.logins_ok, s.logins_failed), (1, 1, 1));
            assert!(timeline.slots[..keep].iter().all(|slot| slot.sample.is_none()));
        }
        assert_eq!(pulse.samples_in_hour(), 0, "reading does not take");
        pulse.sample(now, 0);
        let timeline = pulse.timeline(Window::Hour, now + 2000, 0);
        let n = timeline.slots.len();
        assert_eq!(timeline.slots[n - 2].sample.unwrap().requests, 1, "the taken window is the newest history");
        assert_eq!(timeline.slots[n - 1].sample.unwrap().requests, 0);
    }
}
