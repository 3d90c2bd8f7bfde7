-- The twin of migrations/postgres/0011_plugin_limits.sql.
ALTER TABLE plugin_versions ADD COLUMN max_memory INTEGER;
ALTER TABLE plugin_versions ADD COLUMN max_input INTEGER;
