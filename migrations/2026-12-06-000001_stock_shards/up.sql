-- A hot sale's stock may be split over several Redis key groups (stock shards); fixed at creation.
ALTER TABLE sales
    ADD COLUMN stock_shards SMALLINT NOT NULL DEFAULT 1 CHECK (stock_shards BETWEEN 1 AND 16);
