//! Plain-text tables whose columns line up: every cell padded to its
//! column's width, columns separated by `gap` spaces, trailing blanks
//! trimmed. Figures can be right-aligned so that their digits line up.

use std::fmt::Write as _;

/// The layout of a table.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    /// Spaces between two columns.
    pub gap: usize,
    /// Columns from this one on are right-aligned (figures), except the
    /// last, which is free text; `None`: everything left-aligned.
    pub right_from: Option<usize>,
}

/// The rows (the header is simply the first row) as aligned lines, each
/// ending with a newline. Widths count characters, not bytes.
pub fn render<R: AsRef<[String]>>(rows: &[R], style: Style) -> String {
    let cols = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.as_ref().get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let gap = " ".repeat(style.gap);
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.as_ref().iter().enumerate() {
            if c > 0 {
                line.push_str(&gap);
            }
            let right = style.right_from.is_some_and(|f| c >= f) && c + 1 != cols;
            let w = widths[c];
            let _ = if right {
                write!(line, "{cell:>w$}")
            } else {
                write!(line, "{cell:<w$}")
            };
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: &[&[&str]]) -> Vec<Vec<String>> {
        v.iter()
            .map(|r| r.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn left_aligned_with_a_trimmed_end() {
        let style = Style {
            gap: 3,
            right_from: None,
        };
        let t = render(
            &rows(&[&["A", "BB", ""], &["xxx", "y", ""], &["z", "w", "*"]]),
            style,
        );
        assert_eq!(t, "A     BB\nxxx   y\nz     w    *\n");
    }

    #[test]
    fn figures_right_aligned_but_not_the_last_column() {
        let style = Style {
            gap: 2,
            right_from: Some(1),
        };
        let t = render(
            &rows(&[
                &["NAME", "N", "NOTE"],
                &["a", "100", "x"],
                &["bb", "7", "long"],
            ]),
            style,
        );
        assert_eq!(t, "NAME    N  NOTE\na     100  x\nbb      7  long\n");
    }
}
