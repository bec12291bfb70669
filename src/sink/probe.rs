//! Proving a destination usable without leaving anything in it, for `check`: the check every
//! export runs first ([`Destination::check`]: for S3 a listing), then one small object written
//! under `_staging/` and deleted again, so writing and deleting are shown to work too. A local
//! directory that did not exist is created for the probe and removed again afterwards, with
//! the missing folders above it that the probe made; one that existed keeps everything it held.

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use super::{Destination, Storage, layout};
use crate::error::Result;

/// The bytes of the probe object.
const PROBE_BYTES: &[u8] = b"kargo-export check: this object is deleted at once\n";

/// What [`Destination::probe`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    /// The destination as given.
    pub dest: String,
    /// The probe object, relative to the destination: `_staging/check-<random>.tmp`.
    pub object: String,
    /// Whether the local directory did not exist, so the probe created it and removed it again.
    pub created: bool,
}

impl Destination {
    /// Checks the destination ([`Destination::check`]), writes one probe object under
    /// `_staging/` and deletes it. Whatever happens, a local directory (and the folders above
    /// it) that this made is removed again; the error of a failed write or delete names the
    /// object.
    pub async fn probe(&self) -> Result<Probed> {
        self.check().await?;
        let name = format!(
            "{}/check-{:016x}.tmp",
            layout::STAGING_DIR,
            fastrand::u64(..)
        );
        let rel = layout::parse_path(&name)?;
        let missing = match &self.storage {
            Storage::Local(local) => local.first_missing(),
            Storage::Store(_) => None,
        };
        let written = self.put_and_delete(&rel).await;
        if let (Storage::Local(local), Some(top)) = (&self.storage, &missing) {
            local.remove_created(top);
        }
        written?;
        Ok(Probed {
            dest: self.display.clone(),
            object: rel.to_string(),
            created: missing.is_some(),
        })
    }

    /// One put of `rel`, then its delete.
    async fn put_and_delete(&self, rel: &Path) -> Result<()> {
        let store = self.store_for_write()?;
        let full = self.full(rel);
        store
            .put(&full, PutPayload::from_static(PROBE_BYTES))
            .await
            .map_err(|e| self.storage_error(rel, e))?;
        store
            .delete(&full)
            .await
            .map_err(|e| self.storage_error(rel, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_probe_of_a_missing_directory_leaves_no_folder_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("new/deeper/out");
        let dest = Destination::open(out.to_str().unwrap()).unwrap();
        let probed = dest.probe().await.unwrap();
        assert!(probed.created);
        assert!(probed.object.starts_with("_staging/check-"), "{probed:?}");
        assert_eq!(probed.dest, out.to_str().unwrap());
        assert!(!tmp.path().join("new").exists());
        // The destination can be written again afterwards: the next write creates it anew.
        assert!(dest.probe().await.unwrap().created);
        dest.write_object("a.json", b"{}".to_vec()).await.unwrap();
        assert!(out.join("a.json").is_file());
    }

    #[tokio::test]
    async fn a_probe_of_an_existing_directory_keeps_what_it_holds() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("keep.txt"), "mine").unwrap();
        let dest = Destination::open(tmp.path().to_str().unwrap()).unwrap();
        assert!(!dest.probe().await.unwrap().created);
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["keep.txt"]);
    }

    #[tokio::test]
    async fn a_probe_through_any_store_deletes_its_object() {
        let store = std::sync::Arc::new(object_store::memory::InMemory::new());
        let dest = Destination::from_store(store.clone(), "mem://".into());
        let probed = dest.probe().await.unwrap();
        assert!(!probed.created);
        let listed: Vec<_> =
            futures::TryStreamExt::try_collect(object_store::ObjectStore::list(&*store, None))
                .await
                .unwrap();
        assert!(listed.is_empty(), "{listed:?}");
    }
}
