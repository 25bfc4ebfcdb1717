//! Line charts as SVG, drawn by `plotters` on the server: the page needs no
//! script to show them, and axes and text take the page's colour (light or
//! dark) through `currentColor`.

use maud::{Markup, PreEscaped};
use plotters::prelude::*;

/// One line: its legend, its points (x, y) and its colour.
pub(super) struct Line<'a> {
    pub(super) label: &'a str,
    pub(super) points: Vec<(f64, f64)>,
    pub(super) colour: RGBColor,
}

/// Blue and orange: told apart in light and dark mode and by most colour
/// blind readers.
pub(super) const BLUE: RGBColor = RGBColor(0x3b, 0x82, 0xf6);
pub(super) const ORANGE: RGBColor = RGBColor(0xf5, 0x9e, 0x0b);

/// A chart of `lines` over x from `x_from` to `x_to` (labelled by their
/// distance from 0: x is "seconds ago" or "blocks ago", negative), the y
/// axis from 0 to the highest point, titled `y_unit`, `x_desc` under the
/// x axis.
/// `label` is the chart's accessible name.
pub(super) fn lines(
    label: &str,
    y_unit: &str,
    x_desc: &str,
    (x_from, x_to): (f64, f64),
    lines: &[Line<'_>],
) -> Markup {
    let top = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let mut svg = String::new();
    let drawn = draw(&mut svg, y_unit, x_desc, (x_from, x_to, top), lines);
    match drawn {
        Ok(()) => {
            // plotters writes black; the page's text colour reads in both
            // modes.
            let svg = svg
                .replacen(
                    "<svg ",
                    &format!(
                        "<svg role=\"img\" aria-label=\"{}\" class=\"chart\" ",
                        maud::html!((label)).into_string()
                    ),
                    1,
                )
                .replace("#000000", "currentColor")
                .replace("#FFFFFF", "transparent");
            PreEscaped(svg)
        }
        Err(e) => maud::html! { p.bad { "chart not drawn: " (e) } },
    }
}

fn draw(
    svg: &mut String,
    y_unit: &str,
    x_desc: &str,
    (x_from, x_to, top): (f64, f64, f64),
    lines: &[Line<'_>],
) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let root = SVGBackend::with_string(svg, (480, 200)).into_drawing_area();
    let mut chart = ChartBuilder::on(&root)
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(48)
        .build_cartesian_2d(x_from..x_to, 0.0..top)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .x_labels(((x_to - x_from) as usize + 1).clamp(2, 7))
        .y_labels(5)
        .x_label_formatter(&|x| format!("{:.0}", x.abs()))
        .y_desc(y_unit)
        .label_style(("sans-serif", 12).into_font().color(&BLACK))
        .axis_desc_style(("sans-serif", 12).into_font().color(&BLACK))
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(BLACK.mix(0.04))
        .draw()
        .map_err(|x| e(&x))?;
    for line in lines {
        let colour = line.colour;
        chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(|x| e(&x))?
            .label(line.label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
        // A dot at each point: a second alone shows too.
        chart
            .draw_series(
                line.points
                    .iter()
                    .map(|p| Circle::new(*p, 2, colour.filled())),
            )
            .map_err(|x| e(&x))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 12).into_font().color(&BLACK))
        .background_style(WHITE.mix(0.0))
        .border_style(BLACK.mix(0.2))
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_an_svg_with_its_lines_and_the_page_colour() {
        let svg = lines(
            "latency",
            "ms",
            "seconds ago",
            (-60.0, 0.0),
            &[Line {
                label: "p50",
                points: vec![(-60.0, 1.0), (-30.0, 3.0), (0.0, 2.0)],
                colour: BLUE,
            }],
        )
        .into_string();
        assert!(
            svg.starts_with("<svg role=\"img\" aria-label=\"latency\""),
            "{svg:.200}"
        );
        assert!(svg.contains("<polyline"), "the line is drawn");
        assert_eq!(svg.matches("<circle").count(), 3, "a dot per point");
        assert!(svg.contains("p50") && svg.contains("seconds ago"));
        assert!(
            !svg.contains("#000000"),
            "text and axes take the page's colour"
        );
    }
}
