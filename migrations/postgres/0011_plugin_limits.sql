-- Limits set at install, per version (bytes; NULL: the operator's maximum,
-- --plugin-memory / --plugin-max-input).
ALTER TABLE plugin_versions ADD COLUMN max_memory BIGINT;
ALTER TABLE plugin_versions ADD COLUMN max_input BIGINT;
