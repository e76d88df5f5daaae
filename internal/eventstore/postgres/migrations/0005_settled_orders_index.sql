-- Finding whether orders settled on a stock stream (ADR 0159): a Stock's
-- snapshot no longer holds its settled orders, so a reservation on a
-- stock loaded from one asks which of its orders had their reservation
-- released or consumed on that stream before the snapshot. Event data is
-- JSON in bytea, and an index expression must be immutable (see
-- 0003_correlation_index.sql). The index is partial: only the two event
-- types that settle an order, which the query names literally. Every
-- statement is idempotent: the migrations run at every start.
CREATE OR REPLACE FUNCTION es_order_id(data bytea) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT convert_from(data, 'UTF8')::jsonb ->> 'order_id' $$;

CREATE INDEX IF NOT EXISTS es_events_settled_order ON es_events (stream, es_order_id(data))
    WHERE type IN ('StockReleased', 'StockConsumed');
