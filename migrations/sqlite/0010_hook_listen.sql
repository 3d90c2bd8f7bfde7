-- The twin of migrations/postgres/0010_hook_listen.sql.
ALTER TABLE plugin_versions ADD COLUMN listen TEXT;
