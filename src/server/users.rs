//! Where the users live, as `--users` says: a `users.db` file (a path, the embedded default)
//! or PostgreSQL (a `postgres://` or `postgresql://` URL). [`super::backends`] opens it.

use std::path::PathBuf;

/// A user database: a file or a PostgreSQL URL.
#[derive(Clone, PartialEq, Eq)]
pub enum UserDatabase {
    /// `users.db`.
    File(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

impl From<PathBuf> for UserDatabase {
    fn from(path: PathBuf) -> Self {
        UserDatabase::File(path)
    }
}

impl std::str::FromStr for UserDatabase {
    type Err = std::convert::Infallible;

    fn from_str(typed: &str) -> Result<Self, Self::Err> {
        Ok(
            if typed.starts_with("postgres://") || typed.starts_with("postgresql://") {
                UserDatabase::Postgres(typed.to_owned())
            } else {
                UserDatabase::File(typed.into())
            },
        )
    }
}

/// The path, or the URL without its password: fit for logs and messages.
impl std::fmt::Display for UserDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserDatabase::File(path) => write!(f, "{}", path.display()),
            UserDatabase::Postgres(url) => f.write_str(&without_password(url)),
        }
    }
}

impl std::fmt::Debug for UserDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserDatabase({self})")
    }
}

/// `postgres://user:secret@host/db` as `postgres://user:***@host/db`; a `password=` query
/// parameter is masked too.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let masked: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", masked.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_a_database_and_anything_else_a_file() {
        let parse = |s: &str| s.parse::<UserDatabase>().unwrap();
        assert_eq!(
            parse("postgres://u@h/db"),
            UserDatabase::Postgres("postgres://u@h/db".into())
        );
        assert!(matches!(parse("postgresql://h"), UserDatabase::Postgres(_)));
        assert_eq!(parse("./users.db"), UserDatabase::File("./users.db".into()));
        assert_eq!(
            parse("postgres.db"),
            UserDatabase::File("postgres.db".into())
        );
    }

    #[test]
    fn passwords_never_show() {
        let shown = |s: &str| s.parse::<UserDatabase>().unwrap().to_string();
        assert_eq!(
            shown("postgres://ftpd:s3cret@db.example.org:5432/ftpd?sslmode=require"),
            "postgres://ftpd:***@db.example.org:5432/ftpd?sslmode=require"
        );
        assert_eq!(
            shown("postgresql://db/ftpd?user=ftpd&password=s3cret"),
            "postgresql://db/ftpd?user=ftpd&password=***"
        );
        assert_eq!(shown("postgres://ftpd@db/x"), "postgres://ftpd@db/x");
        assert!(
            !format!("{:?}", "postgres://a:pw@h".parse::<UserDatabase>().unwrap()).contains("pw")
        );
    }
}
