-- The relay takes only the oldest pending event of each aggregate, so events about one
-- aggregate are published in order even with several relays.
CREATE INDEX outbox_pending_by_aggregate ON outbox (aggregate_id, seq) WHERE published_at IS NULL;
