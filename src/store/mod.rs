//! TEMPORARY STUB (replaced by the store branch).
use crate::state::{RecordedState, RowWrite};
use uuid::Uuid;
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("x")]
    X,
}
#[derive(Default)]
pub struct StoreOptions;
pub struct Store;
pub struct ChangeRecord;
impl ChangeRecord {
    pub fn from_change(
        _c: &crate::plan::Change,
        _o: Uuid,
        _r: &str,
        _e: Option<&str>,
        _a: Option<String>,
        _b: Option<String>,
    ) -> Self {
        ChangeRecord
    }
}
impl Store {
    pub async fn connect(_u: &str, _o: &StoreOptions) -> Result<Store, StoreError> {
        Ok(Store)
    }
    pub async fn load_recorded(
        &self,
        _o: Uuid,
        _n: &[String],
        _a: &[Uuid],
    ) -> Result<RecordedState, StoreError> {
        Ok(RecordedState::default())
    }
    pub async fn insert_row(&self, _o: Uuid, _r: &RowWrite) -> Result<Uuid, StoreError> {
        Ok(Uuid::nil())
    }
    pub async fn update_row(&self, _o: Uuid, _id: Uuid, _r: &RowWrite) -> Result<(), StoreError> {
        Ok(())
    }
    pub async fn delete_row(&self, _o: Uuid, _id: Uuid) -> Result<(), StoreError> {
        Ok(())
    }
    pub async fn record_change(&self, _c: &ChangeRecord) -> Result<(), StoreError> {
        Ok(())
    }
}
