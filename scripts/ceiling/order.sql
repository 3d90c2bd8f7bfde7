-- One order, one transaction.
\set sku random(1, 1000)
BEGIN;
INSERT INTO ceiling_events (aggregate_id, version, event_type, data)
  VALUES (gen_random_uuid(), 1, 'OrderPlaced',
          '{"lines":[{"sku":"SKU-1","quantity":1,"unit_price":"12.50"}],"currency":"EUR","total":"12.50"}');
UPDATE ceiling_stock SET reserved = reserved + 1, version = version + 1 WHERE sku = 'SKU-' || :sku;
INSERT INTO ceiling_views (id, customer_id, status, total, data, updated_at)
  VALUES (gen_random_uuid(), gen_random_uuid(), 'reserved', 12.50, '{"items":1}', now());
COMMIT;
