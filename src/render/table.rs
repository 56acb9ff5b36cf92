//! Plain-text tables whose columns line up: every cell padded to its
//! column's width, columns separated by `gap` spaces, trailing blanks
//! trimmed. Figures can be right-aligned so that their digits line up.
//! Every cell is shown on one line, its control characters escaped
//! ([`one_line`]), and one longer than [`MAX_CELL`] characters is cut to
//! `MAX_CELL - 1` and `…`, so that one long tag or annotation leaves the
//! table readable.

use std::borrow::Cow;

use super::text::one_line;

/// The most characters a cell shows.
pub const MAX_CELL: usize = 256;

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
    let cells: Vec<Vec<(Cow<'_, str>, usize)>> = rows
        .iter()
        .map(|r| r.as_ref().iter().map(|s| cut(s)).collect())
        .collect();
    let cols = cells.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for row in &cells {
        for (c, (_, n)) in row.iter().enumerate() {
            widths[c] = widths[c].max(*n);
        }
    }
    let gap = " ".repeat(style.gap);
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (c, (cell, n)) in row.iter().enumerate() {
            if c > 0 {
                line.push_str(&gap);
            }
            // By hand: a format width (`{:<w$}`) cannot exceed 65535.
            let pad = " ".repeat(widths[c] - n);
            if style.right_from.is_some_and(|f| c >= f) && c + 1 != cols {
                line.push_str(&pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&pad);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The cell as shown, and its width in characters.
fn cut(s: &str) -> (Cow<'_, str>, usize) {
    let s = one_line(s);
    match s.char_indices().nth(MAX_CELL) {
        None => {
            let n = s.chars().count();
            (s, n)
        }
        Some(_) => {
            let end = s
                .char_indices()
                .nth(MAX_CELL - 1)
                .map_or(s.len(), |(i, _)| i);
            (Cow::Owned(format!("{}…", &s[..end])), MAX_CELL)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn style(gap: usize, right_from: Option<usize>) -> Style {
        Style { gap, right_from }
    }

    fn rows(v: &[&[&str]]) -> Vec<Vec<String>> {
        v.iter()
            .map(|r| r.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn left_aligned_with_a_trimmed_end() {
        let style = style(3, None);
        let t = render(
            &rows(&[&["A", "BB", ""], &["xxx", "y", ""], &["z", "w", "*"]]),
            style,
        );
        assert_eq!(t, "A     BB\nxxx   y\nz     w    *\n");
    }

    #[test]
    fn figures_right_aligned_but_not_the_last_column() {
        let style = style(2, Some(1));
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

    #[test]
    fn a_cell_of_70_000_characters_is_cut_without_a_panic() {
        let style = style(2, Some(1));
        let huge = "é".repeat(70_000);
        let t = render(
            &rows(&[&["TAG", "N", ""], &[&huge, &huge, "x"], &["1.0", "7", ""]]),
            style,
        );
        let cut = format!("{}…", "é".repeat(MAX_CELL - 1));
        assert_eq!(
            t,
            format!(
                "TAG{}  {}N\n{cut}  {cut}  x\n1.0{}  {}7\n",
                " ".repeat(MAX_CELL - 3),
                " ".repeat(MAX_CELL - 1),
                " ".repeat(MAX_CELL - 3),
                " ".repeat(MAX_CELL - 1),
            )
        );
    }

    #[test]
    fn only_cells_longer_than_the_cap_are_cut() {
        let style = style(1, None);
        let full = "a".repeat(MAX_CELL);
        let over = "b".repeat(MAX_CELL + 1);
        let t = render(&rows(&[&[&full], &[&over]]), style);
        assert_eq!(t, format!("{full}\n{}…\n", "b".repeat(MAX_CELL - 1)));
    }

    #[test]
    fn a_cell_cannot_forge_a_row_or_move_the_cursor() {
        let style = style(1, None);
        let t = render(&rows(&[&["TAG", "X"], &["a\n\x1b[2Jb", "\u{202e}"]]), style);
        assert_eq!(t, "TAG           X\na\\n\\u{1b}[2Jb \\u{202e}\n");
    }
}
