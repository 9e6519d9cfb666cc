//! Checks of synthetic transactions: a flow's `synthetic` (a payload file that is JSON, times
//! that make sense) and a destination's `synthetic.sandbox_url`.

use std::time::Duration;

use super::Checker;
use super::resilience::{hub_policy, refusal_at};
use super::rules;
use crate::locate::Part;

pub(super) fn check(c: &mut Checker) {
    let flows = c.config.flows.clone();
    for (name, flow) in &flows {
        let Some(file) = c.flow_file(name) else {
            continue;
        };
        for (dest_name, dest) in &flow.destinations {
            let Some(url) = &dest.synthetic.sandbox_url else {
                continue;
            };
            let path = [
                "flows",
                name,
                "destinations",
                dest_name,
                "synthetic",
                "sandbox_url",
            ];
            if dest.http.is_none() {
                c.error(
                    file,
                    &path,
                    Part::Key,
                    "a sandbox URL is for HTTP destinations".to_string(),
                    Some(
                        "other kinds get synthetic events marked with a `ferry-synthetic` header"
                            .to_string(),
                    ),
                );
            } else if let Err((message, help)) = rules::destination_url(url) {
                c.error(file, &path, Part::Value, message, help);
            } else if let Err(refused) = hub_policy(c).static_refusal(url) {
                let (message, help) = refusal_at(&refused, "`settings.delivery.egress_allow`");
                c.error(file, &path, Part::Value, message, help);
            }
        }
        let Some(synthetic) = &flow.synthetic else {
            continue;
        };
        let at = |field: &'static str| -> Vec<&str> { vec!["flows", name, "synthetic", field] };
        let payload = c.config.root.join(&synthetic.payload);
        match std::fs::read(&payload) {
            Err(e) => c.error(
                file,
                &at("payload"),
                Part::Value,
                format!(
                    "cannot read the synthetic payload {}: {e}",
                    payload.display()
                ),
                None,
            ),
            Ok(bytes) => {
                if let Err(e) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                    c.error(
                        file,
                        &at("payload"),
                        Part::Value,
                        format!(
                            "the synthetic payload {} is not JSON: {e}",
                            payload.display()
                        ),
                        None,
                    );
                }
            }
        }
        if synthetic.expect_within.is_zero() {
            c.error(
                file,
                &at("expect_within"),
                Part::Value,
                "expect_within is 0: no delivery could ever be in time".to_string(),
                None,
            );
        }
        if synthetic.every.is_some_and(|e| e < Duration::from_secs(1)) {
            c.error(
                file,
                &at("every"),
                Part::Value,
                "every is under 1s".to_string(),
                Some("synthetic events are meant to be rare: e.g. `5m`".to_string()),
            );
        }
    }
}
