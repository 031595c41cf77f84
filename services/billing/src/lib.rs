//! Invoices, tax and payments.
