//! `loadgen plot`: the classic HdrHistogram "latency by percentile" chart, as a standalone
//! SVG drawn with `plotters` (its SVG backend; text is left to the viewer's fonts).
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
//!
//! Both axes are drawn on plain `f64` coordinates: x in decades of 1/(1-p), y in ms or in
//! log10(ms). [`YAxis`] maps latencies onto y and names the grid lines.

use std::path::{Path, PathBuf};

use std::ops::Range;

use hdrhistogram::Histogram;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

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
const COLOURS: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
];
const GRID: RGBColor = RGBColor(0xdd, 0xdd, 0xdd);
const GRID_MINOR: RGBColor = RGBColor(0xf0, 0xf0, 0xf0);

// Layout, in SVG user units (pixels).
const WIDTH: u32 = 960;
/// Height of the chart (title, plot and axes); the legend goes below it.
const CHART_HEIGHT: u32 = 540;
const LEGEND_ROW: u32 = 22;
/// Middle of the title, and the top of the plot below it.
const TITLE_Y: i32 = 26;
const PLOT_TOP: i32 = 56;
/// Left edge of the legend's swatches, in line with the plot area.
const LEGEND_LEFT: i32 = 80;
/// Font sizes are in plotters' units: the SVG's font-size is the size / `PX`.
const PX: f64 = 1.24;
/// The title's font-size in pixels, and the least a long title gets.
const TITLE_PX: f64 = 18.0;
const TITLE_PX_MIN: f64 = 9.0;
const AXIS_TITLE_SIZE: f64 = 13.0 * PX;
const TEXT_SIZE: f64 = 12.0 * PX;
/// Rough width of one legend character in bold at 12px, to line up the figures column.
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

    /// The chart's y coordinate of a latency in ms.
    fn coord(&self, ms: f64) -> f64 {
        match *self {
            YAxis::Linear { .. } => ms,
            YAxis::Log { low_decade, .. } => ms.max(10f64.powi(low_decade)).log10(),
        }
    }

    /// The range of y coordinates.
    fn range(&self) -> Range<f64> {
        match *self {
            YAxis::Linear { top, .. } => 0.0..top,
            YAxis::Log {
                low_decade,
                high_decade,
            } => f64::from(low_decade)..f64::from(high_decade),
        }
    }

    /// Grid lines, as latencies in ms: labelled ones, and minor unlabelled ones.
    fn ticks(&self) -> (Vec<f64>, Vec<f64>) {
        match *self {
            YAxis::Linear { top, step } => {
                let count = (top / step).round() as i64;
                ((0..=count).map(|i| i as f64 * step).collect(), Vec::new())
            }
            YAxis::Log {
                low_decade,
                high_decade,
            } => {
                let major = (low_decade..=high_decade).map(|d| 10f64.powi(d)).collect();
                let minor = (low_decade..high_decade)
                    .flat_map(|d| [2.0 * 10f64.powi(d), 5.0 * 10f64.powi(d)])
                    .collect();
                (major, minor)
            }
        }
    }

    /// The label of the grid line at y coordinate `coord`.
    fn label(&self, coord: f64) -> String {
        match *self {
            YAxis::Linear { step, .. } => {
                let decimals = if step >= 1.0 {
                    0
                } else {
                    (-step.log10()).ceil() as usize
                };
                format!("{coord:.decimals$}")
            }
            YAxis::Log { .. } => {
                let decade = coord.round() as i32;
                let decimals = usize::try_from(-decade).unwrap_or(0);
                format!("{:.decimals$}", 10f64.powi(decade))
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

/// A linear `f64` axis with the grid lines we choose: `major` ones, labelled, and `minor`
/// ones. plotters' own `WithKeyPoints` does this, but over `f64` it has no label formatter,
/// which its mesh requires even when the chart gives one.
#[derive(Clone)]
struct Ticked {
    inner: RangedCoordf64,
    major: Vec<f64>,
    minor: Vec<f64>,
}

impl Ticked {
    fn new(range: Range<f64>, major: Vec<f64>, minor: Vec<f64>) -> Ticked {
        Ticked {
            inner: range.into(),
            major,
            minor,
        }
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.minor.clone()
        } else {
            self.major.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.inner.range()
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

/// Text as the SVG may carry it: the backend escapes `<&>"'`, but XML 1.0 forbids control
/// characters altogether, so they become U+FFFD (line breaks and tabs a space).
fn svg_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => ' ',
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect()
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

/// The legend's figures for one series.
fn figures(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "(no samples)".to_owned();
    }
    format!(
        "p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms ({} samples)",
        format_ms(h.value_at_quantile(0.5)),
        format_ms(h.value_at_quantile(0.99)),
        format_ms(h.value_at_quantile(0.999)),
        format_ms(h.max()),
        h.len()
    )
}

/// Renders the latency-by-percentile chart of `series` as a standalone SVG.
///
/// # Errors
/// Only if plotters fails to draw into memory, which its SVG backend does not do; the
/// message names the step.
pub fn percentile_svg(title: &str, series: &[Series]) -> Result<String, String> {
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

    let rows = u32::try_from(series.len().max(1)).unwrap_or(u32::MAX);
    let height = CHART_HEIGHT.saturating_add(LEGEND_ROW.saturating_mul(rows)) + 16;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| format!("background: {e}"))?;
        let (upper, legend) = root.split_vertically(CHART_HEIGHT);
        draw_chart(&upper, &svg_text(title), nines, &axis, &lines)
            .map_err(|e| format!("chart: {e}"))?;
        draw_legend(&legend, series).map_err(|e| format!("legend: {e}"))?;
        root.present().map_err(|e| format!("SVG: {e}"))?;
    }
    Ok(svg)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult<'a> =
    Result<(), DrawingAreaErrorKind<<SVGBackend<'a> as DrawingBackend>::ErrorType>>;

/// The title, the grid with its ticks, the axis titles and one line per non-empty series.
fn draw_chart<'a>(
    area: &Area<'a>,
    title: &str,
    nines: u32,
    axis: &YAxis,
    lines: &[Vec<(f64, f64)>],
) -> DrawResult<'a> {
    // A long title gets a smaller font rather than running off the picture (bold sans-serif
    // averages about 0.65 em per character; plotters' own estimate is lower).
    let title_chars = title.chars().count().max(1) as f64;
    let title_px = (f64::from(WIDTH - 40) / (0.65 * title_chars)).clamp(TITLE_PX_MIN, TITLE_PX);
    let title_font = FontDesc::new(FontFamily::SansSerif, title_px * PX, FontStyle::Bold);
    // Drawn apart from the chart, so that the plot starts at the same height whatever the
    // title's size.
    let centre = i32::try_from(WIDTH / 2).unwrap_or(0);
    area.draw(&Text::new(
        title,
        (centre, TITLE_Y),
        TextStyle::from(title_font).pos(Pos::new(HPos::Center, VPos::Center)),
    ))?;

    let x_ticks: Vec<f64> = (0..=nines).map(f64::from).collect();
    let (major, minor) = axis.ticks();
    let y_coords = |ms: Vec<f64>| ms.into_iter().map(|ms| axis.coord(ms)).collect::<Vec<_>>();
    let mut chart = ChartBuilder::on(area)
        .margin_top(PLOT_TOP)
        .margin_right(40)
        .x_label_area_size(55)
        .y_label_area_size(80)
        .build_cartesian_2d(
            Ticked::new(0.0..f64::from(nines), x_ticks, Vec::new()),
            Ticked::new(axis.range(), y_coords(major), y_coords(minor)),
        )?;
    let text = FontDesc::new(FontFamily::SansSerif, TEXT_SIZE, FontStyle::Normal);
    let axis_title = FontDesc::new(FontFamily::SansSerif, AXIS_TITLE_SIZE, FontStyle::Normal);
    chart
        .configure_mesh()
        .bold_line_style(GRID)
        .light_line_style(GRID_MINOR)
        .axis_style(RGBColor(0x44, 0x44, 0x44))
        .label_style(text)
        .axis_desc_style(axis_title)
        .x_desc("Percentile")
        .y_desc(axis.title())
        .x_label_formatter(&|decades| {
            let nines = decades.round() as usize;
            PERCENTILE_TICKS
                .get(nines)
                .copied()
                .unwrap_or("")
                .to_owned()
        })
        .y_label_formatter(&|coord| axis.label(*coord))
        .draw()?;
    for (index, points) in lines.iter().enumerate() {
        if points.is_empty() {
            continue;
        }
        let colour = COLOURS[index % COLOURS.len()];
        chart.draw_series(LineSeries::new(
            points
                .iter()
                .map(|&(decades, ms)| (decades, axis.coord(ms))),
            colour.stroke_width(2),
        ))?;
    }
    Ok(())
}

/// Below the chart, a row per series: a swatch of its colour, its label, then its figures
/// in a column of their own.
fn draw_legend<'a>(area: &Area<'a>, series: &[Series]) -> DrawResult<'a> {
    let bold = FontDesc::new(FontFamily::SansSerif, TEXT_SIZE, FontStyle::Bold);
    let normal = FontDesc::new(FontFamily::SansSerif, TEXT_SIZE, FontStyle::Normal);
    let labels: Vec<String> = series
        .iter()
        .map(|s| svg_text(&short_label(s.label)))
        .collect();
    let label_chars = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let label_width = (label_chars as f64 * LEGEND_CHAR_WIDTH).ceil() as i32;
    let label_left = LEGEND_LEFT + 32;
    let figures_left = label_left + label_width + 16;
    for (row, (s, label)) in series.iter().zip(&labels).enumerate() {
        let y = i32::try_from(row)
            .unwrap_or(i32::MAX)
            .saturating_mul(LEGEND_ROW as i32)
            + 10;
        let colour = COLOURS[row % COLOURS.len()];
        if !s.histogram.is_empty() {
            area.draw(&Rectangle::new(
                [(LEGEND_LEFT, y - 2), (LEGEND_LEFT + 24, y + 1)],
                colour.filled(),
            ))?;
        }
        let centred = |font: &FontDesc<'static>| {
            TextStyle::from(font.clone()).pos(Pos::new(HPos::Left, VPos::Center))
        };
        area.draw(&Text::new(label.as_str(), (label_left, y), centred(&bold)))?;
        area.draw(&Text::new(
            figures(s.histogram),
            (figures_left, y),
            centred(&normal),
        ))?;
    }
    Ok(())
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
    let svg = percentile_svg(&args.title, &series)?;
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

    /// The chart, parsed: an SVG that is not well-formed XML fails here.
    fn parse(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not well-formed: {e}"))
    }

    /// The content of every `<text>`, in order, trimmed.
    fn texts(svg: &str) -> Vec<String> {
        parse(svg)
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or("").trim().to_owned())
            .collect()
    }

    /// The points of each series' line (drawn 2 wide; axes and ticks are 1 wide).
    fn series_lines(svg: &str) -> Vec<Vec<(f64, f64)>> {
        parse(svg)
            .descendants()
            .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke-width") == Some("2"))
            .map(|n| {
                n.attribute("points")
                    .expect("a points attribute")
                    .split_whitespace()
                    .map(|pair| {
                        let (x, y) = pair.split_once(',').expect("x,y");
                        (x.parse().expect("number"), y.parse().expect("number"))
                    })
                    .collect()
            })
            .collect()
    }

    fn one(label: &str, histogram: &Histogram<u64>) -> String {
        percentile_svg("t", &[Series { label, histogram }]).expect("draws")
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
        let svg = percentile_svg("Two runs", &series).expect("draws");
        let doc = parse(&svg);
        let root = doc.root_element();
        assert!(root.has_tag_name(("http://www.w3.org/2000/svg", "svg")));
        assert_eq!(root.attribute("width"), Some("960"));
        assert!(root
            .attribute("viewBox")
            .is_some_and(|v| v.starts_with("0 0 960 ")));
        assert_eq!(series_lines(&svg).len(), 2);
        let read = texts(&svg);
        let has = |t: &str| read.iter().any(|x| x == t);
        assert!(has("Two runs") && has("Latency (ms)") && has("Percentile"));
        // The legend names every series, the empty one too, with its figures.
        for label in ["ws", "sse", "idle"] {
            assert!(has(label), "legend names {label}");
        }
        assert!(has("(no samples)"));
        assert!(read.iter().any(|t| t.starts_with("p50 ")
            && t.contains(", p99.9 ")
            && t.contains(", max ")
            && t.ends_with("(5000 samples)")));
        // 5,000 samples: ticks up to 99.99%, no further.
        for tick in ["0%", "90%", "99%", "99.9%", "99.99%"] {
            assert!(has(tick), "{tick}");
        }
        assert!(!has("99.999%"));
    }

    #[test]
    fn ticks_stop_at_the_useful_percentile() {
        assert_eq!(nines_for(0), 1);
        assert_eq!(nines_for(10), 1);
        assert_eq!(nines_for(1_000), 3);
        assert_eq!(nines_for(1_001), 4);
        assert_eq!(nines_for(50_000_000), MAX_NINES);
        let svg = one("big", &histogram(200_000, 500));
        assert!(texts(&svg).iter().any(|t| t == "99.999%"));
    }

    #[test]
    fn labels_and_title_are_escaped() {
        let h = histogram(100, 100);
        let svg = percentile_svg(
            "a < b & \"c\"\u{1}",
            &[Series {
                label: "<script>&",
                histogram: &h,
            }],
        )
        .expect("draws");
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;&amp;"));
        // Well-formed, and the text reads back as given (the control character replaced).
        let read = texts(&svg);
        assert!(read.iter().any(|t| t == "<script>&"));
        assert!(read.iter().any(|t| t == "a < b & \"c\"\u{fffd}"));
        assert_eq!(svg_text("x\u{1}y'\tz"), "x\u{fffd}y' z");
        // A long label is cut.
        let long = "x".repeat(100);
        let svg = one(&long, &h);
        assert!(texts(&svg)
            .iter()
            .any(|t| t.chars().count() == LABEL_CHARS_MAX && t.ends_with('…')));
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
            )
            .expect("draws");
            let lines = series_lines(&svg);
            assert_eq!(lines.len(), 2);
            for points in lines {
                assert_eq!(points.len(), SAMPLES);
                for pair in points.windows(2) {
                    let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
                    assert!(x1 > x0, "x increases");
                    // SVG y grows downwards: a latency that never decreases
                    // is a y that never increases.
                    assert!(y1 <= y0, "latency never decreases: {y0} then {y1}");
                    let plot = f64::from(PLOT_TOP)..=f64::from(CHART_HEIGHT);
                    assert!(plot.contains(&y1), "inside the chart: {y1}");
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
        let far = texts(&one("tail", &h));
        assert!(far.iter().any(|t| t == "Latency (ms, log scale)"));
        // One label per decade, from the lowest plotted (0.1 ms) to 10 s.
        for label in ["0.1", "1", "10", "100", "1000", "10000"] {
            assert!(far.iter().any(|t| t == label), "{label}");
        }
        let near = texts(&one("near", &histogram(10_000, 200)));
        assert!(near.iter().any(|t| t == "Latency (ms)"));
    }

    #[test]
    fn log_axis_has_decades_and_lighter_lines_at_2_and_5() {
        let axis = YAxis::choose(0.05, 0.2, 2_000.0);
        let YAxis::Log {
            low_decade,
            high_decade,
        } = axis
        else {
            panic!("log");
        };
        assert_eq!((low_decade, high_decade), (-2, 4));
        let (major, minor) = axis.ticks();
        assert_eq!(major.len(), 7);
        assert_eq!(minor.len(), 12);
        assert!(minor.contains(&0.02) && minor.contains(&5000.0));
        assert_eq!(axis.label(axis.coord(0.01)), "0.01");
        assert_eq!(axis.label(axis.coord(1000.0)), "1000");
        // Below the lowest decade, a latency sits on the axis' floor.
        assert_eq!(axis.coord(0.0), -2.0);
        let linear = YAxis::choose(0.1, 1.0, 0.9);
        assert_eq!(linear.label(0.4), "0.4");
        assert_eq!(linear.coord(0.4), 0.4);
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
        assert_eq!(series_lines(&svg).len(), 2);
        let read = texts(&svg);
        assert!(read.iter().any(|t| t == "run <1>"));
        assert!(read.iter().any(|t| t == "folder") && read.iter().any(|t| t == "file"));
        assert!(read.iter().any(|t| t.ends_with("(5000 samples)")));
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
