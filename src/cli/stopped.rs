//! The `--json` report of a run stopped in the middle (`--timeout`, SIGINT,
//! SIGTERM): a command that pushes arms it when it starts ([`on_stop`]);
//! `main` writes it once the command's future is dropped ([`write`]), and
//! the command's own `--json` document disarms it ([`disarm`]): one
//! document on stdout either way.

use std::sync::Mutex;

use boxwright::push::{PushOptions, PushWatch};

/// Where the push report sits in the command's `--json` document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// The document is the push report (`push`).
    Flat,
    /// Under `push` (`build --push`, `copy`, `index`).
    Nested,
}

struct Armed {
    watch: PushWatch,
    shape: Shape,
}

static ARMED: Mutex<Option<Armed>> = Mutex::new(None);

/// With `--json`, have the pusher made with `opts` watched, and its report
/// written if the run is stopped before the command writes its own.
pub fn on_stop(opts: &mut PushOptions, json: bool, shape: Shape) {
    if !json {
        return;
    }
    let watch = PushWatch::default();
    opts.watch = Some(watch.clone());
    if let Ok(mut armed) = ARMED.lock() {
        *armed = Some(Armed { watch, shape });
    }
}

/// The command wrote its own document: nothing to write on a stop.
pub fn disarm() {
    if let Ok(mut armed) = ARMED.lock() {
        *armed = None;
    }
}

/// The document of a run stopped because `why`: what the push had done
/// (see [`PushWatch::report`]: targets not done fail with "not done: the
/// run was stopped first"), shaped as the command's own, with `stopped`
/// saying why. Without a push report yet, `stopped` alone (and `push`:
/// null when nested).
fn document(armed: &Armed, why: &str) -> serde_json::Value {
    let report = armed.watch.report().map(|r| r.to_json());
    let mut doc = match (armed.shape, report) {
        (Shape::Flat, Some(r)) => r,
        (Shape::Flat, None) => serde_json::json!({}),
        (Shape::Nested, r) => serde_json::json!({ "push": r }),
    };
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("stopped".into(), why.into());
    }
    doc
}

/// Write the armed document (once; disarmed after), the run stopped because
/// `why`. `wait`: wait for one being written by another thread rather than
/// skip (the thread that ends the process skips).
pub fn write(why: &str, wait: bool) {
    let guard = if wait {
        ARMED.lock().ok()
    } else {
        ARMED.try_lock().ok()
    };
    let Some(mut armed) = guard else {
        return;
    };
    if let Some(a) = armed.take() {
        // The run is ending with its stop's exit code; a closed stdout
        // changes nothing.
        if let Ok(text) = boxwright::render::json(&document(&a, why)) {
            let _ = super::stdout::print(&text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_a_push_began_the_document_says_only_why() {
        let why = "timed out";
        let armed = |shape| Armed {
            watch: PushWatch::default(),
            shape,
        };
        assert_eq!(
            document(&armed(Shape::Flat), why),
            serde_json::json!({ "stopped": why })
        );
        assert_eq!(
            document(&armed(Shape::Nested), why),
            serde_json::json!({ "push": null, "stopped": why })
        );
    }
}
