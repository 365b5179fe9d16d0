//! The node dashboard's plots, drawn from this node's pulse (`telemetry::pulse`): requests and 5xx answers per
//! second, latency percentiles, sign-ins, token grants, the outbox, plugin calls. Over the last hour (10 s
//! samples) or the last day (5-minute aggregates); the last point is the window so far, labelled `now`.

use super::plot::{Kind, Plot, Series, Style, clock_label};
use crate::app::App;
use crate::telemetry::pulse::{self, Sample, Timeline, Window};

/// The plots of `window`, in the dashboard's order.
pub fn plots(app: &App, window: Window) -> Vec<Plot> {
    let timeline = app.metrics.pulse.timeline(window, pulse::now_ms(), pulse::outbox_pending(app));
    from_timeline(&timeline)
}

fn from_timeline(t: &Timeline) -> Vec<Plot> {
    let (span, per) = match t.window {
        Window::Hour => ("last hour", "per 10 s"),
        Window::Day => ("last day", "per 5 min"),
    };
    let seconds = t.window == Window::Hour;
    let x_labels: Vec<String> = t
        .slots
        .iter()
        .map(|slot| if slot.current { "now".to_owned() } else { clock_label(slot.at, seconds) })
        .collect();
    let figure = |id: &str, title: &str, unit: &str, series: Vec<Series>| Plot {
        id: id.to_owned(),
        title: title.to_owned(),
        unit: unit.to_owned(),
        span: span.to_owned(),
        x_labels: x_labels.clone(),
        series,
        kind: Kind::Line,
    };
    let sent = format!("sent {per}");
    let dead = format!("dead {per}");
    vec![
        figure(
            "requests",
            "Requests",
            "per second",
            vec![
                series(t, "requests/s", Style::Accent, |s| rate(s.requests, s)),
                series(t, "5xx/s", Style::Danger, |s| rate(s.errors, s)),
            ],
        ),
        figure(
            "latency",
            "Latency",
            "ms",
            vec![
                series(t, "p50", Style::Accent, |s| latency(s.p50_ms, s)),
                series(t, "p99", Style::Warn, |s| latency(s.p99_ms, s)),
            ],
        ),
        figure(
            "signins",
            "Sign-ins",
            per,
            vec![
                series(t, "succeeded", Style::Ok, |s| count(s.logins_ok)),
                series(t, "failed", Style::Danger, |s| count(s.logins_failed)),
            ],
        ),
        figure("tokens", "Token grants", per, vec![series(t, "tokens", Style::Accent, |s| count(s.tokens))]),
        figure(
            "outbox",
            "Outbox",
            "messages",
            vec![
                series(t, "waiting", Style::Accent, |s| count(s.outbox_pending)),
                series(t, &sent, Style::Ok, |s| count(s.outbox_sent)),
                series(t, &dead, Style::Danger, |s| count(s.outbox_dead)),
            ],
        ),
        figure(
            "plugins",
            "Plugin calls",
            per,
            vec![
                series(t, "calls", Style::Accent, |s| count(s.plugin_calls)),
                series(t, "failed", Style::Danger, |s| count(s.plugin_failures)),
            ],
        ),
    ]
}

/// One series: `value` of every slot that has a sample, a gap elsewhere.
fn series(t: &Timeline, label: &str, style: Style, value: impl Fn(&Sample) -> Option<f64>) -> Series {
    Series {
        label: label.to_owned(),
        points: t.slots.iter().map(|slot| slot.sample.as_ref().and_then(&value)).collect(),
        style,
    }
}

/// `n` per second of the sample's window.
fn rate(n: u32, s: &Sample) -> Option<f64> {
    Some(f64::from(n) / f64::from(s.secs.max(0.001)))
}

fn count(n: u32) -> Option<f64> {
    Some(f64::from(n))
}

/// A latency figure; none in a window without requests (a gap, not zero).
fn latency(ms: f32, s: &Sample) -> Option<f64> {
    (s.requests > 0).then_some(f64::from(ms))
}
