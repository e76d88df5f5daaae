-- Runs once, as the superuser, when the compose PostgreSQL volume is new.
-- One database per service, owned by the service's owner role (which runs
-- the migrations) and used at run time by the service's _app role, which
-- may only read and write rows: the same split services/internal/pgdb
-- Provision makes. The passwords are the compose stack's development
-- ones; production takes them from secrets (docs/operations.md).
\set ON_ERROR_STOP on

CREATE ROLE orderflow_orders LOGIN PASSWORD 'orders-owner';
CREATE ROLE orderflow_orders_app LOGIN PASSWORD 'orders-app';
CREATE DATABASE orderflow_orders OWNER orderflow_orders;

CREATE ROLE orderflow_inventory LOGIN PASSWORD 'inventory-owner';
CREATE ROLE orderflow_inventory_app LOGIN PASSWORD 'inventory-app';
CREATE DATABASE orderflow_inventory OWNER orderflow_inventory;

CREATE ROLE orderflow_shipping LOGIN PASSWORD 'shipping-owner';
CREATE ROLE orderflow_shipping_app LOGIN PASSWORD 'shipping-app';
CREATE DATABASE orderflow_shipping OWNER orderflow_shipping;

CREATE ROLE orderflow_sagas LOGIN PASSWORD 'sagas-owner';
CREATE ROLE orderflow_sagas_app LOGIN PASSWORD 'sagas-app';
CREATE DATABASE orderflow_sagas OWNER orderflow_sagas;

-- Each database admits its two roles only.
REVOKE ALL ON DATABASE orderflow_orders, orderflow_inventory, orderflow_shipping, orderflow_sagas FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE orderflow_orders TO orderflow_orders;
GRANT CONNECT ON DATABASE orderflow_orders TO orderflow_orders_app;
GRANT CONNECT, TEMPORARY ON DATABASE orderflow_inventory TO orderflow_inventory;
GRANT CONNECT ON DATABASE orderflow_inventory TO orderflow_inventory_app;
GRANT CONNECT, TEMPORARY ON DATABASE orderflow_shipping TO orderflow_shipping;
GRANT CONNECT ON DATABASE orderflow_shipping TO orderflow_shipping_app;
GRANT CONNECT, TEMPORARY ON DATABASE orderflow_sagas TO orderflow_sagas;
GRANT CONNECT ON DATABASE orderflow_sagas TO orderflow_sagas_app;

-- Inside each database: the owner owns the schema; the _app role gets
-- row access to what the owner creates there, now and later.
\connect orderflow_orders
ALTER SCHEMA public OWNER TO orderflow_orders;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO orderflow_orders_app;
ALTER DEFAULT PRIVILEGES FOR ROLE orderflow_orders IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO orderflow_orders_app;
ALTER DEFAULT PRIVILEGES FOR ROLE orderflow_orders IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO orderflow_orders_app;
ALTER DEFAULT PRIVILEGES FOR ROLE orderflow_orders IN SCHEMA public GRANT EXECUTE ON ROUTINES TO orderflow_orders_app;

\connect orderflow_inventory
ALTER SCHEMA public OWNER TO orderflow_inventory;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO orderflow_inventory_app;
ALTER DEFAULT PRIVILEGES FOR ROLE orderflow_inventory IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO orderflow_inventory_app;
ALTER DEFAULT PRIVILEGES FOR ROLE orderflow_inventory IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO orderflow_inventory_app;
ALTER DEFAULT PRIVILEGES FOR ROLE orderflow_inventory IN SCHEMA public GRANT EXECUTE ON ROUTINES TO orderflow_inventory_app;

\connect orderflow_shipping
ALTER SCHEMA public OWNER TO orderflow_shipping;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO orderflow_shipping_app;
ALTER DEFAULT PRIVILEGES FOR ROLE orderflow_shipping IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO orderflow_shipping_app;
ALTER DEFAULT PRIVILEGES FOR ROLE orderflow_shipping IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO orderflow_shipping_app;
ALTER DEFAULT PRIVILEGES FOR ROLE orderflow_shipping IN SCHEMA public GRANT EXECUTE ON ROUTINES TO orderflow_shipping_app;

\connect orderflow_sagas
ALTER SCHEMA public OWNER TO orderflow_sagas;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO orderflow_sagas_app;
ALTER DEFAULT PRIVILEGES FOR ROLE orderflow_sagas IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO orderflow_sagas_app;
ALTER DEFAULT PRIVILEGES FOR ROLE orderflow_sagas IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO orderflow_sagas_app;
ALTER DEFAULT PRIVILEGES FOR ROLE orderflow_sagas IN SCHEMA public GRANT EXECUTE ON ROUTINES TO orderflow_sagas_app;
