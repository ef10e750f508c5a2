CREATE TABLE rollout_schedules (
    app TEXT NOT NULL,
    version TEXT NOT NULL,
    schedule TEXT NOT NULL,
    step BIGINT NOT NULL,
    step_started_at TEXT NOT NULL,
    state TEXT NOT NULL,
    evidence TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (app, version),
    FOREIGN KEY (app, version) REFERENCES releases(app, version)
);
CREATE INDEX rollout_schedules_state ON rollout_schedules(state);
CREATE TABLE health_settings (
    app TEXT PRIMARY KEY REFERENCES apps(id),
    rules TEXT,
    webhook_url TEXT,
    webhook_format TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE release_downgrades (
    app TEXT NOT NULL,
    version TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (app, version),
    FOREIGN KEY (app, version) REFERENCES releases(app, version)
)
