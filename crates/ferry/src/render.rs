//! What a destination receives, computed when its delivery is sent: the destination's
//! `enrich` lookup ([`crate::enrich`]), its `map` (VRL), its outgoing `contract` (JSON
//! Schema), and its templates (URL, header values, non-JSON body). Deliveries store the raw
//! event, so a replay after a fix of the mapping sends the fixed payload.
//!
//! Order: decryption of fields encrypted at rest (see [`crate::at_rest`]; a field whose data
//! key was shredded — its subject erased — is `null` from the start, counted in
//! `ferry_protect_shredded_fields_total{flow,destination}`) → the destination system's data
//! protection policy ([`crate::protect`]) → `enrich` → `map` → `contract` → templates (they
//! see the mapped event as `event`). The policy comes before every step, so no step sees a
//! value the system may not receive.
//! A failed lookup that may pass (a time-out, a `5xx`) retries the delivery later
//! (`enrich_failed`); a `404` dead-letters it (`enrich_not_found`). A `map`
//! that fails at run time or `abort`s, a template that fails, and a contract violation
//! with `on_violation: dlq` dead-letter the delivery without a call, the reason recorded as
//! the attempt's error (classes `map_failed`, `map_aborted`, `template_failed`,
//! `contract_violation`). With `on_violation: warn` the payload is sent anyway, and the
//! violation logged (JSON pointers only) and counted in
//! `ferry_contract_violations_total{flow,destination}` (which counts violating payloads in
//! both modes).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ferry_config::{ContractConfig, Destination, HeaderValue as ConfigHeader, OnViolation};
use ferry_delivery::{Render, RenderError, Rendered, SealedExcerpt};
use ferry_schema::SchemaRegistry;
use ferry_store::ClaimedDelivery;
use ferry_transform::{Applied, Event, Program, Template, TemplateContext, is_template};
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::at_rest::{AtRest, Excerpt};
use crate::enrich::{EnrichPlan, Enricher, Lookups, fetch::ENRICH_FAILED, merge};
use crate::protect::DestinationProtection;
use crate::transforms::{Failure, path};

/// Most violations quoted in a contract violation's reason.
const VIOLATIONS_QUOTED: usize = 5;

/// The compiled transforms of one destination.
#[derive(Debug, Default)]
pub struct DestinationTransforms {
    enrich: Option<EnrichPlan>,
    map: Option<Program>,
    url: Option<Template>,
    headers: Vec<(HeaderName, Template)>,
    body: Option<Template>,
    /// The `content-type` of a templated body: the destination's literal `content-type`
    /// header, else `text/plain; charset=utf-8`.
    body_content_type: Option<HeaderValue>,
    contract: Option<ContractConfig>,
}

impl DestinationTransforms {
    /// Compile the `enrich` URL, `map`, templates and contract of `dest`. Every program and
    /// template that does not compile is reported; VRL's warnings go to `warnings`.
    pub fn compile(
        flow: &str,
        name: &str,
        dest: &Destination,
        warnings: &mut Vec<Failure>,
    ) -> Result<DestinationTransforms, Vec<Failure>> {
        let base = ["flows", flow, "destinations", name];
        let at = |more: &[&str]| -> Vec<String> {
            let mut p = path(&base);
            p.extend(more.iter().map(|s| (*s).to_string()));
            p
        };
        let mut failures = Vec::new();
        let mut out = DestinationTransforms {
            contract: dest.contract.clone(),
            ..Default::default()
        };
        if let Some(enrich) = &dest.enrich {
            match EnrichPlan::compile(enrich) {
                Ok(plan) => out.enrich = Some(plan),
                Err(e) => failures.push(Failure::template(
                    at(&["enrich", "url"]),
                    "the enrich URL template",
                    e,
                )),
            }
        }
        if let Some(source) = &dest.map {
            match Program::compile(source) {
                Ok(program) => {
                    if let Some(report) = program.warnings() {
                        warnings.push(Failure::warning(at(&["map"]), "the `map`", report));
                    }
                    out.map = Some(program);
                }
                Err(e) => failures.push(Failure::program(at(&["map"]), "the `map`", e)),
            }
        }
        // A Kafka key template is rendered by its connector (for each record of a batch
        // too); it compiles here with the others, so `ferry validate` locates its errors.
        if let Some(key) = dest.kafka.as_ref().and_then(|k| k.key.as_deref())
            && let Err(e) = ferry_connectors::kafka::RecordKey::compile(key)
        {
            failures.push(Failure::template(
                at(&["kafka", "key"]),
                "the key template",
                e,
            ));
        }
        // URL, header and body templates belong to HTTP requests.
        if let Some(http) = &dest.http {
            if is_template(&http.url) {
                match Template::compile_url(&http.url) {
                    Ok(t) => out.url = Some(t),
                    Err(e) => failures.push(Failure::template(
                        at(&["http", "url"]),
                        "the URL template",
                        e,
                    )),
                }
            }
            for (header, value) in &http.headers {
                let ConfigHeader::Literal(text) = value else {
                    continue;
                };
                if !is_template(text) {
                    if header.eq_ignore_ascii_case("content-type") {
                        out.body_content_type = HeaderValue::from_str(text).ok();
                    }
                    continue;
                }
                let Ok(name) = HeaderName::from_bytes(header.as_bytes()) else {
                    // `ferry validate` reports invalid header names.
                    continue;
                };
                match Template::compile(text) {
                    Ok(t) => out.headers.push((name, t)),
                    Err(e) => failures.push(Failure::template(
                        at(&["http", "headers", header]),
                        &format!("the `{header}` header template"),
                        e,
                    )),
                }
            }
            if let Some(body) = &http.body {
                match Template::compile(body) {
                    Ok(t) => out.body = Some(t),
                    Err(e) => failures.push(Failure::template(
                        at(&["http", "body"]),
                        "the body template",
                        e,
                    )),
                }
                if out.body_content_type.is_none() {
                    out.body_content_type =
                        Some(HeaderValue::from_static("text/plain; charset=utf-8"));
                }
            }
        }
        // A queue destination's subject or routing key may be a template: its connector
        // renders it per delivery; here it is compiled so that a broken one stops the load.
        let addresses = [
            dest.nats
                .as_ref()
                .map(|n| (["nats", "subject"], "the subject template", &n.subject)),
            dest.rabbitmq.as_ref().map(|r| {
                (
                    ["rabbitmq", "routing_key"],
                    "the routing key template",
                    &r.routing_key,
                )
            }),
        ];
        for (field, what, text) in addresses.into_iter().flatten() {
            if is_template(text)
                && let Err(e) = Template::compile(text)
            {
                failures.push(Failure::template(at(&field), what, e));
            }
        }
        if failures.is_empty() {
            Ok(out)
        } else {
            Err(failures)
        }
    }

    /// Whether a `map` is all there is to render (no templates): the mapped event then goes
    /// from VRL straight to JSON text.
    fn is_only_map(&self) -> bool {
        self.url.is_none() && self.headers.is_empty() && self.body.is_none()
    }

    /// Whether the destination sends the stored payload as it is (nothing to render).
    pub fn is_empty(&self) -> bool {
        self.enrich.is_none()
            && self.map.is_none()
            && self.url.is_none()
            && self.headers.is_empty()
            && self.body.is_none()
            && self.contract.is_none()
    }
}

/// The [`Render`] of one destination.
#[derive(Debug)]
pub struct DestinationRender {
    transforms: DestinationTransforms,
    schemas: Arc<SchemaRegistry>,
    /// The `enrich` lookup, once [`DestinationRender::with_lookups`] set it up.
    enricher: Option<Enricher>,
    /// The destination system's policy, applied before anything but decryption.
    protection: Option<Arc<DestinationProtection>>,
    /// Encryption at rest: stored fields are decrypted before anything else.
    at_rest: Option<Arc<AtRest>>,
}

/// The stored event as rendering starts from it: protected for the destination.
struct Prepared {
    payload: Bytes,
    categories_sent: Vec<(String, String)>,
}

impl DestinationRender {
    /// A destination's render, or `None` when it has nothing to render: no transform and no
    /// protection.
    pub fn new(
        transforms: DestinationTransforms,
        schemas: Arc<SchemaRegistry>,
        protection: Option<Arc<DestinationProtection>>,
    ) -> Option<DestinationRender> {
        (!transforms.is_empty() || protection.is_some()).then_some(DestinationRender {
            transforms,
            schemas,
            enricher: None,
            protection,
            at_rest: None,
        })
    }

    /// The stored event of `delivery` as the rest of rendering may see it: called once, at
    /// the start of every rendering.
    fn prepare(&self, delivery: &ClaimedDelivery) -> Result<Prepared, RenderError> {
        self.protect(delivery, &delivery.payload)
    }

    /// [`DestinationRender::prepare`] for the stored event decrypted (`event`): protected
    /// from the parsed value, written to JSON once.
    fn prepare_opened(
        &self,
        delivery: &ClaimedDelivery,
        event: Value,
    ) -> Result<Prepared, RenderError> {
        match &self.protection {
            None => {
                let json = serde_json::to_vec(&event).map_err(|e| {
                    RenderError::permanent(
                        "payload_undecryptable",
                        format!("the decrypted event: {e}"),
                    )
                })?;
                Ok(Prepared {
                    payload: Bytes::from(json),
                    categories_sent: Vec::new(),
                })
            }
            Some(protection) => {
                let (payload, categories_sent) = protection.apply_value(delivery, event)?;
                Ok(Prepared {
                    payload,
                    categories_sent,
                })
            }
        }
    }

    /// `payload` protected per the destination system's policy (classified values it may
    /// not receive hashed, redacted, encrypted or removed), with the categories it carries.
    fn protect(
        &self,
        delivery: &ClaimedDelivery,
        payload: &Bytes,
    ) -> Result<Prepared, RenderError> {
        match &self.protection {
            None => Ok(Prepared {
                payload: payload.clone(),
                categories_sent: Vec::new(),
            }),
            Some(protection) => {
                let (payload, categories_sent) = protection.apply(delivery, payload)?;
                Ok(Prepared {
                    payload,
                    categories_sent,
                })
            }
        }
    }

    /// A render that only decrypts (a destination without transforms, when encryption at
    /// rest is on): it sends the stored event decrypted. Set its keys with
    /// [`DestinationRender::with_at_rest`].
    pub fn decrypt_only(schemas: Arc<SchemaRegistry>) -> DestinationRender {
        DestinationRender {
            transforms: DestinationTransforms::default(),
            schemas,
            enricher: None,
            protection: None,
            at_rest: None,
        }
    }

    /// Decrypt the fields encrypted at rest (with `at_rest`'s keys) before rendering, and
    /// encrypt response excerpts under the event's key.
    pub fn with_at_rest(mut self, at_rest: Arc<AtRest>) -> Self {
        self.at_rest = Some(at_rest);
        self
    }

    /// The stored event of `delivery` with its fields decrypted (`None`: nothing encrypted,
    /// or no encryption at rest): a field whose key was shredded is `null`, and counted.
    async fn decrypt_at_rest(
        &self,
        delivery: &ClaimedDelivery,
    ) -> Result<Option<Value>, RenderError> {
        let Some(at_rest) = &self.at_rest else {
            return Ok(None);
        };
        let opened = at_rest
            .open_payload(&delivery.event_id.to_string(), &delivery.payload)
            .await
            .map_err(|e| {
                if e.is_transient() {
                    RenderError::retryable("keys_unavailable", format!("decrypting the event: {e}"))
                } else {
                    RenderError::permanent(
                        "payload_undecryptable",
                        format!("decrypting the event: {e}"),
                    )
                }
            })?;
        let Some((event, opened)) = opened else {
            return Ok(None);
        };
        if opened.shredded > 0 {
            metrics::counter!(
                ferry_metrics::PROTECT_SHREDDED_FIELDS_TOTAL,
                "flow" => delivery.lane.flow.clone(),
                "destination" => delivery.lane.destination.clone()
            )
            .increment(opened.shredded as u64);
        }
        Ok(Some(event))
    }

    /// Set up the destination's `enrich` lookups (nothing to do without one): its requests
    /// send `lookups.headers` through a client guarded by `lookups.egress`.
    pub fn with_lookups(mut self, lookups: Lookups) -> Result<Self, reqwest::Error> {
        if let Some(plan) = self.transforms.enrich.take() {
            self.enricher = Some(Enricher::new(plan, lookups)?);
        }
        Ok(self)
    }

    /// The destination's `enrich`, if it has one (e.g. to render its URL for a fixture).
    pub fn enrich_plan(&self) -> Option<&EnrichPlan> {
        match &self.enricher {
            Some(enricher) => Some(enricher.plan()),
            None => self.transforms.enrich.as_ref(),
        }
    }

    /// Render `delivery` without its `enrich` lookup (synchronous: VRL and templates do no
    /// I/O). [`Render::render`] looks up first.
    pub fn render_now(&self, delivery: &ClaimedDelivery) -> Result<Rendered, RenderError> {
        let prepared = self.prepare(delivery)?;
        self.render_prepared_now(delivery, prepared)
    }

    /// Render `delivery` from its `prepared` event, without `enrich`.
    fn render_prepared_now(
        &self,
        delivery: &ClaimedDelivery,
        prepared: Prepared,
    ) -> Result<Rendered, RenderError> {
        let mut rendered = self.render_payload(delivery, &prepared.payload, None)?;
        rendered.categories_sent = prepared.categories_sent;
        Ok(rendered)
    }

    /// Render `delivery` with `found` as its `enrich` lookup's answer, merged into the event
    /// as a lookup's would be (`None`, or a destination without `enrich`: as
    /// [`DestinationRender::render_now`]). For running a flow without the network (`ferry
    /// test`).
    pub fn render_enriched(
        &self,
        delivery: &ClaimedDelivery,
        found: Option<&Value>,
    ) -> Result<Rendered, RenderError> {
        match (self.enrich_plan(), found) {
            (Some(plan), Some(found)) => {
                let prepared = self.prepare(delivery)?;
                let mut event = stored_event(&prepared.payload)?;
                merge(&mut event, plan.into(), found)?;
                let mut rendered = self.render_value(delivery, &event)?;
                rendered.categories_sent = prepared.categories_sent;
                Ok(rendered)
            }
            _ => self.render_now(delivery),
        }
    }

    /// Render the enriched `event` of `delivery`.
    fn render_value(
        &self,
        delivery: &ClaimedDelivery,
        event: &Value,
    ) -> Result<Rendered, RenderError> {
        let json = serde_json::to_vec(event).map_err(|e| {
            RenderError::permanent(
                ENRICH_FAILED,
                format!("the enriched event cannot be written as JSON: {e}"),
            )
        })?;
        let content_type = HeaderValue::from_static("application/json");
        self.render_payload(delivery, &Bytes::from(json), Some(content_type))
    }

    /// Render `payload` (the stored event, or the enriched one with its `content_type`)
    /// for `delivery`: `map`, `contract`, templates.
    fn render_payload(
        &self,
        delivery: &ClaimedDelivery,
        payload: &Bytes,
        payload_content_type: Option<HeaderValue>,
    ) -> Result<Rendered, RenderError> {
        let t = &self.transforms;
        let invalid = |e: serde_json::Error| {
            RenderError::permanent(
                "payload_invalid",
                format!("the stored event is not JSON: {e}"),
            )
        };
        // The mapped event stays in VRL's representation: written to JSON once, at the end.
        let mapped = match &t.map {
            None => None,
            Some(program) => {
                let event = Event::from_slice(payload).map_err(invalid)?;
                match program.apply(event) {
                    Ok(Applied::Done(event)) => Some(event),
                    Ok(Applied::Aborted(message)) => {
                        return Err(RenderError::permanent(
                            "map_aborted",
                            format!(
                                "the `map` aborted{}",
                                message.map(|m| format!(": {m}")).unwrap_or_default()
                            ),
                        ));
                    }
                    Err(e) => {
                        return Err(RenderError::permanent(
                            "map_failed",
                            format!("the `map` failed: {e}"),
                        ));
                    }
                }
            }
        };
        // The event as JSON, read only when a contract or a template needs it.
        let needs_json = t.contract.is_some() || !t.is_only_map();
        let json: Option<Value> = match (&mapped, needs_json) {
            (_, false) => None,
            (Some(event), true) => Some(event.to_json().map_err(|e| {
                RenderError::permanent("map_failed", format!("the `map` failed: {e}"))
            })?),
            (None, true) => Some(serde_json::from_slice(payload).map_err(invalid)?),
        };
        if let (Some(contract), Some(event)) = (&t.contract, &json) {
            self.check_contract(contract, delivery, event)?;
        }
        let null = Value::Null;
        let event = json.as_ref().unwrap_or(&null);
        let ids = (delivery.event_id.to_string(), delivery.id.to_string());
        let ctx = TemplateContext {
            event: &event,
            event_id: &ids.0,
            event_type: delivery.event_type.as_deref(),
            flow: &delivery.lane.flow,
            tenant: ferry_config::tenants::tenant_of(&delivery.lane.flow),
            destination: &delivery.lane.destination,
            delivery_id: &ids.1,
        };
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            RenderError::permanent("template_failed", format!("the {what} failed: {e}"))
        };
        let url = match &t.url {
            None => None,
            Some(template) => {
                let text = template
                    .render(&ctx)
                    .map_err(|e| failed("URL template", &e))?;
                Some(Url::parse(&text).map_err(|e| {
                    failed("URL template", &format!("the result is not a URL ({e})"))
                })?)
            }
        };
        let mut headers = HeaderMap::new();
        for (name, template) in &t.headers {
            let what = format!("`{name}` header template");
            let text = template.render(&ctx).map_err(|e| failed(&what, &e))?;
            let value = HeaderValue::from_str(&text).map_err(|_| {
                failed(
                    &what,
                    &"the result is not a header value (control characters or line breaks)",
                )
            })?;
            headers.insert(name.clone(), value);
        }
        let (body, content_type) = match &t.body {
            Some(template) => {
                let text = template
                    .render(&ctx)
                    .map_err(|e| failed("body template", &e))?;
                (Bytes::from(text), t.body_content_type.clone())
            }
            None => match &mapped {
                Some(event) => {
                    let json = event.to_json_vec().map_err(|e| {
                        RenderError::permanent("map_failed", format!("the `map` failed: {e}"))
                    })?;
                    (
                        Bytes::from(json),
                        Some(HeaderValue::from_static("application/json")),
                    )
                }
                None => (payload.clone(), payload_content_type),
            },
        };
        Ok(Rendered {
            body,
            url,
            headers,
            content_type,
            categories_sent: Vec::new(),
        })
    }

    fn check_contract(
        &self,
        contract: &ContractConfig,
        delivery: &ClaimedDelivery,
        event: &Value,
    ) -> Result<(), RenderError> {
        let Err(violations) = self.schemas.validate(&contract.schema, event) else {
            return Ok(());
        };
        let lane = &delivery.lane;
        metrics::counter!(
            ferry_metrics::CONTRACT_VIOLATIONS_TOTAL,
            "flow" => lane.flow.clone(),
            "destination" => lane.destination.clone()
        )
        .increment(1);
        match contract.on_violation {
            OnViolation::Warn => {
                // Pointers only: violation messages quote values, which may be personal data.
                let pointers: Vec<&str> = violations
                    .iter()
                    .take(VIOLATIONS_QUOTED)
                    .map(|v| v.pointer.as_str())
                    .collect();
                tracing::warn!(
                    delivery = %delivery.id,
                    flow = %lane.flow,
                    destination = %lane.destination,
                    schema = %contract.schema,
                    violations = violations.len(),
                    pointers = ?pointers,
                    "outgoing payload breaks its contract; sending it anyway (on_violation: warn)"
                );
                Ok(())
            }
            OnViolation::Dlq => {
                let quoted = quote_violations(&violations);
                Err(RenderError::permanent(
                    "contract_violation",
                    format!(
                        "the payload breaks contract `{}`: {}",
                        contract.schema,
                        quoted.join("; ")
                    ),
                ))
            }
        }
    }
}

#[async_trait]
impl Render for DestinationRender {
    async fn render(&self, delivery: &ClaimedDelivery) -> Result<Rendered, RenderError> {
        // Handed over by ingress with the payload in clear: the same event as decrypting
        // the stored one would give, and no data key needed. (Were its subject erased
        // since the append, a few milliseconds ago, this delivery counts as sent before.)
        if self.at_rest.is_some()
            && let Some(clear) = &delivery.clear_payload
        {
            return async {
                let prepared = self.protect(delivery, clear)?;
                self.render_prepared(delivery, prepared).await
            }
            .await
            .map_err(withhold_details);
        }
        // Fields encrypted at rest, decrypted first: everything after sees the event as sent.
        match self.decrypt_at_rest(delivery).await? {
            // A failure's message is stored with the attempt and may quote the decrypted
            // values (a VRL error, a contract violation): only its class is kept.
            Some(event) => async {
                let prepared = self.prepare_opened(delivery, event)?;
                self.render_prepared(delivery, prepared).await
            }
            .await
            .map_err(withhold_details),
            None => {
                self.render_prepared(delivery, self.prepare(delivery)?)
                    .await
            }
        }
    }

    fn time_budget(&self) -> Duration {
        self.enrich_plan()
            .map_or(Duration::ZERO, EnrichPlan::timeout)
    }

    async fn seal_excerpt(&self, delivery: &ClaimedDelivery, excerpt: &str) -> SealedExcerpt {
        let Some(at_rest) = &self.at_rest else {
            return SealedExcerpt::Keep;
        };
        match at_rest
            .seal_excerpt(&delivery.id.to_string(), &delivery.payload, excerpt)
            .await
        {
            Ok(Excerpt::Clear) => SealedExcerpt::Keep,
            Ok(Excerpt::Sealed(sealed)) => SealedExcerpt::Sealed(sealed),
            Ok(Excerpt::Dropped) => SealedExcerpt::Drop,
            Err(e) => {
                // Never stored in clear: without the key, the excerpt is not kept.
                tracing::warn!(delivery = %delivery.id, error = %e, "response excerpt not kept: its event's data key could not be had");
                SealedExcerpt::Drop
            }
        }
    }
}

impl DestinationRender {
    /// [`Render::render`] after the decryption and the policy (`prepared`): `enrich`, then
    /// the rest.
    async fn render_prepared(
        &self,
        delivery: &ClaimedDelivery,
        prepared: Prepared,
    ) -> Result<Rendered, RenderError> {
        if self.enrich_plan().is_none() {
            return self.render_prepared_now(delivery, prepared);
        }
        let Some(enricher) = &self.enricher else {
            return Err(RenderError::permanent(
                ENRICH_FAILED,
                "this destination's `enrich` has no lookup client (the hub did not set it up)",
            ));
        };
        let mut event = stored_event(&prepared.payload)?;
        enricher.enrich(delivery, &mut event).await?;
        let mut rendered = self.render_value(delivery, &event)?;
        rendered.categories_sent = prepared.categories_sent;
        Ok(rendered)
    }
}

/// A rendering failure of a decrypted event, its message reduced to its class.
fn withhold_details(e: RenderError) -> RenderError {
    RenderError {
        message: format!(
            "{} (details withheld: the event's classified fields are encrypted at rest)",
            e.class
        ),
        ..e
    }
}

/// The stored event (as prepared for the destination), parsed.
fn stored_event(payload: &Bytes) -> Result<Value, RenderError> {
    serde_json::from_slice(payload).map_err(|e| {
        RenderError::permanent(
            "payload_invalid",
            format!("the stored event is not JSON: {e}"),
        )
    })
}

/// The first violations of a contract as `pointer: message` lines (`(root)` for the whole
/// document), then `and N more`: what a dead-letter reason or a `ferry test` warning quotes.
pub(crate) fn quote_violations(violations: &[ferry_schema::Violation]) -> Vec<String> {
    let mut quoted: Vec<String> = violations
        .iter()
        .take(VIOLATIONS_QUOTED)
        .map(|v| {
            let at = if v.pointer.is_empty() {
                "(root)"
            } else {
                &v.pointer
            };
            format!("{at}: {}", v.message)
        })
        .collect();
    if violations.len() > VIOLATIONS_QUOTED {
        quoted.push(format!("and {} more", violations.len() - VIOLATIONS_QUOTED));
    }
    quoted
}
