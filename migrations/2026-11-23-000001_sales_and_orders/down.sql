DROP TABLE orders;
DROP TABLE sales;
