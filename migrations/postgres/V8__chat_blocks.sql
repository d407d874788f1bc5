-- Names a user blocks: their friend requests are dropped silently.
CREATE TABLE ftpd_chat_blocks (
    username text NOT NULL,
    blocked  text NOT NULL,
    PRIMARY KEY (username, blocked)
);
