-- Partial refunds: what an order has had refunded so far, for its view
-- (the events hold each refund; see docs/design.md, "Refunds").
ALTER TABLE order_views ADD COLUMN refunded_amount NUMERIC NOT NULL DEFAULT 0;
