//! Unit tests of `plot.rs`: escaping, the empty state, gaps, the y axis of all zeros, lines and bars.

use super::*;

fn plot(kind: Kind, series: Vec<Series>, labels: &[&str]) -> Plot {
    Plot {
        id: "test".into(),
        title: "Requests".into(),
        unit: "per second".into(),
        span: "last hour".into(),
        x_labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        series,
        kind,
    }
}

fn series(label: &str, points: &[Option<f64>]) -> Series {
    Series { label: label.into(), points: points.to_vec(), style: Style::Accent }
}

#[test]
fn escape_covers_markup_quotes_and_control_characters() {
    assert_eq!(escape(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    assert_eq!(escape("tab\there\u{1}\u{7f}"), "tab\there");
    assert_eq!(escape("plain ü"), "plain ü");
}

#[test]
fn tenant_text_in_labels_and_titles_is_escaped() {
    let mut p = plot(Kind::Line, vec![series("<script>alert(1)</script>", &[Some(1.0), Some(2.0)])], &["a", "<b>"]);
    p.title = "Sign-ins of \"<img src=x onerror=alert(1)>\"".into();
    let html = p.html();
    assert!(!html.contains("<script>") && !html.contains("<img"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
    assert!(html.contains("<th scope=\"row\">&lt;b&gt;</th>"), "{html}");
    assert!(html.contains("&quot;&lt;img src=x onerror=alert(1)&gt;&quot;"), "{html}");
}

#[test]
fn the_svg_is_an_accessible_image_with_a_table_fallback() {
    let p = plot(Kind::Line, vec![series("requests/s", &[Some(12.3), None, Some(4.1)])], &["10:00", "10:01", "now"]);
    let html = p.html();
    assert!(html.contains(r#"role="img""#) && html.contains(r#"<title id="plot-test-title">Requests</title>"#));
    assert!(html.contains("Requests (per second), last hour: requests/s: max 12.3, latest 4.1"), "{html}");
    assert!(html.contains(r#"viewBox="0 0 480 220" width="100%""#), "{html}");
    assert!(html.contains("<details class=\"plot-data\"><summary>Data</summary>"), "{html}");
    assert!(html.contains(r#"<table id="plot-test-data">"#), "{html}");
    // The row without any sample is left out of the table.
    assert!(html.contains("<tr><th scope=\"row\">10:00</th><td>12.3</td></tr>"), "{html}");
    assert!(!html.contains(">10:01</th>"), "{html}");
    assert!(html.contains("<tr><th scope=\"row\">now</th><td>4.1</td></tr>"), "{html}");
    // Colours are classes, never literal values.
    assert!(!html.contains("fill=\"#") && !html.contains("stroke=\"#"), "{html}");
    assert!(html.contains("class=\"line s-accent\""), "{html}");
}

#[test]
fn no_sample_at_all_is_the_no_data_state() {
    for p in [
        plot(Kind::Line, vec![series("a", &[None, None])], &["1", "2"]),
        plot(Kind::Bars, vec![], &[]),
        plot(Kind::Line, vec![series("a", &[Some(1.0)])], &[]),
        plot(Kind::Line, vec![series("a", &[Some(f64::NAN)])], &["1"]),
    ] {
        assert!(p.is_empty());
        let html = p.html();
        assert!(html.contains(">No data yet</text>") && html.contains("<p class=\"empty\">No data yet.</p>"), "{html}");
        assert!(html.contains("last hour: no data yet"), "{html}");
        assert!(!html.contains("<path") && !html.contains("<rect") && !html.contains("<table"), "{html}");
    }
}

#[test]
fn gaps_break_the_line_and_lone_points_get_a_dot() {
    let p =
        plot(Kind::Line, vec![series("a", &[Some(1.0), Some(2.0), None, Some(3.0), None])], &["1", "2", "3", "4", "5"]);
    let svg = p.svg();
    let path = svg.split("<path ").nth(1).expect("a path");
    let d = path.split("d=\"").nth(1).unwrap().split('"').next().unwrap();
    assert_eq!(d.matches('M').count(), 2, "two runs: {d}");
    assert_eq!(d.matches('L').count(), 1, "one segment: {d}");
    // The lone point (also the latest) is a dot.
    assert_eq!(svg.matches("<circle").count(), 1, "{svg}");
    assert!(p.description().contains("max 3, latest 3"), "{}", p.description());
}

#[test]
fn all_zeros_get_an_axis_from_zero_to_one() {
    let p = plot(Kind::Line, vec![series("a", &[Some(0.0), Some(0.0)])], &["1", "2"]);
    assert!(!p.is_empty(), "zeros are data");
    let svg = p.svg();
    assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    for tick in [">0<", ">0.25<", ">0.5<", ">0.75<", ">1<"] {
        assert!(svg.contains(tick), "tick {tick}: {svg}");
    }
    // The zero line sits on the bottom of the plotting area.
    assert!(svg.contains(&format!("y1=\"{BOTTOM:.1}\"")), "{svg}");
}

#[test]
fn scales_are_round_and_cover_the_data() {
    let s = Scale::new(0.0, 12.3);
    assert_eq!((s.bottom, s.top, s.step), (0.0, 15.0, 5.0));
    let s = Scale::new(0.0, 870.0);
    assert_eq!((s.bottom, s.top, s.step), (0.0, 1000.0, 250.0));
    let s = Scale::new(-3.0, 5.0);
    assert!(s.bottom <= -3.0 && s.top >= 5.0 && s.ticks().contains(&0.0));
    assert_eq!(tick_number(25_000.0), "25k");
    assert_eq!(exact_number(2.5), "2.5");
    assert_eq!(exact_number(7.0), "7");
}

#[test]
fn bars_and_lines_draw_different_marks() {
    let data = vec![series("ok", &[Some(1.0), Some(0.0), Some(3.0)]), series("failed", &[Some(2.0), None, Some(1.0)])];
    let bars = plot(Kind::Bars, data.clone(), &["1", "2", "3"]).svg();
    assert!(!bars.contains("<path"), "{bars}");
    // Two series, three slots: bars for the non-zero points (1, 3; 2, 1) plus one legend swatch per series.
    assert_eq!(bars.matches("<rect class=\"bar").count(), 4 + 2, "{bars}");
    let lines = plot(Kind::Line, data, &["1", "2", "3"]).svg();
    assert!(!lines.contains("<rect"), "{lines}");
    assert_eq!(lines.matches("<path class=\"line").count(), 2, "{lines}");
}

#[test]
fn time_labels_are_utc() {
    assert_eq!(clock_label(1_795_421_130, false), "08:05");
    assert_eq!(clock_label(1_795_421_130, true), "08:05:30");
    assert_eq!(date_label(1_795_421_130), "2026-11-23");
}
