//! What every Car ERP service shares, so that a service's `main.rs` is wiring only.

pub mod admin;
pub mod auth;
pub mod config;
pub mod consumer;
pub mod context;
pub mod convert;
pub mod db;
pub mod dead_letter;
pub mod envelope;
pub mod events;
pub mod grpc;
pub mod idempotency;
pub mod messaging;
pub mod metrics;
pub mod outbox;
pub mod page;
pub mod permissions;
pub mod relay;
pub mod status;
pub mod stream;
pub mod telemetry;
pub mod transient;

pub use config::{ConfigError, Database, ServiceConfig, TenantSettings};
pub use context::RequestContext;
pub use grpc::{GrpcService, RunningService};
pub use metrics::Metrics;
pub use status::{FieldViolation, Violations};

/// The largest inspection photo upload taken, in bytes (a full-resolution photo from a
/// current phone): the work order service refuses larger ones, and the BFF's body limit on
/// the upload routes follows it.
pub const MAX_PHOTO_BYTES: usize = 10 * 1024 * 1024;
