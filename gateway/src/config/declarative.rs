//! Declarative kong.yml loader. OWNER: config helper.
