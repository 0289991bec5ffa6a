-- gangway's config schema, version 1.
--
-- Every entity row keeps Kong's JSON shape in `entity` (what the Admin API returns), and
-- copies into columns what the database must enforce: primary keys, unique names and keys,
-- foreign keys with Kong's cascade rules, and tags for filtering.
--
-- Every change to an entity row appends to gangway_changes (a trigger, so cascaded deletes
-- and bulk imports are logged too) and notifies `gangway_changes`; nodes apply the log in
-- sequence order. The trigger serializes writing transactions on an advisory lock, so
-- sequence numbers are committed in order and a reader that has applied N has seen
-- everything up to N.

CREATE TABLE certificates (
  id          uuid PRIMARY KEY,
  entity      jsonb NOT NULL,
  tags        text[],
  created_at  bigint NOT NULL
);

CREATE TABLE ca_certificates (
  id          uuid PRIMARY KEY,
  cert_digest text UNIQUE,
  entity      jsonb NOT NULL,
  tags        text[],
  created_at  bigint NOT NULL
);

CREATE TABLE services (
  id                    uuid PRIMARY KEY,
  name                  text UNIQUE,
  client_certificate_id uuid REFERENCES certificates (id),
  entity                jsonb NOT NULL,
  tags                  text[],
  created_at            bigint NOT NULL
);

CREATE TABLE routes (
  id          uuid PRIMARY KEY,
  name        text UNIQUE,
  service_id  uuid REFERENCES services (id),
  entity      jsonb NOT NULL,
  tags        text[],
  created_at  bigint NOT NULL
);
CREATE INDEX routes_service_id ON routes (service_id);

CREATE TABLE consumers (
  id          uuid PRIMARY KEY,
  username    text UNIQUE,
  custom_id   text UNIQUE,
  entity      jsonb NOT NULL,
  tags        text[],
  created_at  bigint NOT NULL
);

CREATE TABLE plugins (
  id            uuid PRIMARY KEY,
  name          text NOT NULL,
  instance_name text UNIQUE,
  route_id      uuid REFERENCES routes (id) ON DELETE CASCADE,
  service_id    uuid REFERENCES services (id) ON DELETE CASCADE,
  consumer_id   uuid REFERENCES consumers (id) ON DELETE CASCADE,
  -- Kong's uniqueness of a plugin per scope: name, route, service, consumer.
  cache_key     text UNIQUE NOT NULL,
  entity        jsonb NOT NULL,
  tags          text[],
  created_at    bigint NOT NULL
);
CREATE INDEX plugins_route_id ON plugins (route_id);
CREATE INDEX plugins_service_id ON plugins (service_id);
CREATE INDEX plugins_consumer_id ON plugins (consumer_id);

CREATE TABLE keyauth_credentials (
  id          uuid PRIMARY KEY,
  consumer_id uuid NOT NULL REFERENCES consumers (id) ON DELETE CASCADE,
  key         text UNIQUE NOT NULL,
  -- Absolute expiry; null means never.
  ttl         timestamptz,
  entity      jsonb NOT NULL,
  tags        text[],
  created_at  bigint NOT NULL
);
CREATE INDEX keyauth_credentials_consumer_id ON keyauth_credentials (consumer_id);

CREATE TABLE acls (
  id          uuid PRIMARY KEY,
  consumer_id uuid NOT NULL REFERENCES consumers (id) ON DELETE CASCADE,
  group_name  text NOT NULL,
  entity      jsonb NOT NULL,
  tags        text[],
  created_at  bigint NOT NULL,
  UNIQUE (consumer_id, group_name)
);

CREATE TABLE upstreams (
  id                    uuid PRIMARY KEY,
  name                  text UNIQUE NOT NULL,
  client_certificate_id uuid REFERENCES certificates (id),
  entity                jsonb NOT NULL,
  tags                  text[],
  created_at            bigint NOT NULL
);

CREATE TABLE targets (
  id          uuid PRIMARY KEY,
  upstream_id uuid NOT NULL REFERENCES upstreams (id) ON DELETE CASCADE,
  target      text NOT NULL,
  entity      jsonb NOT NULL,
  tags        text[],
  created_at  bigint NOT NULL,
  UNIQUE (upstream_id, target)
);

CREATE TABLE snis (
  id             uuid PRIMARY KEY,
  name           text UNIQUE NOT NULL,
  certificate_id uuid NOT NULL REFERENCES certificates (id) ON DELETE CASCADE,
  entity         jsonb NOT NULL,
  tags           text[],
  created_at     bigint NOT NULL
);

CREATE TABLE gangway_changes (
  seq  bigserial PRIMARY KEY,
  kind text NOT NULL,
  id   uuid NOT NULL,
  at   timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION gangway_log_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- One writer at a time until commit: sequence numbers then commit in order.
  PERFORM pg_advisory_xact_lock(7467730);
  INSERT INTO gangway_changes (kind, id)
    VALUES (TG_TABLE_NAME, CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
  -- An empty payload: Postgres folds repeats within a transaction into one notification.
  PERFORM pg_notify('gangway_changes', '');
  RETURN NULL;
END
$$;

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['certificates', 'ca_certificates', 'services', 'routes',
    'consumers', 'plugins', 'keyauth_credentials', 'acls', 'upstreams', 'targets', 'snis']
  LOOP
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I
                    FOR EACH ROW EXECUTE FUNCTION gangway_log_change()', t || '_changes', t);
  END LOOP;
END
$$;

-- Tag filters (`?tags=a,b` is `@>`, `?tags=a/b` is `&&`).
CREATE INDEX services_tags ON services USING gin (tags);
CREATE INDEX routes_tags ON routes USING gin (tags);
CREATE INDEX consumers_tags ON consumers USING gin (tags);
CREATE INDEX plugins_tags ON plugins USING gin (tags);
CREATE INDEX keyauth_credentials_tags ON keyauth_credentials USING gin (tags);
CREATE INDEX acls_tags ON acls USING gin (tags);
CREATE INDEX upstreams_tags ON upstreams USING gin (tags);
CREATE INDEX targets_tags ON targets USING gin (tags);
CREATE INDEX certificates_tags ON certificates USING gin (tags);
CREATE INDEX snis_tags ON snis USING gin (tags);
CREATE INDEX ca_certificates_tags ON ca_certificates USING gin (tags);
