-- The state of interrupted multipart uploads into an object store (the upload's id and the
-- parts stored so far), by storage root and target key: what any node needs to resume one.
CREATE TABLE ftpd_uploads (
    root       text NOT NULL,
    key        text NOT NULL,
    state      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (root, key)
);
CREATE INDEX ftpd_uploads_by_age ON ftpd_uploads (updated_at);
