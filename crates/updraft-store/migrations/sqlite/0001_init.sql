CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE apps (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);
CREATE TABLE releases (
    app TEXT NOT NULL REFERENCES apps(id),
    version TEXT NOT NULL,
    channel TEXT NOT NULL,
    notes TEXT,
    state TEXT NOT NULL,
    rollout_bp INTEGER NOT NULL,
    salt TEXT NOT NULL,
    created_at TEXT NOT NULL,
    published_at TEXT,
    PRIMARY KEY (app, version)
);
CREATE TABLE artifacts (
    app TEXT NOT NULL,
    version TEXT NOT NULL,
    platform TEXT NOT NULL,
    filename TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (app, version, platform),
    FOREIGN KEY (app, version) REFERENCES releases(app, version)
);
CREATE INDEX artifacts_sha256 ON artifacts(sha256);
CREATE TABLE tuf_metadata (
    app TEXT NOT NULL REFERENCES apps(id),
    role TEXT NOT NULL,
    version BIGINT NOT NULL,
    body BLOB NOT NULL,
    expires TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (app, role, version)
);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    apps TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    app TEXT,
    detail TEXT NOT NULL,
    request_id TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_app ON audit(app, seq);
