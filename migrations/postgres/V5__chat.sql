-- The chat, shared by every node on this database: friendships, requests, messages (until
-- delivered, then as history) and colours, as in the embedded chat.db.

CREATE TABLE ftpd_chat_requests (
    sender    text NOT NULL,
    recipient text NOT NULL,
    at        bigint NOT NULL,
    PRIMARY KEY (sender, recipient)
);
CREATE INDEX ftpd_chat_requests_to ON ftpd_chat_requests (recipient);

CREATE TABLE ftpd_chat_friends (
    username text NOT NULL,
    friend   text NOT NULL,
    PRIMARY KEY (username, friend)
);

CREATE TABLE ftpd_chat_messages (
    id        bigserial PRIMARY KEY,
    sender    text NOT NULL,
    recipient text NOT NULL,
    at        bigint NOT NULL,
    body      text NOT NULL,
    nonce     bigint NOT NULL,
    delivered boolean NOT NULL DEFAULT false,
    UNIQUE (sender, nonce)
);
CREATE INDEX ftpd_chat_waiting ON ftpd_chat_messages (recipient, delivered, id);
CREATE INDEX ftpd_chat_conversation ON ftpd_chat_messages (sender, recipient, id);

CREATE TABLE ftpd_chat_colors (
    username text PRIMARY KEY,
    color    text NOT NULL
);

-- Every node hears of each message as it is committed (in commit order), and hands it to
-- its recipient's sessions there.
CREATE FUNCTION ftpd_chat_message_stored() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('ftpd_chat_messages', NEW.id::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER ftpd_chat_message_stored AFTER INSERT ON ftpd_chat_messages
    FOR EACH ROW EXECUTE FUNCTION ftpd_chat_message_stored();
