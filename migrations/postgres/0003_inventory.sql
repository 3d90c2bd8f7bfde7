-- Inventory reservations and the stock adjustment log.
--
-- A reservation holds units of one SKU for one order. `products.reserved`
-- is always the sum of `quantity` over the SKU's `held` reservations: both
-- change in the same transaction. Committed reservations left the shelf
-- (on_hand went down with them); released ones gave their units back.
CREATE TABLE reservations (
    order_id   UUID        NOT NULL,
    sku        TEXT        NOT NULL REFERENCES products (sku),
    quantity   BIGINT      NOT NULL CHECK (quantity > 0),
    state      TEXT        NOT NULL CHECK (state IN ('held', 'committed', 'released')),
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (order_id, sku)
);
-- The sweeper's question: which held reservations are past their expiry?
CREATE INDEX reservations_held_by_expiry ON reservations (expires_at) WHERE state = 'held';

-- Every manual change of stock, with who asked and why.
CREATE TABLE stock_adjustments (
    id            BIGSERIAL PRIMARY KEY,
    sku           TEXT        NOT NULL REFERENCES products (sku) ON DELETE CASCADE,
    delta         BIGINT      NOT NULL,
    reason        TEXT        NOT NULL,
    on_hand_after BIGINT      NOT NULL,
    actor         UUID        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX stock_adjustments_by_sku ON stock_adjustments (sku, id);
