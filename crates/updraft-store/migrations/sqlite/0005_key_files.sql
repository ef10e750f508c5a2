CREATE TABLE key_files (
    app TEXT NOT NULL,
    name TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (app, name)
);
