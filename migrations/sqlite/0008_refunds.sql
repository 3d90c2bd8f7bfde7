-- Partial refunds: what an order has had refunded so far, for its view
-- (see the PostgreSQL migration).
ALTER TABLE order_views ADD COLUMN refunded_amount TEXT NOT NULL DEFAULT '0';
