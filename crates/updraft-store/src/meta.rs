//! The metadata-store trait: every query the server makes, so that SQLite and PostgreSQL
//! implementations are interchangeable. Writes that belong together are one call, one transaction.

use async_trait::async_trait;

use crate::{AppRow, AuditRow, Changeset, MetadataRow, ReleaseRow, StoreError, TokenRow};

#[async_trait]
/// Includes [`HealthStore`](crate::HealthStore) (crash, session and install data) and
/// [`RolloutStore`](crate::RolloutStore) (schedules, halt rules, downgrade offers).
pub trait MetaStore: crate::HealthStore + crate::RolloutStore + Send + Sync + 'static {
    /// Brings the schema to the newest version; safe to call on every start.
    async fn migrate(&self) -> Result<(), StoreError> {
        self.migrate_to(u64::MAX).await
    }
    /// Applies the migrations up to and including version `last` (a restore loads rows at the
    /// schema they were dumped at, then migrates on).
    async fn migrate_to(&self, last: u64) -> Result<(), StoreError>;
    /// Cheap round trip, for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Sets a setting only if it is absent; returns whether it was set.
    async fn init_setting(&self, key: &str, value: &str) -> Result<bool, StoreError>;
    async fn delete_setting(&self, key: &str) -> Result<(), StoreError>;

    /// Creates the app with its first TUF metadata. `Conflict` when it exists.
    async fn create_app(&self, app: &AppRow, changes: &Changeset) -> Result<(), StoreError>;
    async fn get_app(&self, id: &str) -> Result<Option<AppRow>, StoreError>;
    async fn list_apps(&self) -> Result<Vec<AppRow>, StoreError>;

    /// Every release of an app with its artifacts, any state.
    async fn list_releases(&self, app: &str) -> Result<Vec<ReleaseRow>, StoreError>;
    /// Writes a changeset for one app in one transaction. A new metadata version that exists
    /// already is a `Conflict` and nothing is written.
    async fn apply(&self, app: &str, changes: &Changeset) -> Result<(), StoreError>;

    async fn latest_metadata(&self, app: &str, role: &str) -> Result<Option<MetadataRow>, StoreError>;
    async fn get_metadata(&self, app: &str, role: &str, version: u64) -> Result<Option<MetadataRow>, StoreError>;

    async fn insert_token(&self, token: &TokenRow, audit: Option<&crate::AuditEntry>) -> Result<(), StoreError>;
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError>;
    async fn list_tokens(&self) -> Result<Vec<TokenRow>, StoreError>;
    async fn revoke_token(&self, id: &str, at: &str, audit: Option<&crate::AuditEntry>) -> Result<bool, StoreError>;

    async fn append_audit(&self, entry: &crate::AuditEntry) -> Result<(), StoreError>;
    /// Audit events with `seq > after`, oldest first, at most `limit`.
    async fn list_audit(&self, app: Option<&str>, after: i64, limit: u32) -> Result<Vec<AuditRow>, StoreError>;

    /// An app's signing-key files as kept in the database, by file name, exactly as they are
    /// on disk (encrypted when a key passphrase is set). Used by stores several instances share.
    async fn key_files(&self, app: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Makes the app's stored key files exactly `files`, in one transaction.
    async fn set_key_files(&self, app: &str, files: &[(String, Vec<u8>)]) -> Result<(), StoreError>;
    /// Each app's newest timestamp metadata version: a cheap fingerprint of every app's signed
    /// state, polled by instances sharing the store as a fallback to change notifications.
    async fn app_heads(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// Whether several server instances may share this store (PostgreSQL). Then signing keys
    /// live in the database, changes are signalled to the other instances, and the app lock is
    /// taken in the database as well as in the process.
    fn shared(&self) -> bool {
        false
    }
    /// Takes the database-wide lock of an app (held until the guard is dropped), so changes
    /// to one app from different instances are serialized. Nothing for single-instance stores.
    async fn lock_app(&self, _app: &str) -> Result<AppLock, StoreError> {
        Ok(AppLock::default())
    }
    /// Ids of apps changed by any instance, as their transactions commit (PostgreSQL
    /// `LISTEN/NOTIFY`); `None` when the store has no such signal. Notifications can be lost
    /// across a reconnect, so callers also poll [`MetaStore::app_heads`].
    async fn watch(&self) -> Result<Option<tokio::sync::mpsc::UnboundedReceiver<String>>, StoreError> {
        Ok(None)
    }
}

/// A held database-wide app lock; dropping it releases the lock.
#[derive(Default)]
pub struct AppLock(pub(crate) Option<Box<dyn Send + Sync>>);

impl std::fmt::Debug for AppLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppLock").field("held", &self.0.is_some()).finish()
    }
}
