-- Quota bookkeeping shared by the nodes of one object store.

-- What each home holds: counted by listing it once, then kept up to date by every node's
-- changes, and counted again once older than a few minutes. `root` is the storage root
-- (s3://bucket/prefix): two roots on one database never mix.
CREATE TABLE ftpd_usage (
    root       text NOT NULL,
    username   text NOT NULL,
    bytes      bigint NOT NULL,
    entries    bigint NOT NULL,
    counted_at timestamptz NOT NULL,
    PRIMARY KEY (root, username)
);

-- Bytes held by uploads in progress on any node: two uploads through two nodes cannot both
-- fit under the quota on their own and exceed it together. A node renews its holds while
-- the uploads run; those of a node that died lapse at `expires_at`.
CREATE TABLE ftpd_reservations (
    id         bigserial PRIMARY KEY,
    username   text NOT NULL,
    bytes      bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX ftpd_reservations_by_user ON ftpd_reservations (username, expires_at);
