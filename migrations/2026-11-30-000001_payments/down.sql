DROP TABLE webhook_events;
DROP TABLE payments;
ALTER TABLE sales DROP COLUMN paid_count;
