-- The users: the same records as users.db. The verifier is in PostgreSQL's own text format
-- (SCRAM-SHA-256$ITERATIONS:SALT$STOREDKEY:SERVERKEY); its iteration count is kept beside it
-- so that unknown names can be answered with counts drawn from the real ones.
CREATE TABLE ftpd_users (
    name       text PRIMARY KEY,
    verifier   text NOT NULL,
    iterations integer NOT NULL CHECK (iterations > 0),
    quota      bigint CHECK (quota >= 0),
    files      bigint CHECK (files >= 0),
    changed    timestamptz NOT NULL DEFAULT now()
);
