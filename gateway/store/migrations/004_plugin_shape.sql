-- A node's snapshot reads each plugin's fields besides its columns, config and timestamps as
-- text the server need not compute at read time: the rows of one plan repeat it, so a node
-- parses each distinct text once. Its timestamps come from the created_at column (the model
-- takes updated_at as the load time).
ALTER TABLE plugins
  ADD COLUMN shape text GENERATED ALWAYS AS
    ((entity - '{id,name,instance_name,route,service,consumer,config,created_at,updated_at}'::text[])::text) STORED;
