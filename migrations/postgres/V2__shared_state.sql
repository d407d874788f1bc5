-- State several nodes must agree on.

-- Secrets, by name: 'mock-login' answers unknown names the same on every node.
CREATE TABLE ftpd_secrets (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);

-- Failed logins, per key ('name:alice', 'addr:192.0.2.7'; IPv6 by /64), and the addresses
-- locked out: an attacker gains nothing by spreading attempts over nodes.
CREATE TABLE ftpd_login_failures (
    key text NOT NULL,
    at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ftpd_login_failures_by_key ON ftpd_login_failures (key, at);
CREATE INDEX ftpd_login_failures_by_age ON ftpd_login_failures (at);

CREATE TABLE ftpd_lockouts (
    addr  text PRIMARY KEY,
    until timestamptz NOT NULL
);
