-- A saga is looked up by its order (placement's Prefer: wait, cancel,
-- refund, the reservation sweeper). The unique constraint leads with
-- saga_type, so without this index that lookup scanned the whole table.
CREATE INDEX saga_instances_by_order ON saga_instances (correlation_id);
