//! The one place that names an engine. It opens what the settings ask for (`users.db` or
//! PostgreSQL for the users; a directory or an S3 bucket for the files; `chat.db` or
//! PostgreSQL for the chat) and hands the server trait objects, so no concern room and no
//! front end knows which engine it talks to.
//!
//! With the users in PostgreSQL, the state every node must agree on lives there too: failed
//! logins, the mock-login secret, the chat and its presence, and, when the files are in a
//! shared object store, the quota's holds, entry counts and upload states.

use std::path::Path;
use std::sync::Arc;

use super::chat::bus::postgres::PgChatBus;
use super::chat::bus::{ChatBus, StartBus};
use super::chat::store::postgres::PgChatStore;
use super::chat::store::{CHAT_DB, ChatStore, SqliteChatStore};
use super::config::Config;
use super::config::{StorageRoot, UserDatabase};
use super::guard::postgres::PgLoginGuard;
use super::guard::{Guard, LoginGuard};
use super::postgres::PgDatabase;
use super::quota::postgres::PgReservations;
use super::quota::{LocalHolds, UploadHolds};
use super::secret;
use super::storage::object::ObjectStorage;
use super::storage::object::postgres::{PgCounts, PgUploadStates};
use super::storage::{FsStorage, Storage};
use super::users::file::{AdminFile, FileUserStore};
use super::users::postgres::PgUserStore;
use super::users::{UserAdmin, UserStore};
use crate::error::{Error, Result, UserDbError};

/// The engines one server runs on, opened.
pub struct Backends {
    /// Who may log in.
    pub(crate) users: Arc<dyn UserStore>,
    /// Where users' own changes go (their SSH keys); `None` where sessions change nothing.
    pub(crate) admin: Option<Arc<dyn UserAdmin>>,
    /// Where the users' files are.
    pub(crate) storage: Arc<dyn Storage>,
    /// The secret behind unknown users' mock salts (and the chat's reset key).
    pub(crate) secret: [u8; secret::SECRET_LEN],
    /// Where failed logins are counted.
    pub(crate) guard: Guard,
    /// Where the holds of uploads in progress are kept.
    pub(crate) quotas: Arc<dyn UploadHolds>,
    /// How the chat joins the other nodes, when there are any.
    pub(crate) chat_bus: Option<StartBus>,
    /// Where the chat keeps friends and messages.
    pub(crate) chat_store: ChatStores,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends").finish_non_exhaustive()
    }
}

impl Backends {
    /// Opens the engines `config` names. Refuses a corrupt `users.db` (naming file and
    /// line) rather than start without users.
    ///
    /// # Errors
    /// A corrupt or unreadable user database, a database that cannot be reached, or a
    /// root/state directory that cannot be used.
    pub async fn open(config: &Config) -> Result<Self> {
        tighten_state_dir(&config.state_dir)?;
        let in_state_dir = |e: std::io::Error| {
            Error::setup(format!("state directory {}", config.state_dir.display()), e)
        };
        match &config.users {
            UserDatabase::File(path) => {
                let users = FileUserStore::open(path)?;
                if users.is_empty() {
                    tracing::warn!(path = %path.display(), "no users yet; add one with: ftpd adduser NAME");
                }
                let storage: Arc<dyn Storage> = match &config.root {
                    StorageRoot::Dir(root) => Arc::new(open_dir(root)?),
                    StorageRoot::Object(location) => Arc::new(open_bucket(location).await?),
                };
                let secret = secret::load_or_create(&config.state_dir).map_err(in_state_dir)?;
                let mut backends = Backends::local(
                    Arc::new(users),
                    storage,
                    secret,
                    config.limits.lockout,
                    ChatStores::File(config.state_dir.join(CHAT_DB)),
                );
                backends.admin = Some(Arc::new(AdminFile(path.clone())));
                Ok(backends)
            }
            UserDatabase::Postgres(url) => {
                let db = PgDatabase::connect(url).await?;
                let users = PgUserStore::new(Arc::clone(&db));
                users.follow_changes();
                let (storage, quotas): (Arc<dyn Storage>, Arc<dyn UploadHolds>) = match &config.root
                {
                    StorageRoot::Dir(root) => {
                        (Arc::new(open_dir(root)?), Arc::new(LocalHolds::default()))
                    }
                    // Nodes sharing the users' database and the store share the quota's
                    // bookkeeping too.
                    StorageRoot::Object(location) => {
                        let store = open_bucket(location).await?;
                        let root = store.root().to_owned();
                        let counts = PgCounts::new(Arc::clone(&db), &root);
                        let states = PgUploadStates::new(Arc::clone(&db), &root);
                        let holds = PgReservations::new(Arc::clone(&db));
                        (
                            Arc::new(store.sharing(Arc::new(counts), Arc::new(states))),
                            Arc::new(holds),
                        )
                    }
                };
                // The state directory still holds this node's TLS identity.
                secret::create_state_dir(&config.state_dir).map_err(in_state_dir)?;
                let secret = secret::postgres::load_or_create(&db).await?;
                let on = Arc::clone(&db);
                let chat_bus: StartBus = Arc::new(move |tell| {
                    let bus: Arc<dyn ChatBus> = PgChatBus::start(Arc::clone(&on), tell);
                    bus
                });
                let failures = PgLoginGuard::new(Arc::clone(&db), config.limits.lockout);
                Ok(Backends {
                    admin: Some(Arc::new(users.clone())),
                    users: Arc::new(users),
                    storage,
                    secret,
                    guard: Guard::new(Box::new(failures)),
                    quotas,
                    chat_bus: Some(chat_bus),
                    chat_store: ChatStores::Postgres(db),
                })
            }
        }
    }

    /// One node on its own: failed logins and upload holds in memory, the chat in
    /// `chat_db` when it is asked for.
    pub(crate) fn local(
        users: Arc<dyn UserStore>,
        storage: Arc<dyn Storage>,
        secret: [u8; secret::SECRET_LEN],
        lockout: super::guard::LockoutPolicy,
        chat_store: ChatStores,
    ) -> Self {
        Backends {
            users,
            admin: None,
            storage,
            secret,
            guard: Guard::new(Box::new(LoginGuard::new(lockout))),
            quotas: Arc::new(LocalHolds::default()),
            chat_bus: None,
            chat_store,
        }
    }
}

/// Where the chat store is, opened only when the chat runs.
pub(crate) enum ChatStores {
    /// `chat.db` at this path (created on first use).
    File(std::path::PathBuf),
    /// Beside the users, shared by every node.
    Postgres(Arc<PgDatabase>),
}

impl ChatStores {
    /// The chat store.
    ///
    /// # Errors
    /// `chat.db` cannot be opened.
    pub(crate) fn open(&self) -> Result<Arc<dyn ChatStore>> {
        Ok(match self {
            ChatStores::Postgres(db) => Arc::new(PgChatStore::new(Arc::clone(db))),
            ChatStores::File(path) => Arc::new(
                SqliteChatStore::open(path).map_err(|e| Error::setup("the chat store", e))?,
            ),
        })
    }
}

/// Makes the state directory private, saying so when it was not.
fn tighten_state_dir(dir: &Path) -> Result<()> {
    match secret::tighten_state_dir(dir) {
        Ok(Some(mode)) => {
            tracing::warn!(
                dir = %dir.display(),
                was = format!("{mode:04o}"),
                "the state directory was open to others; made it 0700"
            );
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => Err(Error::setup(
            format!("state directory {}", dir.display()),
            e,
        )),
    }
}

fn open_dir(root: &Path) -> Result<FsStorage> {
    FsStorage::open(root).map_err(|e| Error::setup(format!("storage root {}", root.display()), e))
}

async fn open_bucket(location: &super::storage::object::ObjectLocation) -> Result<ObjectStorage> {
    ObjectStorage::open(location)
        .await
        .map_err(|e| Error::setup(format!("storage root {}", location.url), e))
}

/// The user database `db` names, opened for the admin commands (`adduser`, `passwd`,
/// `quota`, `deluser`, `users`), which change it through the same few calls whichever
/// engine it is.
///
/// # Errors
/// The database cannot be reached.
pub async fn user_admin(db: &UserDatabase) -> Result<Box<dyn UserAdmin>, UserDbError> {
    Ok(match db {
        UserDatabase::File(path) => Box::new(AdminFile(path.clone())),
        UserDatabase::Postgres(url) => Box::new(PgUserStore::connect(url).await?),
    })
}

/// The chat store that goes with the users of `db`, for `ftpd deluser`: in PostgreSQL, or
/// `chat.db` in `state_dir` if the chat ever ran there (`None` if it did not).
///
/// # Errors
/// The database cannot be reached, or `chat.db` cannot be opened.
pub async fn admin_chat_store(
    db: &UserDatabase,
    state_dir: &Path,
) -> Result<Option<Arc<dyn ChatStore>>> {
    match db {
        UserDatabase::Postgres(url) => {
            let db = PgDatabase::connect(url).await?;
            Ok(Some(Arc::new(PgChatStore::new(db))))
        }
        UserDatabase::File(_) => {
            let path = state_dir.join(CHAT_DB);
            if !path.exists() {
                return Ok(None);
            }
            ChatStores::File(path).open().map(Some)
        }
    }
}
