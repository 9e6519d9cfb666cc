//! Turns a validated [`Config`] into the runtime parts of the data path: one
//! [`IngressRoute`] per webhook flow, one [`PullSpec`] per pull or table-source flow, one
//! [`QueueSpec`] per queue flow and one [`LaneSpec`] per (flow, destination).
//! Secrets are resolved here, once, at start-up.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use ferry_config::{
    Config, Destination, EventIdSource, HeaderValue, HmacEncoding, OutboundSigning, SecretUse,
    SignatureConfig, Source, check_strength,
};
use ferry_connectors::kafka::KafkaConnector;
use ferry_connectors::nats::NatsConnector;
use ferry_connectors::postgres::PostgresConnector;
use ferry_connectors::rabbitmq::RabbitmqConnector;
use ferry_delivery::{
    BatchFailure, BatchSpec, BreakerSettings, Connector, EgressPolicy, GateSpec, HttpConnector,
    HttpTarget, LaneSpec, OAuth2Grant, RateLimitSpec, Render, RetryPolicy,
};
use ferry_schema::SchemaRegistry;
use ferry_signature::{SignatureScheme, SigningKey, VendorEventId, schemes};
use ferry_store::LaneKey;
use reqwest::header::{HeaderMap, HeaderName};
use secrecy::ExposeSecret;

use crate::at_rest::AtRest;
use crate::enrich::Lookups;
use crate::ingress::accept_audit::AcceptAudit;
use crate::ingress::dedupe::DedupeRule;
use crate::ingress::steps::IngressSteps;
use crate::ingress::validate::{self, ValidateRule};
use crate::intake::QueueSpec;
use crate::protect::{DestinationProtection, Keys};
use crate::pull::{PullSpec, PullSteps};
use crate::render::{DestinationRender, DestinationTransforms};

/// Everything ingress needs to accept events for one flow.
#[derive(Debug)]
pub struct IngressRoute {
    pub flow: String,
    pub source_system: String,
    pub verifier: Box<dyn SignatureScheme>,
    pub event_id: EventIdRule,
    /// JSON pointer to the event type, if configured.
    pub event_type_pointer: Option<String>,
    pub max_body_bytes: usize,
    /// The lanes each accepted event fans out to.
    pub lanes: Vec<RouteLane>,
    /// The flow's `validate` steps, run before anything is stored.
    pub validate: Vec<ValidateRule>,
    /// The config's schemas (shared by every route).
    pub schemas: Arc<SchemaRegistry>,
    /// The flow's `filter`, `route` and `split` steps, run after `validate`.
    pub steps: IngressSteps,
    /// The flow's `dedupe` step: the window key of each event the steps made.
    pub dedupe: Option<DedupeRule>,
    /// What the audit trail records about each accepted event.
    pub audit: AcceptAudit,
    /// The flow's ingress counters.
    pub counters: crate::ingress::counters::RouteCounters,
    /// Encryption at rest, when `settings.protection.keys` is set.
    pub at_rest: Option<Arc<AtRest>>,
}

/// One lane an accepted event fans out to, with what ingress must know about it.
#[derive(Debug, Clone)]
pub struct RouteLane {
    pub key: LaneKey,
    /// JSON pointer to the per-key ordering key (`ordering.key`), if the destination orders.
    pub order_key: Option<String>,
    /// Backlog beyond which the flow refuses events with 503.
    pub max_pending: u64,
    /// The `Retry-After` of that refusal.
    pub backlog_retry_after: std::time::Duration,
}

/// Where the sender's event id (the dedupe key) is read from.
#[derive(Debug, Clone)]
pub enum EventIdRule {
    /// No `event_id`, and the scheme knows no vendor: `webhook-id`, then `svix-id`, then
    /// `Idempotency-Key`, whichever the request carries (none: no dedupe key).
    Default,
    /// No `event_id`, and the signature scheme knows where its vendor puts the event id
    /// ([`SignatureScheme::vendor_event_id`]): read there, else as [`EventIdRule::Default`].
    /// Never refuses a request: a default must not turn away what the sender always sent.
    Vendor(VendorEventId),
    /// `event_id: { header: … }`: this header, required.
    Header(HeaderName),
    /// `event_id: { json_pointer: … }`: the string or number there, required.
    JsonPointer(String),
}

impl EventIdRule {
    /// The rule of a flow: its `event_id`, else its scheme's vendor id, else the defaults.
    pub fn for_source(
        configured: Option<&EventIdSource>,
        verifier: &dyn SignatureScheme,
    ) -> Result<Self> {
        Ok(match configured {
            Some(EventIdSource::Header(h)) => EventIdRule::Header(
                HeaderName::from_bytes(h.as_bytes())
                    .with_context(|| format!("event_id header `{h}`"))?,
            ),
            Some(EventIdSource::JsonPointer(p)) => EventIdRule::JsonPointer(p.clone()),
            None => verifier
                .vendor_event_id()
                .map_or(EventIdRule::Default, EventIdRule::Vendor),
        })
    }

    /// Whether the flow chose the rule (`event_id`), rather than taking a default.
    pub fn is_configured(&self) -> bool {
        matches!(self, EventIdRule::Header(_) | EventIdRule::JsonPointer(_))
    }

    /// Whether reading the id needs the parsed body.
    pub fn reads_body(&self) -> bool {
        matches!(
            self,
            EventIdRule::JsonPointer(_) | EventIdRule::Vendor(VendorEventId::JsonPointer(_))
        )
    }
}

/// The assembled runtime parts.
#[derive(Debug)]
pub struct Assembly {
    /// Keyed by URL path segment (`/ingest/{path}`).
    pub routes: BTreeMap<String, Arc<IngressRoute>>,
    pub lanes: Vec<LaneSpec>,
    /// One per pull flow.
    pub pulls: Vec<Arc<PullSpec>>,
    /// One per queue flow (`nats`, `rabbitmq` sources), by flow name.
    pub queues: crate::intake::QueueFlows,
    /// The config's compiled schemas.
    pub schemas: Arc<SchemaRegistry>,
    /// Which schema's annotations classify an event of each flow.
    pub classifier: Arc<ferry_protect::Classifier>,
    /// The protection of each (flow, destination) that has one.
    pub protections: BTreeMap<(String, String), Arc<DestinationProtection>>,
    /// What categories may reach which systems, and how protected (from the config).
    pub datamap: Arc<ferry_protect::DataMap>,
    /// Admin bearer token, if configured.
    pub admin_token: Option<secrecy::SecretString>,
    /// The token `/metrics` requires, if configured.
    pub metrics_token: Option<secrecy::SecretString>,
}

/// Build the ingress routes and delivery lanes of `config`, resolving every secret.
pub fn assemble(config: &Config) -> Result<Assembly> {
    assemble_serving(config, None)
}

/// [`assemble`] for a hub that encrypts at rest with `at_rest` (when set): its ingress
/// encrypts classified fields, and every destination decrypts them first when it renders.
pub fn assemble_serving(config: &Config, at_rest: Option<Arc<AtRest>>) -> Result<Assembly> {
    let root = &config.root;
    let secret = |r: &ferry_config::SecretRef| r.resolve(root).map_err(|e| anyhow!("{e}"));
    assemble_with(config, &secret, &secret, at_rest)
}

/// What stands in for every secret in [`assemble_offline`]: a valid Standard Webhooks key
/// (`whsec_` + base64), so every place a secret goes accepts it.
const OFFLINE_SECRET: &str = "whsec_ZmVycnktdGVzdC1vZmZsaW5lLXNlY3JldA==";
/// What stands in for the keys of data protection in [`assemble_offline`]: 32 bytes in
/// base64, a valid AES-256 key and hash key. Hashed and encrypted outputs of `ferry test`
/// therefore differ from the hub's.
const OFFLINE_KEY: &str = "ZmVycnktdGVzdC1vZmZsaW5lLXByb3RlY3Rpb24ta2U=";

/// [`assemble`] without reading any secret: a placeholder stands in for each. For running
/// the data path without a network or a store (`ferry test`), where nothing is verified,
/// signed or sent, so a machine without the secrets (CI) can run it. Never serve with it.
pub fn assemble_offline(config: &Config) -> Result<Assembly> {
    assemble_with(
        config,
        &|_: &ferry_config::SecretRef| Ok(secrecy::SecretString::from(OFFLINE_SECRET)),
        &|_: &ferry_config::SecretRef| Ok(secrecy::SecretString::from(OFFLINE_KEY)),
        None,
    )
}

/// [`assemble`], with secrets read by `secret`, and the keys of data protection by
/// `protection_key`.
fn assemble_with(
    config: &Config,
    secret: &dyn Fn(&ferry_config::SecretRef) -> Result<secrecy::SecretString>,
    protection_key: &dyn Fn(&ferry_config::SecretRef) -> Result<secrecy::SecretString>,
    at_rest: Option<Arc<AtRest>>,
) -> Result<Assembly> {
    let schemas = Arc::new(SchemaRegistry::load(config).map_err(|problems| {
        let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow!("invalid schemas:\n{}", all.join("\n"))
    })?);
    let classifier = Arc::new(ferry_protect::Classifier::new(config, &schemas));
    let keys = Keys::resolve(config, protection_key)?;
    let mut protections = BTreeMap::new();
    let hub_egress = &config.settings.delivery.egress_allow;
    // Subject references use the protection actions' hasher: one key, one hasher.
    let hasher = keys.hasher().cloned();
    let mut routes = BTreeMap::new();
    let mut lanes = Vec::new();
    let mut pulls = Vec::new();
    let mut queues = crate::intake::QueueFlows::new();
    for (flow_name, flow) in &config.flows {
        let mut flow_lanes = Vec::new();
        for (dest_name, dest) in &flow.destinations {
            let key = LaneKey {
                flow: flow_name.clone(),
                destination: dest_name.clone(),
            };
            let transforms =
                DestinationTransforms::compile(flow_name, dest_name, dest, &mut Vec::new())
                    .map_err(|failures| compile_failures(&failures))?;
            let protection = DestinationProtection::for_destination(
                config,
                &classifier,
                &keys,
                flow_name,
                dest_name,
                dest,
            );
            if let Some(p) = &protection {
                protections.insert((flow_name.clone(), dest_name.clone()), p.clone());
            }
            let render = match DestinationRender::new(transforms, schemas.clone(), protection) {
                Some(render) if dest.enrich.is_some() => {
                    let lookups = enrich_lookups(dest, hub_egress, secret).with_context(|| {
                        format!("flow `{flow_name}`, destination `{dest_name}`: enrich")
                    })?;
                    Some(render.with_lookups(lookups)?)
                }
                other => other,
            };
            let render = with_decryption(render, at_rest.as_ref(), &schemas)
                .map(|r| Arc::new(r) as Arc<dyn Render>);
            let spec = build_lane(
                key.clone(),
                dest,
                &config.settings.delivery.egress_allow,
                &secret,
                render,
            )
            .with_context(|| format!("flow `{flow_name}`, destination `{dest_name}`"))?;
            lanes.push(spec);
            flow_lanes.push(RouteLane {
                key,
                order_key: dest.ordering.as_ref().map(|o| o.key.clone()),
                max_pending: dest.backlog.max_pending,
                backlog_retry_after: dest.backlog.retry_after,
            });
        }
        // `ferry validate` compiled every program and template already; warnings were shown.
        let steps = IngressSteps::compile(flow_name, flow, &mut Vec::new())
            .map_err(|failures| compile_failures(&failures))?;
        let dedupe = DedupeRule::compile(flow_name, flow, &mut Vec::new())
            .map_err(|failures| compile_failures(&failures))?;
        let audit = AcceptAudit {
            flow_version: flow.version,
            classifier: classifier.clone(),
            hasher: hasher.clone(),
        };
        let src = match &flow.source {
            Source::Webhook(src) => src,
            // A pull flow has lanes and steps like any flow, but no ingress route: its puller
            // runs each record through the steps and appends.
            Source::Pull(src) => {
                let steps = PullSteps {
                    validate: validate::rules(&flow.steps),
                    schemas: schemas.clone(),
                    steps,
                    dedupe,
                    at_rest: at_rest.clone(),
                    audit,
                };
                let spec = PullSpec::build(flow_name, src, flow_lanes, steps, hub_egress, &secret)
                    .with_context(|| format!("flow `{flow_name}`: pull source"))?;
                pulls.push(Arc::new(spec));
                continue;
            }
            // A table source runs like a pull: its puller reads pages of rows.
            Source::Postgres(src) => {
                let steps = PullSteps {
                    validate: validate::rules(&flow.steps),
                    schemas: schemas.clone(),
                    steps,
                    dedupe,
                    at_rest: at_rest.clone(),
                    audit,
                };
                let spec = PullSpec::postgres(flow_name, src, flow_lanes, steps, &secret)
                    .with_context(|| format!("flow `{flow_name}`: postgres source"))?;
                pulls.push(Arc::new(spec));
                continue;
            }
            // A queue flow, like a pull flow, runs each message through the steps and
            // appends; it has no ingress route.
            Source::Nats(_) | Source::Rabbitmq(_) | Source::Kafka(_) => {
                let steps = PullSteps {
                    validate: validate::rules(&flow.steps),
                    schemas: schemas.clone(),
                    steps,
                    dedupe,
                    at_rest: at_rest.clone(),
                    audit,
                };
                let spec = QueueSpec::build(flow_name, &flow.source, flow_lanes, steps, &secret)
                    .with_context(|| format!("flow `{flow_name}`: {} source", flow.source.kind()))?
                    .ok_or_else(|| anyhow!("flow `{flow_name}` has no queue source"))?;
                queues.insert(flow_name.clone(), Arc::new(spec));
                continue;
            }
        };
        let verifier = build_verifier(&src.signature, &secret)
            .with_context(|| format!("flow `{flow_name}`: source signature"))?;
        let event_id = EventIdRule::for_source(src.event_id.as_ref(), verifier.as_ref())
            .with_context(|| format!("flow `{flow_name}`"))?;
        let path = ferry_config::webhook_path(flow_name, src);
        routes.insert(
            path,
            Arc::new(IngressRoute {
                flow: flow_name.clone(),
                source_system: src.system.clone(),
                verifier,
                event_id,
                event_type_pointer: src.event_type.clone().filter(|p| !p.is_empty()),
                max_body_bytes: src
                    .max_body_bytes
                    .unwrap_or(config.settings.ingress.max_body_bytes),
                lanes: flow_lanes,
                validate: validate::rules(&flow.steps),
                schemas: schemas.clone(),
                steps,
                dedupe,
                audit,
                counters: crate::ingress::counters::RouteCounters::new(flow_name),
                at_rest: at_rest.clone(),
            }),
        );
    }
    let token = |r: &Option<ferry_config::SecretRef>, usage, field| -> Result<_> {
        let Some(r) = r else { return Ok(None) };
        let value = secret(r)?;
        check_strength(usage, value.expose_secret().as_bytes())
            .map_err(|e| anyhow!("{field}: {e}"))?;
        Ok(Some(value))
    };
    let admin_token = token(
        &config.settings.admin.token,
        SecretUse::AdminToken,
        "settings.admin.token",
    )?;
    let metrics_token = token(
        &config.settings.metrics.token,
        SecretUse::MetricsToken,
        "settings.metrics.token",
    )?;
    let datamap = Arc::new(ferry_protect::DataMap::build(config, &schemas));
    Ok(Assembly {
        routes,
        lanes,
        pulls,
        queues,
        schemas,
        classifier,
        protections,
        datamap,
        admin_token,
        metrics_token,
    })
}

fn build_verifier(
    cfg: &SignatureConfig,
    secret: &dyn Fn(&ferry_config::SecretRef) -> Result<secrecy::SecretString>,
) -> Result<Box<dyn SignatureScheme>> {
    // Fail closed: `ferry validate` refuses weak secrets, and so does assembly, so that no
    // path into the hub verifies against an empty or guessable key.
    let bytes = |r| -> Result<Vec<u8>> {
        let value = secret(r)?.expose_secret().as_bytes().to_vec();
        check_strength(SecretUse::InboundCredential, &value).map_err(|e| anyhow!("{e}"))?;
        Ok(value)
    };
    Ok(match cfg {
        SignatureConfig::StandardWebhooks {
            secret: s,
            tolerance,
        } => {
            let key = SigningKey::from_standard_webhooks(secret(s)?.expose_secret())
                .map_err(|e| anyhow!("standard_webhooks secret: {e}"))?;
            check_strength(SecretUse::StandardWebhooksKey, key.as_bytes())
                .map_err(|e| anyhow!("standard_webhooks secret: {e}"))?;
            Box::new(schemes::StandardWebhooks {
                key,
                tolerance_secs: tolerance.as_secs() as i64,
            })
        }
        SignatureConfig::Stripe {
            secret: s,
            tolerance,
            header,
        } => Box::new(schemes::StripeStyle {
            key: SigningKey::from_bytes(bytes(s)?),
            tolerance_secs: tolerance.as_secs() as i64,
            header: HeaderName::from_bytes(
                header.as_deref().unwrap_or("stripe-signature").as_bytes(),
            )?,
        }),
        SignatureConfig::Github { secret: s } => Box::new(schemes::GitHub {
            key: SigningKey::from_bytes(bytes(s)?),
        }),
        SignatureConfig::Hmac {
            secret: s,
            header,
            encoding,
            prefix,
        } => Box::new(schemes::GenericHmac {
            key: SigningKey::from_bytes(bytes(s)?),
            header: HeaderName::from_bytes(header.as_bytes())?,
            encoding: match encoding {
                HmacEncoding::Hex => schemes::Encoding::Hex,
                HmacEncoding::Base64 => schemes::Encoding::Base64,
            },
            prefix: prefix.clone(),
        }),
        SignatureConfig::Bearer { token } => Box::new(schemes::Bearer {
            token: bytes(token)?,
        }),
        SignatureConfig::Basic { username, password } => Box::new(schemes::Basic {
            username: username.clone(),
            password: bytes(password)?,
        }),
        SignatureConfig::None {} => Box::new(schemes::Unsigned),
    })
}

/// The hub-wide egress allow-list (`settings.delivery.egress_allow`) as a policy, for the
/// hub's own outbound calls (owner notifications): give it to
/// [`ferry_delivery::guarded_client_builder`] or [`ferry_delivery::GuardedClient`].
pub fn hub_egress_policy(config: &Config) -> Result<EgressPolicy> {
    EgressPolicy::from_entries(&config.settings.delivery.egress_allow)
        .map_err(|e| anyhow!("settings.delivery.egress_allow: {e}"))
}

/// What a destination's `enrich` lookups send (its `enrich.headers`, secrets resolved) and
/// may reach (the destination's egress allow-list: the hub's plus `http.egress_allow`).
fn enrich_lookups(
    dest: &Destination,
    hub_egress: &[String],
    secret: &dyn Fn(&ferry_config::SecretRef) -> Result<secrecy::SecretString>,
) -> Result<Lookups> {
    let mut headers = HeaderMap::new();
    for (name, value) in dest.enrich.iter().flat_map(|e| &e.headers) {
        let (text, sensitive) = match value {
            HeaderValue::Literal(v) => (v.clone(), false),
            HeaderValue::Secret(r) => (secret(r)?.expose_secret().to_owned(), true),
        };
        let mut value = reqwest::header::HeaderValue::from_str(&text)
            .with_context(|| format!("header `{name}` has an invalid value"))?;
        value.set_sensitive(sensitive);
        headers.insert(HeaderName::from_bytes(name.as_bytes())?, value);
    }
    let allow = dest.http.iter().flat_map(|h| &h.egress_allow);
    let egress = EgressPolicy::from_entries(hub_egress.iter().chain(allow))
        .map_err(|e| anyhow!("egress_allow: {e}"))?;
    Ok(Lookups { headers, egress })
}

/// The static `Authorization` value of an HTTP destination's `auth`, its secret resolved
/// (`None` for `oauth2`: each call carries a token, see [`oauth2_grant`]).
fn authorization(
    auth: &ferry_config::HttpAuth,
    secret: &dyn Fn(&ferry_config::SecretRef) -> Result<secrecy::SecretString>,
) -> Result<Option<String>> {
    use base64::Engine as _;
    Ok(Some(match auth {
        ferry_config::HttpAuth::Basic { username, password } => {
            let pair = format!("{username}:{}", secret(password)?.expose_secret());
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        }
        ferry_config::HttpAuth::Bearer { token } => {
            format!("Bearer {}", secret(token)?.expose_secret())
        }
        ferry_config::HttpAuth::Oauth2(_) => return Ok(None),
    }))
}

/// An `auth: oauth2` as the connector uses it, its secrets resolved and checked (fail
/// closed: an empty or too weak secret stops the start).
fn oauth2_grant(
    oauth2: &ferry_config::OAuth2Auth,
    secret: &dyn Fn(&ferry_config::SecretRef) -> Result<secrecy::SecretString>,
) -> Result<OAuth2Grant> {
    let checked = |r: &ferry_config::SecretRef, field: &str| -> Result<secrecy::SecretString> {
        let value = secret(r)?;
        check_strength(
            SecretUse::OutboundCredential,
            value.expose_secret().as_bytes(),
        )
        .map_err(|e| anyhow!("auth.oauth2.{field}: {e}"))?;
        Ok(value)
    };
    Ok(OAuth2Grant {
        token_url: reqwest::Url::parse(&oauth2.token_url)
            .with_context(|| format!("auth.oauth2.token_url `{}`", oauth2.token_url))?,
        client_id: oauth2.client_id.clone(),
        client_secret: checked(&oauth2.client_secret, "client_secret")?,
        scope: oauth2.scope.clone(),
        audience: oauth2.audience.clone(),
        refresh_token: oauth2
            .refresh_token
            .as_ref()
            .map(|r| checked(r, "refresh_token"))
            .transpose()?,
    })
}

/// The programs and templates that do not compile, as one error.
fn compile_failures(failures: &[crate::transforms::Failure]) -> anyhow::Error {
    let all: Vec<String> = failures.iter().map(ToString::to_string).collect();
    anyhow!("programs or templates do not compile:\n{}", all.join("\n"))
}

/// With encryption at rest, every destination renders, so that it decrypts first (one
/// without transforms sends the decrypted event as it is).
fn with_decryption(
    render: Option<DestinationRender>,
    at_rest: Option<&Arc<AtRest>>,
    schemas: &Arc<SchemaRegistry>,
) -> Option<DestinationRender> {
    let Some(at_rest) = at_rest else {
        return render;
    };
    let render = render.unwrap_or_else(|| DestinationRender::decrypt_only(schemas.clone()));
    Some(render.with_at_rest(at_rest.clone()))
}

fn build_lane(
    key: LaneKey,
    dest: &Destination,
    hub_egress: &[String],
    secret: &dyn Fn(&ferry_config::SecretRef) -> Result<secrecy::SecretString>,
    render: Option<Arc<dyn Render>>,
) -> Result<LaneSpec> {
    // The destination's kind decides its connector; everything else is the lane's.
    let connector: Arc<dyn Connector> = match dest.kind() {
        Some("http") if let Some(http) = &dest.http => {
            Arc::new(http_connector(http, dest, hub_egress, secret)?)
        }
        Some("nats") if let Some(nats) = &dest.nats => Arc::new(NatsConnector::new(nats.clone())),
        Some("rabbitmq") if let Some(rabbitmq) = &dest.rabbitmq => {
            let password = rabbitmq.password.as_ref().map(secret).transpose()?;
            Arc::new(RabbitmqConnector::new(rabbitmq.clone(), password))
        }
        Some("postgres") if let Some(postgres) = &dest.postgres => {
            let url = secret(&postgres.url)?;
            Arc::new(PostgresConnector::new(postgres.clone(), &url))
        }
        Some("kafka") if let Some(kafka) = &dest.kafka => {
            Arc::new(KafkaConnector::new(kafka.clone()).map_err(|e| anyhow!(e))?)
        }
        // `ferry validate` refuses none and several.
        _ => bail!(
            "a destination needs exactly one kind (`http`, `nats`, `rabbitmq`, `postgres` or \
             `kafka`)"
        ),
    };
    Ok(LaneSpec {
        key,
        connector,
        retry: RetryPolicy {
            max_attempts: dest.retry.max_attempts,
            max_age: dest.retry.max_age,
            initial_backoff: dest.retry.initial_backoff,
            max_backoff: dest.retry.max_backoff,
        },
        concurrency: dest.concurrency,
        gate: gate_spec(dest),
        batch: dest.batch.as_ref().map(batch_spec),
        render,
        system: Some(dest.system.clone()),
    })
}

/// An `http` destination's connector: its static headers (secrets resolved), signing key,
/// egress policy and one connection pool as large as its bulkhead.
fn http_connector(
    http: &ferry_config::HttpDestination,
    dest: &Destination,
    hub_egress: &[String],
    secret: &dyn Fn(&ferry_config::SecretRef) -> Result<secrecy::SecretString>,
) -> Result<HttpConnector> {
    let mut headers = HeaderMap::new();
    for (name, value) in &http.headers {
        let value = match value {
            // A template is rendered per delivery (see `render`).
            HeaderValue::Literal(v) if ferry_transform::is_template(v) => continue,
            HeaderValue::Literal(v) => v.clone(),
            HeaderValue::Secret(r) => secret(r)?.expose_secret().to_string(),
        };
        let mut value = reqwest::header::HeaderValue::from_str(&value)
            .with_context(|| format!("header `{name}` has an invalid value"))?;
        if matches!(http.headers.get(name), Some(HeaderValue::Secret(_))) {
            value.set_sensitive(true);
        }
        headers.insert(HeaderName::from_bytes(name.as_bytes())?, value);
    }
    if let Some(auth) = &http.auth
        && let Some(authorization) = authorization(auth, secret)?
    {
        let mut value = reqwest::header::HeaderValue::from_str(&authorization)
            .context("`auth` makes an invalid Authorization header")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let signing_key = match &http.signing {
        Some(OutboundSigning::StandardWebhooks { secret: s }) => Some(
            SigningKey::from_standard_webhooks(secret(s)?.expose_secret())
                .map_err(|e| anyhow!("signing secret: {e}"))?,
        ),
        None => None,
    };
    let target = HttpTarget {
        url: reqwest::Url::parse(&http.url).with_context(|| format!("url `{}`", http.url))?,
        method: reqwest::Method::from_bytes(http.method.as_bytes())
            .with_context(|| format!("method `{}`", http.method))?,
        headers,
        timeout: http.timeout,
        connect_timeout: http.connect_timeout,
        signing_key,
        // The hub-wide allow-list plus the destination's own entries.
        egress: EgressPolicy::from_entries(hub_egress.iter().chain(&http.egress_allow))
            .map_err(|e| anyhow!("egress_allow: {e}"))?,
        format: http.format,
    };
    let mut connector = HttpConnector::new(target, dest.concurrency.max(1))
        .context("cannot build the destination's HTTP client")?;
    if let Some(sandbox) = &dest.synthetic.sandbox_url {
        connector = connector.with_sandbox(
            reqwest::Url::parse(sandbox)
                .with_context(|| format!("synthetic.sandbox_url `{sandbox}`"))?,
        );
    }
    match &http.auth {
        Some(ferry_config::HttpAuth::Oauth2(oauth2)) => connector
            .with_oauth2(oauth2_grant(oauth2, secret)?)
            .context("cannot build the destination's OAuth2 token client"),
        _ => Ok(connector),
    }
}

/// The destination's batching, as the lane applies it.
fn batch_spec(batch: &ferry_config::BatchConfig) -> BatchSpec {
    BatchSpec {
        // `ferry validate` guarantees at least 1.
        max_items: batch.max_items.max(1),
        max_bytes: batch.max_bytes,
        linger: batch.linger,
        wrap: batch.wrap.clone(),
        on_failure: match batch.on_failure {
            ferry_config::BatchFailure::RetryBatch => BatchFailure::RetryBatch,
            ferry_config::BatchFailure::Split => BatchFailure::Split,
        },
        failed_items: batch.failed_items.clone(),
    }
}

/// The destination's breaker, rate limit and auto-pause, as the lane's gate enforces them.
fn gate_spec(dest: &Destination) -> GateSpec {
    let cb = &dest.circuit_breaker;
    GateSpec {
        breaker: BreakerSettings {
            enabled: cb.enabled,
            failure_ratio: cb.failure_ratio,
            min_requests: cb.min_requests,
            window: cb.window,
            cool_down: cb.cool_down,
            probes: cb.half_open_probes,
        },
        // `ferry validate` guarantees non-zero counts; a zero here is skipped, not panicked on.
        rate_limit: dest.rate_limit.as_ref().and_then(|rl| {
            Some(RateLimitSpec {
                requests: NonZeroU32::new(rl.requests)?,
                per: rl.per,
                burst: NonZeroU32::new(rl.burst.unwrap_or(1)).unwrap_or(NonZeroU32::MIN),
                key: rl.key.clone(),
            })
        }),
        auto_pause_after: dest.auto_pause.enabled.then_some(dest.auto_pause.after),
        ordered: dest.ordering.is_some(),
    }
}
