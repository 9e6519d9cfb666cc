//! Ferry: a self-hosted integration hub in one binary.
//!
//! The data path, one module each:
//! `ingress` (verify, parse, dedupe) -> `ferry_store` (event + deliveries, one commit)
//! -> `ferry_delivery` (per-destination lanes) -> connector -> outcome back to the store.
//! [`hub`] assembles them from a [`ferry_config::Config`]; [`admin`] is the operator API;
//! [`cli`] and [`demo`] are what a user runs.
#![forbid(unsafe_code)]

pub mod admin;
pub mod alerts;
pub mod assembly;
pub mod at_rest;
pub mod backend;
pub mod backlog;
pub mod cli;
pub mod clock;
pub mod demo;
pub mod enrich;
pub mod fixture;
pub mod hub;
pub mod ingress;
pub mod intake;
pub mod logfile;
pub mod membership;
pub mod notify;
pub mod outbound;
pub mod problem;
pub mod protect;
pub mod pull;
pub mod render;
pub mod retention;
pub mod server;
pub mod strict_json;
pub mod synthetic;
pub mod telemetry;
pub mod tenancy;
pub mod transforms;
