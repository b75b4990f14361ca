//! `loadgen plot`: the classic HdrHistogram "latency by percentile" chart, as a
//! standalone SVG written by hand (no plotting crate).
//!
//! - x: percentile on the log scale of 1/(1-p), so 0%, 90%, 99%, 99.9%, ... are
//!   evenly spaced. It stops at the first "nines" tick at or beyond the largest
//!   sample count (99.9% for 1,000 samples), and at 99.999% at most.
//! - y: latency in milliseconds, linear from 0 to a rounded maximum; when the
//!   highest plotted latency is more than 100 times the lowest median, a linear
//!   axis would flatten every median into the floor, so the axis becomes log10
//!   (one grid line per decade, lighter ones at 2 and 5).
//! - One line per series, sampled at [`SAMPLES`] percentiles evenly spaced on the
//!   x axis, and a legend below the chart with each series' p50, p99, p99.9,
//!   max and sample count.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;

use crate::stats::read_interval_log;

/// One line on the chart.
pub struct Series<'a> {
    pub label: &'a str,
    pub histogram: &'a Histogram<u64>,
}

/// Points per line.
const SAMPLES: usize = 200;
/// The highest x tick is 99.999% (five nines), whatever the sample count.
const MAX_NINES: u32 = 5;
/// Tick labels for 0..=MAX_NINES nines.
const PERCENTILE_TICKS: [&str; 6] = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"];
/// Switch the y axis to log10 beyond this ratio of highest latency to lowest median.
const LOG_SCALE_RATIO: f64 = 100.0;
/// Labels longer than this (in characters) are cut, with an ellipsis.
const LABEL_CHARS_MAX: usize = 40;
/// Line colours, in order; they repeat after ten series.
const COLOURS: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f", "#bcbd22",
];

// Layout, in SVG user units (pixels).
const WIDTH: f64 = 960.0;
const PLOT_LEFT: f64 = 80.0;
const PLOT_RIGHT: f64 = WIDTH - 40.0;
const PLOT_TOP: f64 = 60.0;
const PLOT_BOTTOM: f64 = 480.0;
const LEGEND_TOP: f64 = PLOT_BOTTOM + 80.0;
const LEGEND_ROW: f64 = 22.0;
/// Rough width of one legend character at 12px, to line up the figures column.
const LEGEND_CHAR_WIDTH: f64 = 7.5;

/// The y axis: either linear from 0 or log10 over whole decades, in ms.
enum YAxis {
    Linear { top: f64, step: f64 },
    Log { low_decade: i32, high_decade: i32 },
}

impl YAxis {
    /// Chooses the axis for latencies from `floor_ms` (the lowest plotted
    /// value) to `max_ms`, given the lowest median of all series.
    fn choose(floor_ms: f64, min_p50_ms: f64, max_ms: f64) -> YAxis {
        if max_ms <= 0.0 {
            return YAxis::Linear {
                top: 1.0,
                step: 0.2,
            };
        }
        if min_p50_ms > 0.0 && max_ms / min_p50_ms > LOG_SCALE_RATIO {
            // Histogram values are whole µs, so 0.001 ms is the lowest useful decade.
            let low_decade = floor_ms.max(0.001).log10().floor() as i32;
            let high_decade = (max_ms.log10().ceil() as i32).max(low_decade + 1);
            return YAxis::Log {
                low_decade,
                high_decade,
            };
        }
        let step = nice_step(max_ms / 5.0);
        YAxis::Linear {
            top: (max_ms / step).ceil() * step,
            step,
        }
    }

    /// Vertical position of a latency in ms.
    fn y(&self, ms: f64) -> f64 {
        let fraction = match *self {
            YAxis::Linear { top, .. } => ms / top,
            YAxis::Log {
                low_decade,
                high_decade,
            } => {
                let low = f64::from(low_decade);
                (ms.max(10f64.powi(low_decade)).log10() - low) / (f64::from(high_decade) - low)
            }
        };
        PLOT_BOTTOM - fraction * (PLOT_BOTTOM - PLOT_TOP)
    }

    /// Grid lines: (value in ms, label, or `None` for a minor unlabelled line).
    fn ticks(&self) -> Vec<(f64, Option<String>)> {
        match *self {
            YAxis::Linear { top, step } => {
                let decimals = if step >= 1.0 {
                    0
                } else {
                    (-step.log10()).ceil() as usize
                };
                let count = (top / step).round() as i64;
                (0..=count)
                    .map(|i| {
                        let value = i as f64 * step;
                        (value, Some(format!("{value:.decimals$}")))
                    })
                    .collect()
            }
            YAxis::Log {
                low_decade,
                high_decade,
            } => {
                let mut ticks = Vec::new();
                for decade in low_decade..=high_decade {
                    let value = 10f64.powi(decade);
                    let decimals = usize::try_from(-decade).unwrap_or(0);
                    ticks.push((value, Some(format!("{value:.decimals$}"))));
                    if decade < high_decade {
                        ticks.push((2.0 * value, None));
                        ticks.push((5.0 * value, None));
                    }
                }
                ticks
            }
        }
    }

    fn title(&self) -> &'static str {
        match self {
            YAxis::Linear { .. } => "Latency (ms)",
            YAxis::Log { .. } => "Latency (ms, log scale)",
        }
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw` (which must be positive).
fn nice_step(raw: f64) -> f64 {
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// How many nines the x axis reaches: the first at which 1/(1-p) covers the
/// largest sample count, between 1 (90%) and [`MAX_NINES`].
fn nines_for(samples: u64) -> u32 {
    let mut nines = 1;
    while nines < MAX_NINES && 10u64.pow(nines) < samples {
        nines += 1;
    }
    nines
}

/// Escapes text for XML content and attribute values. Control characters that
/// XML 1.0 forbids become U+FFFD.
fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A label cut to [`LABEL_CHARS_MAX`] characters.
fn short_label(label: &str) -> String {
    if label.chars().count() <= LABEL_CHARS_MAX {
        return label.to_owned();
    }
    let mut cut: String = label.chars().take(LABEL_CHARS_MAX - 1).collect();
    cut.push('…');
    cut
}

/// A latency in µs as ms with about three significant digits.
fn format_ms(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else if ms >= 1.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.3}")
    }
}

/// Renders the latency-by-percentile chart of `series` as a standalone SVG.
pub fn percentile_svg(title: &str, series: &[Series]) -> String {
    let largest = series.iter().map(|s| s.histogram.len()).max().unwrap_or(0);
    let nines = nines_for(largest);
    // Sample points (x in decades of 1/(1-p), latency in ms) for each series.
    let lines: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            if s.histogram.is_empty() {
                return Vec::new();
            }
            (0..SAMPLES)
                .map(|i| {
                    let decades = f64::from(nines) * i as f64 / (SAMPLES - 1) as f64;
                    let quantile = 1.0 - 10f64.powf(-decades);
                    let us = s.histogram.value_at_quantile(quantile);
                    (decades, us as f64 / 1000.0)
                })
                .collect()
        })
        .collect();
    let plotted = lines.iter().flatten().map(|&(_, ms)| ms);
    let max_ms = plotted.clone().fold(0.0, f64::max);
    let floor_ms = plotted.fold(f64::INFINITY, f64::min);
    let min_p50_ms = series
        .iter()
        .filter(|s| !s.histogram.is_empty())
        .map(|s| s.histogram.value_at_quantile(0.5) as f64 / 1000.0)
        .fold(f64::INFINITY, f64::min);
    let axis = YAxis::choose(floor_ms, min_p50_ms, max_ms);
    let x_of = |decades: f64| PLOT_LEFT + decades / f64::from(nines) * (PLOT_RIGHT - PLOT_LEFT);

    let height = LEGEND_TOP + LEGEND_ROW * series.len().max(1) as f64 + 10.0;
    let title_text = title;
    let title = escape_xml(title);
    let mut svg = String::new();
    // `write!` into a String cannot fail; the results are ignored throughout.
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="Helvetica, Arial, sans-serif">"#
    );
    let _ = writeln!(svg, "<title>{title}</title>");
    let _ = writeln!(
        svg,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    // A long title gets a smaller font rather than running off the picture (bold
    // Helvetica averages about 0.6 em per character).
    let title_chars = title_text.chars().count().max(1) as f64;
    let title_size = (18.0f64).min((WIDTH - 40.0) / (0.6 * title_chars)).max(9.0);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="32" font-size="{title_size:.1}" font-weight="bold" text-anchor="middle">{title}</text>"#,
        WIDTH / 2.0
    );

    // Vertical grid and percentile ticks.
    for (nine, label) in PERCENTILE_TICKS.iter().enumerate().take(nines as usize + 1) {
        let x = x_of(nine as f64);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{PLOT_TOP}" x2="{x:.1}" y2="{PLOT_BOTTOM}" stroke="#dddddd"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="{x:.1}" y="{}" font-size="12" text-anchor="middle">{label}</text>"#,
            PLOT_BOTTOM + 20.0
        );
    }
    // Horizontal grid and latency ticks.
    for (ms, label) in axis.ticks() {
        let y = axis.y(ms);
        let colour = if label.is_some() {
            "#dddddd"
        } else {
            "#f0f0f0"
        };
        let _ = writeln!(
            svg,
            r#"<line x1="{PLOT_LEFT}" y1="{y:.1}" x2="{PLOT_RIGHT}" y2="{y:.1}" stroke="{colour}"/>"#
        );
        if let Some(label) = label {
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{:.1}" font-size="12" text-anchor="end">{label}</text>"#,
                PLOT_LEFT - 8.0,
                y + 4.0
            );
        }
    }
    // Frame and axis titles.
    let _ = writeln!(
        svg,
        r##"<rect x="{PLOT_LEFT}" y="{PLOT_TOP}" width="{}" height="{}" fill="none" stroke="#444444"/>"##,
        PLOT_RIGHT - PLOT_LEFT,
        PLOT_BOTTOM - PLOT_TOP
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" font-size="13" text-anchor="middle">Percentile</text>"#,
        (PLOT_LEFT + PLOT_RIGHT) / 2.0,
        PLOT_BOTTOM + 45.0
    );
    let middle = (PLOT_TOP + PLOT_BOTTOM) / 2.0;
    let _ = writeln!(
        svg,
        r#"<text x="22" y="{middle}" font-size="13" text-anchor="middle" transform="rotate(-90 22 {middle})">{}</text>"#,
        axis.title()
    );

    // One line per non-empty series.
    for (index, points) in lines.iter().enumerate() {
        if points.is_empty() {
            continue;
        }
        let colour = COLOURS[index % COLOURS.len()];
        let mut coordinates = String::new();
        for &(decades, ms) in points {
            let _ = write!(coordinates, "{:.1},{:.1} ", x_of(decades), axis.y(ms));
        }
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-linejoin="round" points="{}"/>"#,
            coordinates.trim_end()
        );
    }

    // Legend: a swatch, the label, then the figures in a column of their own.
    let labels: Vec<String> = series.iter().map(|s| short_label(s.label)).collect();
    let label_width =
        labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as f64 * LEGEND_CHAR_WIDTH;
    for (index, s) in series.iter().enumerate() {
        let y = LEGEND_TOP + LEGEND_ROW * index as f64;
        let colour = COLOURS[index % COLOURS.len()];
        let figures = if s.histogram.is_empty() {
            "(no samples)".to_owned()
        } else {
            let h = s.histogram;
            format!(
                "p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms ({} samples)",
                format_ms(h.value_at_quantile(0.5)),
                format_ms(h.value_at_quantile(0.99)),
                format_ms(h.value_at_quantile(0.999)),
                format_ms(h.max()),
                h.len()
            )
        };
        if !s.histogram.is_empty() {
            let _ = writeln!(
                svg,
                r#"<line x1="{PLOT_LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="{colour}" stroke-width="3"/>"#,
                PLOT_LEFT + 24.0
            );
        }
        let _ = writeln!(
            svg,
            r#"<text y="{}" font-size="12"><tspan x="{}" font-weight="bold">{}</tspan><tspan x="{:.1}">{figures}</tspan></text>"#,
            y + 4.0,
            PLOT_LEFT + 32.0,
            escape_xml(&labels[index]),
            PLOT_LEFT + 32.0 + label_width + 16.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// `loadgen plot`'s command line.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Draws the latency-by-percentile chart of one or more runs as an SVG \
file.\n\nEach PATH is a results folder (its latency.hlog is read) or an .hlog file; all the \
intervals of a log are merged into one line, named LABEL."
)]
pub struct PlotArgs {
    /// The SVG file to write.
    #[arg(long, value_name = "FILE.svg")]
    pub out: PathBuf,
    /// The chart's title.
    #[arg(
        long,
        value_name = "TEXT",
        default_value = "Latency by percentile",
        allow_hyphen_values = true
    )]
    pub title: String,
    /// One line of the chart: a name and a results folder or .hlog file.
    #[arg(value_name = "LABEL=PATH", required = true, value_parser = series_spec)]
    pub series: Vec<SeriesSpec>,
}

/// `LABEL=PATH` of `loadgen plot`.
#[derive(Debug, Clone)]
pub struct SeriesSpec {
    pub label: String,
    pub path: PathBuf,
}

fn series_spec(spec: &str) -> Result<SeriesSpec, String> {
    let Some((label, path)) = spec.split_once('=') else {
        return Err(format!("{spec:?} is not LABEL=PATH"));
    };
    if label.is_empty() || path.is_empty() {
        return Err(format!("{spec:?} needs both a LABEL and a PATH"));
    }
    Ok(SeriesSpec {
        label: label.to_owned(),
        path: PathBuf::from(path),
    })
}

/// Runs `loadgen plot`: reads every series, then writes the chart.
///
/// # Errors
/// A message naming the problem: a file that cannot be read or parsed, or an output that
/// cannot be written (nothing is written then).
pub fn run(args: &PlotArgs) -> Result<(), String> {
    let mut histograms = Vec::with_capacity(args.series.len());
    for spec in &args.series {
        histograms.push(read_series(&spec.path)?);
    }
    let series: Vec<Series> = args
        .series
        .iter()
        .zip(&histograms)
        .map(|(spec, histogram)| Series {
            label: &spec.label,
            histogram,
        })
        .collect();
    let svg = percentile_svg(&args.title, &series);
    let out = &args.out;
    std::fs::write(out, svg).map_err(|err| format!("cannot write {}: {err}", out.display()))
}

/// The merged histogram of a results folder's `latency.hlog`, or of an `.hlog` file.
fn read_series(path: &Path) -> Result<Histogram<u64>, String> {
    let file = if path.is_dir() {
        path.join("latency.hlog")
    } else {
        path.to_owned()
    };
    let bytes =
        std::fs::read(&file).map_err(|err| format!("cannot read {}: {err}", file.display()))?;
    let (total, _) =
        read_interval_log(&bytes).map_err(|err| format!("{}: {err}", file.display()))?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{new_histogram, write_interval_log, Latencies};
    use std::time::{Duration, SystemTime};

    /// `count` latencies spread from about `base_us` up to a tail ten times higher.
    fn histogram(count: u64, base_us: u64) -> Histogram<u64> {
        let mut h = new_histogram();
        for i in 0..count {
            let tail = if i % 100 == 0 { 10 } else { 1 };
            h.record(base_us * tail + (i * 7919) % base_us)
                .expect("in range");
        }
        h
    }

    /// The `points` of each polyline, as (x, y) pairs.
    fn polylines(svg: &str) -> Vec<Vec<(f64, f64)>> {
        svg.lines()
            .filter(|line| line.starts_with("<polyline"))
            .map(|line| {
                let points = line
                    .split("points=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .expect("a points attribute");
                points
                    .split(' ')
                    .map(|pair| {
                        let (x, y) = pair.split_once(',').expect("x,y");
                        (x.parse().expect("number"), y.parse().expect("number"))
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn svg_is_standalone_with_one_line_per_series() {
        let (a, b, empty) = (
            histogram(5_000, 800),
            histogram(5_000, 1_500),
            new_histogram(),
        );
        let series = [
            Series {
                label: "ws",
                histogram: &a,
            },
            Series {
                label: "sse",
                histogram: &b,
            },
            Series {
                label: "idle",
                histogram: &empty,
            },
        ];
        let svg = percentile_svg("Two runs", &series);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains(" width=\"960\" ") && svg.contains(" viewBox=\"0 0 960 "));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        assert!(svg.contains("(no samples)"));
        assert!(svg.contains("Latency (ms)") && svg.contains("Percentile"));
        // 5,000 samples: ticks up to 99.99%, no further.
        for tick in ["0%", "90%", "99%", "99.9%", "99.99%"] {
            assert!(svg.contains(&format!(">{tick}</text>")), "{tick}");
        }
        assert!(!svg.contains(">99.999%</text>"));
        // The legend carries the figures.
        assert!(svg.contains("p50 ") && svg.contains("p99.9 ") && svg.contains("max "));
    }

    #[test]
    fn ticks_stop_at_the_useful_percentile() {
        assert_eq!(nines_for(0), 1);
        assert_eq!(nines_for(10), 1);
        assert_eq!(nines_for(1_000), 3);
        assert_eq!(nines_for(1_001), 4);
        assert_eq!(nines_for(50_000_000), MAX_NINES);
        let big = histogram(200_000, 500);
        let svg = percentile_svg(
            "t",
            &[Series {
                label: "big",
                histogram: &big,
            }],
        );
        assert!(svg.contains(">99.999%</text>"));
    }

    #[test]
    fn labels_and_title_are_escaped() {
        let h = histogram(100, 100);
        let svg = percentile_svg(
            "a < b & \"c\"",
            &[Series {
                label: "<script>&",
                histogram: &h,
            }],
        );
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;&amp;"));
        assert!(svg.contains("a &lt; b &amp; &quot;c&quot;"));
        assert_eq!(escape_xml("x\u{1}y'"), "x\u{fffd}y&apos;");
    }

    #[test]
    fn lines_rise_from_left_to_right() {
        let (a, b) = (histogram(20_000, 300), histogram(3_000, 5_000));
        for (a, b) in [(&a, &b), (&b, &a)] {
            let svg = percentile_svg(
                "t",
                &[
                    Series {
                        label: "a",
                        histogram: a,
                    },
                    Series {
                        label: "b",
                        histogram: b,
                    },
                ],
            );
            let lines = polylines(&svg);
            assert_eq!(lines.len(), 2);
            for points in lines {
                assert_eq!(points.len(), SAMPLES);
                for pair in points.windows(2) {
                    let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
                    assert!(x1 > x0, "x increases");
                    // SVG y grows downwards: a latency that never decreases
                    // is a y that never increases.
                    assert!(y1 <= y0, "latency never decreases: {y0} then {y1}");
                    assert!((PLOT_TOP..=PLOT_BOTTOM).contains(&y1), "inside the plot");
                }
            }
        }
    }

    #[test]
    fn far_tail_switches_to_a_log_axis() {
        let mut h = histogram(10_000, 200);
        for _ in 0..50 {
            h.record(2_000_000).expect("in range");
        }
        let svg = percentile_svg(
            "t",
            &[Series {
                label: "tail",
                histogram: &h,
            }],
        );
        assert!(svg.contains("Latency (ms, log scale)"));
        let near = histogram(10_000, 200);
        let svg = percentile_svg(
            "t",
            &[Series {
                label: "near",
                histogram: &near,
            }],
        );
        assert!(svg.contains(">Latency (ms)<"));
    }

    #[test]
    fn axis_steps_are_round() {
        assert_eq!(nice_step(0.13), 0.2);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(7.0), 10.0);
        assert_eq!(nice_step(100.0), 100.0);
        let YAxis::Linear { top, step } = YAxis::choose(0.1, 1.0, 8.3) else {
            panic!("linear");
        };
        assert_eq!((top, step), (10.0, 2.0));
    }

    /// A scratch directory, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let path =
                std::env::temp_dir().join(format!("loadgen-plot-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("creates the temp dir");
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// `loadgen plot ARGS`, parsed as main parses it.
    fn plot_args(list: &[&str]) -> Result<PlotArgs, String> {
        let argv = ["loadgen", "plot"].iter().chain(list);
        match crate::args::parse(argv) {
            Ok(crate::args::Command::Plot(args)) => Ok(args),
            Ok(other) => panic!("not plot: {other:?}"),
            Err(err) => {
                assert_eq!(err.exit_code(), 2, "{err}");
                Err(err.to_string())
            }
        }
    }

    fn run_command(list: &[&str]) -> Result<(), String> {
        run(&plot_args(list)?)
    }

    #[test]
    fn run_command_writes_the_svg() {
        let dir = TempDir::new("ok");
        let mut latencies = Latencies::new();
        for i in 0..5_000u64 {
            latencies.record(500 + i % 700, Duration::from_millis(i));
        }
        let mut log = Vec::new();
        write_interval_log(&mut log, &latencies.intervals, SystemTime::now(), "test")
            .expect("writes to a Vec");
        std::fs::write(dir.0.join("latency.hlog"), &log).expect("writes the log");
        std::fs::write(dir.0.join("other.hlog"), &log).expect("writes the log");
        let out = dir.0.join("chart.svg");
        let argv = [
            "--out",
            out.to_str().expect("utf-8 path"),
            "--title",
            "run <1>",
            &format!("folder={}", dir.0.display()),
            &format!("file={}", dir.0.join("other.hlog").display()),
        ];
        run_command(&argv).expect("plots");
        let svg = std::fs::read_to_string(&out).expect("the chart exists");
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("run &lt;1&gt;"));
        assert!(svg.contains("(5000 samples)"));
    }

    #[test]
    fn run_command_names_the_problem() {
        let dir = TempDir::new("bad");
        let garbage = dir.0.join("garbage.hlog");
        std::fs::write(&garbage, "{\"not\": \"a log\"}\n").expect("writes");
        let out = dir.0.join("x.svg");
        let out = out.to_str().expect("utf-8 path");
        let err = |list: &[&str]| run_command(list).expect_err("refused");
        let missing = "the following required arguments were not provided";
        assert!(err(&["a=b"]).contains(missing) && err(&["a=b"]).contains("--out"));
        assert!(
            err(&["--out", out]).contains(missing) && err(&["--out", out]).contains("LABEL=PATH")
        );
        assert!(err(&["--out", out, "nolabel"]).contains("is not LABEL=PATH"));
        assert!(err(&["--out", out, "=x"]).contains("LABEL and a PATH"));
        assert!(err(&["--out"]).contains("a value is required for '--out"));
        assert!(err(&["--out", out, "--out", out, "a=b"]).contains("cannot be used multiple times"));
        assert!(err(&["--bogus", "a=b"]).contains("--bogus"));
        // A title may start with a dash; the default one is used without --title.
        assert_eq!(
            plot_args(&["--out", out, "--title", "-5 ms", "a=b"]).map(|a| a.title),
            Ok("-5 ms".to_owned())
        );
        assert_eq!(
            plot_args(&["--out", out, "a=b"]).map(|a| a.title),
            Ok("Latency by percentile".to_owned())
        );
        let missing = dir.0.join("nowhere.hlog");
        let message = err(&["--out", out, &format!("a={}", missing.display())]);
        assert!(message.contains("cannot read") && message.contains("nowhere.hlog"));
        // A folder without a latency.hlog names the file it looked for.
        let message = err(&["--out", out, &format!("a={}", dir.0.display())]);
        assert!(message.contains("latency.hlog"), "{message}");
        let message = err(&["--out", out, &format!("a={}", garbage.display())]);
        assert!(message.contains("garbage.hlog") && message.contains("not an interval log"));
        assert!(!Path::new(out).exists(), "nothing written on error");
    }
}
