-- The customer record (in the customers service) an account owns, for the `customer_id` claim of
-- its access tokens. NULL for staff and for customers not yet linked; one account per customer.
ALTER TABLE accounts ADD COLUMN customer_id UUID NULL;
CREATE UNIQUE INDEX accounts_customer_id_unique ON accounts (customer_id)
    WHERE customer_id IS NOT NULL;
