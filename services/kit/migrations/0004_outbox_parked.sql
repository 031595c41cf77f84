-- An event that can never be published (larger than the broker takes) is parked: set aside
-- with its error, counted in carerp_outbox_parked_total, and no longer in front of its
-- aggregate's later events. Parked rows are never pruned; an operator reads them here.
ALTER TABLE outbox ADD COLUMN parked_at TIMESTAMPTZ;
