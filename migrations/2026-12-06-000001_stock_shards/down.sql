ALTER TABLE sales DROP COLUMN stock_shards;
