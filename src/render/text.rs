//! Text from registries and layouts (tags, annotations, media types,
//! platform strings, error bodies) made safe to print on a terminal: on
//! one line, with nothing a terminal would act on.
//!
//! ```
//! use boxwright::render::text::one_line;
//! assert_eq!(one_line("1.0"), "1.0");
//! assert_eq!(one_line("a\x1b[2J\nb"), "a\\u{1b}[2J\\nb");
//! ```

use std::borrow::Cow;
use std::fmt::Write as _;

/// `s` with every control character (C0 such as `\n`, `\r` and ESC, DEL,
/// C1), Unicode bidi override, isolate and mark, and line or paragraph
/// separator written out as a visible escape: `\n`, `\r`, `\t`, or
/// `\u{1b}`. Borrowed when there is nothing to escape.
pub fn one_line(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A character a terminal acts on or that reorders or breaks the line.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_as_it_is() {
        for s in ["", "1.4.0", "linux/arm64/v8", "héllo wörld", "a\\u{1b}"] {
            assert!(matches!(one_line(s), Cow::Borrowed(t) if t == s), "{s}");
        }
    }

    #[test]
    fn controls_and_bidi_overrides_are_escaped_visibly() {
        assert_eq!(one_line("\x1b[2J\nforged row"), "\\u{1b}[2J\\nforged row");
        assert_eq!(one_line("a\r\tb\x07\x7f"), "a\\r\\tb\\u{7}\\u{7f}");
        // C1 controls: CSI and the 8-bit string terminator.
        assert_eq!(one_line("\u{9b}2J\u{9c}"), "\\u{9b}2J\\u{9c}");
        assert_eq!(
            one_line("evil\u{202e}txt.exe\u{2066}\u{2028}"),
            "evil\\u{202e}txt.exe\\u{2066}\\u{2028}"
        );
        let forged = one_line("x\u{0}\u{1f}\u{85}\u{200f}");
        assert!(forged.chars().all(|c| !is_unsafe(c)), "{forged}");
    }
}
