-- Part lines removed from their work order before completion (`workorder.parts-removed`).
-- Their reservation is released; a reservation request for one arriving afterwards (a
-- redelivered or late `workorder.parts-added`) is refused instead of holding stock for a
-- line that no longer exists.
CREATE TABLE removed_part_lines (
    work_order_id UUID        NOT NULL,
    line_id       UUID        NOT NULL,
    removed_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (work_order_id, line_id)
);
