//! The mock-login secret kept in the database: every node answers an unknown name with the
//! same mock salt, so asking several nodes tells a prober nothing.

use crate::auth::random_bytes;
use crate::error::DatabaseError;
use crate::server::postgres::{PgDatabase, database_error};
use crate::server::secret::SECRET_LEN;

/// The secret's name in `ftpd_secrets`.
const NAME: &str = "mock-login";

/// The shared secret: made by the first node that asks, read by every other.
///
/// # Errors
/// The database, or a stored secret of the wrong length.
pub async fn load_or_create(db: &PgDatabase) -> Result<[u8; SECRET_LEN], DatabaseError> {
    let client = db.client().await?;
    let fresh = random_bytes::<SECRET_LEN>();
    // Whoever inserts first wins; everyone then reads the same row.
    client
        .execute(
            "INSERT INTO ftpd_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&NAME, &fresh.as_slice()],
        )
        .await
        .map_err(database_error("making the mock-login secret"))?;
    let row = client
        .query_one("SELECT value FROM ftpd_secrets WHERE name = $1", &[&NAME])
        .await
        .map_err(database_error("reading the mock-login secret"))?;
    let value: Vec<u8> = row
        .try_get(0)
        .map_err(database_error("reading the mock-login secret"))?;
    value.try_into().map_err(|v: Vec<u8>| {
        DatabaseError::plain(format!(
            "the mock-login secret is {} bytes, not {SECRET_LEN}",
            v.len()
        ))
    })
}
