//! Parts, a stock ledger, and reservations.
