-- Corrections (issue 14, item 6): a voided invoice can be replaced. One invoice per work order
-- holds for invoices that are not void; voided ones stay, as issued, beside the correction.
ALTER TABLE invoices DROP CONSTRAINT invoices_work_order_unique;
CREATE UNIQUE INDEX invoices_work_order_current ON invoices (work_order_id) WHERE status <> 'VOID';
CREATE INDEX invoices_work_order ON invoices (work_order_id, id);

-- The completion an invoice bills (`completedAt` of its `workorder.completed`), so that a late
-- copy of an old completion is not mistaken for the request of a corrected invoice; and the
-- voided invoice a corrected one replaces. Both empty on invoices from before.
ALTER TABLE invoices ADD COLUMN work_order_completed_at TIMESTAMPTZ;
ALTER TABLE invoices ADD COLUMN corrects_invoice_id UUID REFERENCES invoices (id);
