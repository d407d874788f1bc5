-- Every change to a user is announced on the channel ftpd_users (the payload is the name),
-- so each node drops what it remembered of that user at once.
CREATE FUNCTION ftpd_users_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('ftpd_users', OLD.name);
    ELSE
        PERFORM pg_notify('ftpd_users', NEW.name);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER ftpd_users_changed
    AFTER INSERT OR UPDATE OR DELETE ON ftpd_users
    FOR EACH ROW EXECUTE FUNCTION ftpd_users_changed();
