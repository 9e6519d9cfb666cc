//! A destination's `enrich`: before its `map`, look related data up with an HTTP `GET` (the
//! URL a template of the event), and merge the JSON answer into the event at one field.
//!
//! It runs at delivery time, in the destination's lane, like the rest of the rendering
//! ([`crate::render`]): the store keeps the raw event, so a replay looks the data up again.
//!
//! - **URL**: a `minijinja` URL template (values percent-encoded), rendered with the raw
//!   event; the scheme and host are written out. The request goes through the egress guard
//!   with the destination's allow-list (the hub's plus `http.egress_allow`), follows no
//!   redirect, and sends the `enrich.headers` (secrets by reference).
//! - **Cache**: answers are kept by URL for `cache` (default 5 minutes; `0s`: not kept), at
//!   most [`cache::MAX_ENTRIES`] per destination ([`cache::LookupCache`]); deliveries that
//!   need one URL at the same time share one request.
//! - **Merge** ([`merge`]): into the field `into` of the event (a JSON object). An object
//!   answer merged into an object already there adds its keys (the answer's win); anything
//!   else replaces the field.
//! - **Failures** ([`fetch`]): a time-out, a connection error or a `5xx` retries the
//!   delivery later (`enrich_failed`); `404`/`410` dead-letters it (`enrich_not_found`: a
//!   retry cannot create the record — replay it once the record exists).
//!
//! Metrics: `ferry_enrich_requests_total{flow,destination,outcome}`, `outcome` one of `hit`
//! (from the cache, or shared with a lookup under way), `miss` (looked up) and `error`.

pub mod cache;
pub mod fetch;

use std::time::Duration;

use ferry_config::EnrichConfig;
use ferry_delivery::{EgressPolicy, GuardedClient, RenderError};
use ferry_store::ClaimedDelivery;
use ferry_transform::{Template, TemplateContext, TemplateError};
use reqwest::Url;
use reqwest::header::HeaderMap;
use serde_json::Value;

use self::cache::{Looked, LookupCache};

/// A destination's `enrich`, compiled (no secrets, no client: what `ferry validate` checks).
#[derive(Debug)]
pub struct EnrichPlan {
    url: Template,
    into: String,
    timeout: Duration,
    cache: Duration,
}

impl EnrichPlan {
    /// Compile the URL template of `config`.
    pub fn compile(config: &EnrichConfig) -> Result<EnrichPlan, TemplateError> {
        Ok(EnrichPlan {
            url: Template::compile_url(&config.url)?,
            into: config.into.clone(),
            timeout: config.timeout,
            cache: config.cache,
        })
    }

    /// The field the answer goes into.
    pub fn into(&self) -> &str {
        &self.into
    }

    /// The lookup's time-out.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The URL to look up for `delivery`, whose (raw) event is `event`.
    pub fn url(&self, delivery: &ClaimedDelivery, event: &Value) -> Result<Url, RenderError> {
        let ids = (delivery.event_id.to_string(), delivery.id.to_string());
        let ctx = TemplateContext {
            event,
            event_id: &ids.0,
            event_type: delivery.event_type.as_deref(),
            flow: &delivery.lane.flow,
            tenant: ferry_config::tenants::tenant_of(&delivery.lane.flow),
            destination: &delivery.lane.destination,
            delivery_id: &ids.1,
        };
        let failed = |e: &dyn std::fmt::Display| {
            RenderError::permanent(
                "template_failed",
                format!("the enrich URL template failed: {e}"),
            )
        };
        let text = self.url.render(&ctx).map_err(|e| failed(&e))?;
        Url::parse(&text).map_err(|e| failed(&format!("the result is not a URL ({e})")))
    }
}

/// What an `enrich` needs at run time beyond its plan: the request headers (secrets
/// resolved) and the egress allow-list of its destination.
#[derive(Debug, Clone, Default)]
pub struct Lookups {
    pub headers: HeaderMap,
    pub egress: EgressPolicy,
}

/// A destination's `enrich`, ready to look up: its plan, client and cache.
#[derive(Debug)]
pub struct Enricher {
    plan: EnrichPlan,
    client: GuardedClient,
    headers: HeaderMap,
    cache: LookupCache,
}

impl Enricher {
    /// The enricher of `plan`, sending through a client guarded by `lookups.egress` whose
    /// requests time out after the plan's `timeout`.
    pub fn new(plan: EnrichPlan, lookups: Lookups) -> Result<Enricher, reqwest::Error> {
        let client = GuardedClient::new(lookups.egress, plan.timeout)?;
        Ok(Enricher {
            cache: LookupCache::new(plan.cache),
            plan,
            client,
            headers: lookups.headers,
        })
    }

    /// The plan.
    pub fn plan(&self) -> &EnrichPlan {
        &self.plan
    }

    /// Look up what `delivery`'s event (`event`, the stored payload parsed) needs, and merge
    /// it in. Counted in `ferry_enrich_requests_total`.
    pub async fn enrich(
        &self,
        delivery: &ClaimedDelivery,
        event: &mut Value,
    ) -> Result<(), RenderError> {
        let result = self.lookup(delivery, event).await;
        let outcome = match &result {
            Ok(Looked::Hit(_)) => "hit",
            Ok(Looked::Miss(_)) => "miss",
            Err(_) => "error",
        };
        metrics::counter!(
            ferry_metrics::ENRICH_REQUESTS_TOTAL,
            "flow" => delivery.lane.flow.clone(),
            "destination" => delivery.lane.destination.clone(),
            "outcome" => outcome
        )
        .increment(1);
        let (Looked::Hit(found) | Looked::Miss(found)) = result?;
        merge(event, &self.plan.into, &found)
    }

    async fn lookup(
        &self,
        delivery: &ClaimedDelivery,
        event: &Value,
    ) -> Result<Looked, RenderError> {
        let url = self.plan.url(delivery, event)?;
        let key = url.as_str().to_owned();
        self.cache
            .get_or_fetch(&key, || {
                fetch::get(&self.client, &url, &self.headers, self.plan.timeout)
            })
            .await
    }
}

/// Merge `found` into `event` at field `into`: key by key when both are objects (`found`'s
/// keys win), else `found` replaces the field. `event` must be a JSON object.
pub fn merge(event: &mut Value, into: &str, found: &Value) -> Result<(), RenderError> {
    let Value::Object(fields) = event else {
        return Err(RenderError::permanent(
            fetch::ENRICH_INVALID,
            format!("the event is not a JSON object, so the lookup cannot go into `.{into}`"),
        ));
    };
    match (fields.get_mut(into), found) {
        (Some(Value::Object(existing)), Value::Object(more)) => {
            for (k, v) in more {
                existing.insert(k.clone(), v.clone());
            }
        }
        _ => {
            fields.insert(into.to_owned(), found.clone());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::DestinationTransforms;
    use serde_json::json;

    #[test]
    fn a_broken_url_template_is_located_at_enrich_url() {
        let dest: ferry_config::Destination = serde_json::from_value(json!({
            "system": "crm",
            "http": {"url": "https://crm.example/in"},
            "enrich": {"url": "https://crm.example/c/{{ customer.id }}", "into": "customer"},
        }))
        .unwrap();
        let failures = DestinationTransforms::compile("f", "crm", &dest, &mut Vec::new())
            .expect_err("an unknown variable");
        assert_eq!(
            failures[0].path,
            ["flows", "f", "destinations", "crm", "enrich", "url"]
        );
        assert!(failures[0].message.contains("customer"), "{}", failures[0]);
    }

    #[test]
    fn merges_objects_key_by_key_and_replaces_the_rest() {
        let mut event = json!({"customer": {"id": 7, "name": "old"}, "total": 1});
        merge(
            &mut event,
            "customer",
            &json!({"name": "Ada", "tier": "gold"}),
        )
        .unwrap();
        assert_eq!(
            event,
            json!({"customer": {"id": 7, "name": "Ada", "tier": "gold"}, "total": 1})
        );
        merge(&mut event, "total", &json!({"net": 1})).unwrap();
        assert_eq!(event["total"], json!({"net": 1}));
        merge(&mut event, "flags", &json!([1, 2])).unwrap();
        assert_eq!(event["flags"], json!([1, 2]));
        let err = merge(&mut json!([1]), "x", &json!(1)).unwrap_err();
        assert_eq!((err.class, err.retryable), ("enrich_invalid", false));
    }
}
