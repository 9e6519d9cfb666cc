//! Checks of `dedupe` steps: a window longer than zero. (The key's VRL is compiled with the
//! other programs; a flow with two `dedupe` steps is refused there.)

use super::Checker;
use super::rules;
use crate::locate::Part;
use crate::steps::Step;

pub(super) fn check(c: &mut Checker) {
    for (name, flow) in &c.config.flows {
        let Some(file) = c.flow_file(name) else {
            continue;
        };
        for (i, step) in flow.steps.iter().enumerate() {
            let Step::Dedupe(dedupe) = step else {
                continue;
            };
            if let Err((message, help)) = rules::positive("window", dedupe.window) {
                let index = i.to_string();
                let path = ["flows", name, "steps", index.as_str(), "dedupe", "window"];
                c.error(file, &path, Part::Value, message, help);
            }
        }
    }
}
