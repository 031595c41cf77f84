-- Who recorded a payment and who voided an invoice: the caller's user (or API token) id from
-- the access token, never a name the client sent. Rows from before sign-in existed have ''.
ALTER TABLE payments ADD COLUMN recorded_by TEXT NOT NULL DEFAULT '';
ALTER TABLE invoices ADD COLUMN voided_by TEXT NOT NULL DEFAULT '';
