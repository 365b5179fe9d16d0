-- Commerce II: a customer's carts are looked up by owner when one is claimed (merging the others into it).
CREATE INDEX carts_customer ON carts (customer_id) WHERE customer_id IS NOT NULL;
