-- The twin of migrations/postgres/0002_plugins.sql.
CREATE TABLE plugin_versions (
    name       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    sha256     TEXT    NOT NULL,
    bytes      BLOB    NOT NULL,
    config     TEXT    NOT NULL,
    priority   INTEGER NOT NULL,
    created_at TEXT    NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE plugin_heads (
    name             TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    active_version   INTEGER,
    previous_version INTEGER,
    updated_at       TEXT NOT NULL
);

CREATE TABLE plugin_generation (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT INTO plugin_generation (id, generation) VALUES (1, 0);
