//! Helpers shared by the operator's integration tests. Each test crate uses only part of them.
#![allow(dead_code)]

pub mod fixtures;
pub mod scram_server;
