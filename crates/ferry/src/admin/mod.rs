//! The operator API (`/admin/v1/...`): browse deliveries and the dead-letter queue, replay;
//! browse and replay the rejected records of queue sources; the data keys of encryption at
//! rest (status, rotation, erasure of a data subject).
//! Every route requires `Authorization: Bearer <settings.admin.token>` ([`TokenGate`]).

mod api;
mod auth;
pub mod client;
pub mod datamap;
pub mod dto;
mod filters;
pub mod governance;
pub mod keys;
pub mod rejected;
pub mod systems;

pub use api::{AdminState, router};
pub use auth::{AdminCaller, TokenGate, require_token, token_id};
