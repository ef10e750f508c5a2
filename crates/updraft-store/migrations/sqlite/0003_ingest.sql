CREATE TABLE ingest_projects (
    project_id INTEGER PRIMARY KEY,
    app TEXT NOT NULL UNIQUE REFERENCES apps(id),
    public_key TEXT NOT NULL UNIQUE,
    salt TEXT NOT NULL,
    retention_days INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE session_buckets (
    app TEXT NOT NULL REFERENCES apps(id),
    version TEXT NOT NULL,
    platform TEXT NOT NULL,
    environment TEXT NOT NULL,
    hour TEXT NOT NULL,
    started BIGINT NOT NULL,
    crashed BIGINT NOT NULL,
    abnormal BIGINT NOT NULL,
    errored BIGINT NOT NULL,
    PRIMARY KEY (app, version, platform, environment, hour)
);
CREATE TABLE session_ids (
    app TEXT NOT NULL REFERENCES apps(id),
    sid TEXT NOT NULL,
    client_hash TEXT,
    crashed INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (app, sid)
);
CREATE INDEX session_ids_client ON session_ids(app, client_hash);
CREATE INDEX session_ids_updated ON session_ids(app, updated_at);
CREATE TABLE session_clients (
    app TEXT NOT NULL REFERENCES apps(id),
    version TEXT NOT NULL,
    platform TEXT NOT NULL,
    client_hash TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    crashed_at TEXT,
    PRIMARY KEY (app, version, platform, client_hash)
);
CREATE INDEX session_clients_client ON session_clients(app, client_hash);
CREATE TABLE install_reports (
    id INTEGER PRIMARY KEY,
    app TEXT NOT NULL REFERENCES apps(id),
    version TEXT NOT NULL,
    from_version TEXT,
    platform TEXT NOT NULL,
    outcome TEXT NOT NULL,
    client_hash TEXT NOT NULL,
    error TEXT,
    received_at TEXT NOT NULL
);
CREATE INDEX install_reports_release ON install_reports(app, version, received_at);
CREATE INDEX install_reports_client ON install_reports(app, client_hash);
CREATE TABLE issues (
    id INTEGER PRIMARY KEY,
    app TEXT NOT NULL REFERENCES apps(id),
    fingerprint TEXT NOT NULL,
    title TEXT NOT NULL,
    exc_type TEXT,
    level TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    events BIGINT NOT NULL,
    UNIQUE (app, fingerprint)
);
CREATE TABLE events (
    app TEXT NOT NULL REFERENCES apps(id),
    event_id TEXT NOT NULL,
    issue_id INTEGER NOT NULL REFERENCES issues(id),
    received_at TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    release TEXT,
    version TEXT,
    environment TEXT,
    platform TEXT,
    level TEXT NOT NULL,
    exc_type TEXT,
    message TEXT,
    client_hash TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (app, event_id)
);
CREATE INDEX events_issue ON events(issue_id, received_at);
CREATE INDEX events_client ON events(app, client_hash);
CREATE INDEX events_received ON events(app, received_at)
