-- A node's snapshot reads plugins without printing each one's jsonb. A portal's 100,000
-- per-consumer instances of a handful of plans are mostly config: the snapshot reads each
-- row's typed columns and the rest of its entity, and each distinct config once, by md5.
ALTER TABLE plugins
  ADD COLUMN config_md5 text GENERATED ALWAYS AS (md5((entity->'config')::text)) STORED,
  ADD COLUMN rest jsonb GENERATED ALWAYS AS
    (entity - '{id,name,instance_name,route,service,consumer,config}'::text[]) STORED;
CREATE INDEX plugins_config_md5 ON plugins (config_md5);
