//! The Car ERP operator: the `CarErpTenant` resource, what each tenant becomes, the
//! provisioners of its databases and stream, the controller, the same tenant run locally, and
//! its dead letters from the command line.

pub mod admin;
pub mod config;
pub mod controller;
pub mod crd;
pub mod desired;
pub mod dlq;
pub mod identity;
pub mod infrastructure;
pub mod leader;
pub mod local;
pub mod metrics;
pub mod nats_auth;
pub mod private;
pub mod provision;
pub mod scram;
pub mod seed;
pub mod status;
pub mod validate;
