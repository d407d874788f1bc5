-- Entries (new files) held by uploads in progress on any node, beside their bytes: two
-- uploads through two nodes cannot both fit under the file-count quota on their own.
ALTER TABLE ftpd_reservations ADD COLUMN entries bigint NOT NULL DEFAULT 0;
