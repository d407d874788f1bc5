-- The SSH public keys each user logs in with over SFTP, as authorized_keys lines
-- ("ssh-ed25519 AAAA... comment"), beside the verifier: a change is announced on
-- ftpd_users as every other change to a user is.
ALTER TABLE ftpd_users ADD COLUMN ssh_keys text[] NOT NULL DEFAULT '{}';
