-- Who is in the chat on which node, so that several nodes show one presence per user
-- (online while any node has a session of theirs). A node renews `seen_at` while it runs;
-- the presence of one that stopped renewing no longer counts, and is removed in time.
CREATE TABLE ftpd_chat_nodes (
    node    text PRIMARY KEY,
    seen_at timestamptz NOT NULL
);

CREATE TABLE ftpd_chat_presence (
    node     text NOT NULL REFERENCES ftpd_chat_nodes (node) ON DELETE CASCADE,
    username text NOT NULL,
    PRIMARY KEY (node, username)
);
CREATE INDEX ftpd_chat_presence_by_user ON ftpd_chat_presence (username);
