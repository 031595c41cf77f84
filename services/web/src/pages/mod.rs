//! The pages, one module per area.

pub mod api_tokens;
pub mod approval;
pub mod auth;
pub mod canned_jobs;
pub mod customers;
pub mod history;
pub mod inspections;
pub mod invoices;
pub mod live;
pub mod parts;
pub mod people;
pub mod today;
pub mod workorders;
