//! Work orders: the repair order from intake to invoice.
