-- The rate-limiting plugin's `cluster` policy: Kong's ratelimiting_metrics table, with the
-- same columns and key, so counts are shared with Kong nodes on the same database during a
-- migration. Rows expire at `ttl` (the end of their window); gangway deletes expired rows.

CREATE TABLE IF NOT EXISTS ratelimiting_metrics (
  identifier   text        NOT NULL,
  period       text        NOT NULL,
  period_date  timestamptz NOT NULL,
  service_id   uuid        NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000'::uuid,
  route_id     uuid        NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000'::uuid,
  value        integer,
  ttl          timestamptz,
  PRIMARY KEY (identifier, period, period_date, service_id, route_id)
);

CREATE INDEX IF NOT EXISTS ratelimiting_metrics_idx
  ON ratelimiting_metrics (service_id, route_id, period_date, period);
CREATE INDEX IF NOT EXISTS ratelimiting_metrics_ttl_idx ON ratelimiting_metrics (ttl);
