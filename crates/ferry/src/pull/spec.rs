//! A pull source as the hub runs it: its config (an HTTP API or a PostgreSQL table), with
//! secrets resolved and the schedule parsed, once, at start-up; and the flow's steps,
//! compiled, which every record goes through like a posted event.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use ferry_config::{HeaderValue, PostgresSource, PullCursor, PullSource, Schedule, SecretRef};
use ferry_delivery::EgressPolicy;
use ferry_schema::SchemaRegistry;
use reqwest::header::{HeaderMap, HeaderName};
use secrecy::{ExposeSecret, SecretString};

use crate::assembly::RouteLane;
use crate::ingress::dedupe::DedupeRule;
use crate::ingress::pipeline::FlowSteps;
use crate::ingress::steps::IngressSteps;
use crate::ingress::validate::ValidateRule;

/// A flow's steps, compiled: what each record goes through before it is stored.
#[derive(Debug, Default)]
pub struct PullSteps {
    /// The `validate` steps.
    pub validate: Vec<ValidateRule>,
    /// The config's schemas.
    pub schemas: Arc<SchemaRegistry>,
    /// The `filter`, `route` and `split` steps.
    pub steps: IngressSteps,
    /// The `dedupe` step.
    pub dedupe: Option<DedupeRule>,
    /// Encryption at rest, when `settings.protection.keys` is set.
    pub at_rest: Option<Arc<crate::at_rest::AtRest>>,
    /// What the audit trail records about each accepted event.
    pub audit: crate::ingress::accept_audit::AcceptAudit,
}

/// One pull flow, ready to run.
#[derive(Debug)]
pub struct PullSpec {
    pub flow: String,
    /// The polled system (the events' source).
    pub source_system: String,
    pub schedule: Schedule,
    pub max_pages: u32,
    /// The freshness SLA.
    pub freshness: Option<Duration>,
    /// The lanes every record fans out to (a `route` step picks among them).
    pub lanes: Vec<RouteLane>,
    /// The flow's steps.
    pub steps: PullSteps,
    /// Where the pages come from.
    pub origin: Origin,
}

/// Where a pull flow's pages come from.
#[derive(Debug)]
pub enum Origin {
    /// An HTTP API.
    Http(HttpOrigin),
    /// A PostgreSQL table.
    Postgres(TableOrigin),
}

/// An HTTP API polled page by page.
#[derive(Debug)]
pub struct HttpOrigin {
    pub url: reqwest::Url,
    /// Request headers, secrets resolved (and marked sensitive).
    pub headers: HeaderMap,
    /// JSON pointer to the page's array of records.
    pub records: String,
    /// JSON pointer to each record's id (the dedupe key).
    pub record_id: Option<String>,
    /// JSON pointer to each record's event type.
    pub event_type: Option<String>,
    pub cursor: PullCursor,
    pub timeout: Duration,
    /// The hub's egress allow-list plus the source's own.
    pub egress: EgressPolicy,
}

/// A PostgreSQL table read by a cursor column.
#[derive(Debug)]
pub struct TableOrigin {
    pub config: PostgresSource,
    /// The connection URL, resolved.
    pub url: SecretString,
}

impl PullSpec {
    /// Build the spec of flow `flow` from its HTTP pull source, resolving secrets with
    /// `secret`.
    pub fn build(
        flow: &str,
        src: &PullSource,
        lanes: Vec<RouteLane>,
        steps: PullSteps,
        hub_egress: &[String],
        secret: &dyn Fn(&SecretRef) -> Result<SecretString>,
    ) -> Result<PullSpec> {
        let url = reqwest::Url::parse(&src.url).with_context(|| format!("url `{}`", src.url))?;
        let schedule = Schedule::parse(&src.schedule).map_err(|e| anyhow!("schedule: {e}"))?;
        Ok(PullSpec {
            flow: flow.to_owned(),
            source_system: src.system.clone(),
            schedule,
            max_pages: src.max_pages.max(1),
            freshness: src.freshness,
            lanes,
            steps,
            origin: Origin::Http(HttpOrigin {
                url,
                headers: headers(&src.headers, secret)?,
                records: src.records.clone(),
                record_id: src.record_id.clone(),
                event_type: src.event_type.clone(),
                cursor: src.cursor.clone(),
                timeout: src.timeout,
                egress: EgressPolicy::from_entries(hub_egress.iter().chain(&src.egress_allow))
                    .map_err(|e| anyhow!("egress_allow: {e}"))?,
            }),
        })
    }

    /// Build the spec of flow `flow` from its PostgreSQL table source, resolving the
    /// connection URL with `secret`.
    pub fn postgres(
        flow: &str,
        src: &PostgresSource,
        lanes: Vec<RouteLane>,
        steps: PullSteps,
        secret: &dyn Fn(&SecretRef) -> Result<SecretString>,
    ) -> Result<PullSpec> {
        let schedule = Schedule::parse(&src.schedule).map_err(|e| anyhow!("schedule: {e}"))?;
        let url = secret(&src.url).context("url")?;
        if !url.expose_secret().starts_with("postgres://")
            && !url.expose_secret().starts_with("postgresql://")
        {
            bail!("url: the secret is not a `postgres://` connection URL");
        }
        Ok(PullSpec {
            flow: flow.to_owned(),
            source_system: src.system.clone(),
            schedule,
            max_pages: src.max_pages.max(1),
            freshness: src.freshness,
            lanes,
            steps,
            origin: Origin::Postgres(TableOrigin {
                config: src.clone(),
                url,
            }),
        })
    }

    /// The flow's steps and lanes, as the ingress pipeline runs them.
    pub fn flow_steps(&self) -> FlowSteps<'_> {
        FlowSteps {
            flow: &self.flow,
            source_system: &self.source_system,
            lanes: &self.lanes,
            validate: &self.steps.validate,
            schemas: &self.steps.schemas,
            steps: &self.steps.steps,
            dedupe: self.steps.dedupe.as_ref(),
            at_rest: self.steps.at_rest.as_ref(),
            audit: &self.steps.audit,
        }
    }
}

fn headers(
    config: &BTreeMap<String, HeaderValue>,
    secret: &dyn Fn(&SecretRef) -> Result<SecretString>,
) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for (name, value) in config {
        let (text, sensitive) = match value {
            HeaderValue::Literal(v) => (v.clone(), false),
            HeaderValue::Secret(r) => (secret(r)?.expose_secret().to_owned(), true),
        };
        let mut value = reqwest::header::HeaderValue::from_str(&text)
            .with_context(|| format!("header `{name}` has an invalid value"))?;
        value.set_sensitive(sensitive);
        let name = HeaderName::from_bytes(name.as_bytes())
            .with_context(|| format!("header name `{name}`"))?;
        headers.insert(name, value);
    }
    Ok(headers)
}
