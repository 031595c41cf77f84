//! The Car ERP operator.
