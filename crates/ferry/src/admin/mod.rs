//! The operator API (`/admin/v1/...`): browse deliveries and the dead-letter queue, replay;
//! browse and replay the rejected records of queue sources.
//! Every route requires `Authorization: Bearer <settings.admin.token>` ([`TokenGate`]).

mod api;
mod auth;
pub mod client;
pub mod dto;
mod filters;
pub mod governance;
pub mod rejected;
pub mod systems;

pub use api::{AdminState, router};
pub use auth::{AdminCaller, TokenGate, require_token, token_id};
