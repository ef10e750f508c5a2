CREATE TABLE key_files (
    app TEXT NOT NULL,
    name TEXT NOT NULL,
    body BYTEA NOT NULL,
    PRIMARY KEY (app, name)
);
