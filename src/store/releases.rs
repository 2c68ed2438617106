//! Releases: what each deploy or rollback changed, per service, with image
//! references and digests before and after, so a rollback knows exactly
//! where to go.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;

use super::{Store, StoreError, column, from_text, query_error, to_text};

/// A recorded release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// `r12` in messages.
    pub id: i64,
    /// The environment.
    pub env: String,
    /// The service.
    pub service: String,
    /// The operation that made it.
    pub op_id: i64,
    /// `deploy` or `rollback`.
    pub kind: String,
    /// The git ref deployed, for deploys.
    pub git_ref: Option<String>,
    /// Image reference before.
    pub image_before: Option<String>,
    /// Image digest (or id) before.
    pub digest_before: Option<String>,
    /// Image reference after.
    pub image_after: String,
    /// Image digest (or id) after.
    pub digest_after: Option<String>,
    /// Who made it.
    pub actor: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A release to record.
#[derive(Debug, Clone)]
pub struct NewRelease {
    /// The environment.
    pub env: String,
    /// The service.
    pub service: String,
    /// The operation.
    pub op_id: i64,
    /// `deploy` or `rollback`.
    pub kind: String,
    /// The git ref, for deploys.
    pub git_ref: Option<String>,
    /// Image before.
    pub image_before: Option<String>,
    /// Digest before.
    pub digest_before: Option<String>,
    /// Image after.
    pub image_after: String,
    /// Digest after.
    pub digest_after: Option<String>,
    /// Who.
    pub actor: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

macro_rules! release_columns {
    () => {
        "id, env, service, op_id, kind, git_ref, image_before, digest_before, image_after, digest_after, actor, created_at"
    };
}

fn read_release(row: &AnyRow) -> Result<Release, StoreError> {
    let created_at: String = column(row, "created_at")?;
    Ok(Release {
        id: column(row, "id")?,
        env: column(row, "env")?,
        service: column(row, "service")?,
        op_id: column(row, "op_id")?,
        kind: column(row, "kind")?,
        git_ref: column(row, "git_ref")?,
        image_before: column(row, "image_before")?,
        digest_before: column(row, "digest_before")?,
        image_after: column(row, "image_after")?,
        digest_after: column(row, "digest_after")?,
        actor: column(row, "actor")?,
        created_at: from_text("created_at", &created_at)?,
    })
}

impl Store {
    /// Records a release and returns its id.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn insert_release(&self, release: &NewRelease) -> Result<i64, StoreError> {
        let mut connection = self.connection().await?;
        let id = super::next_id(&mut connection, "release").await?;
        sqlx::query(concat!(
            "INSERT INTO releases (",
            release_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(id)
        .bind(&release.env)
        .bind(&release.service)
        .bind(release.op_id)
        .bind(&release.kind)
        .bind(release.git_ref.as_deref())
        .bind(release.image_before.as_deref())
        .bind(release.digest_before.as_deref())
        .bind(&release.image_after)
        .bind(release.digest_after.as_deref())
        .bind(&release.actor)
        .bind(to_text(release.created_at))
        .execute(&mut *connection)
        .await
        .map_err(query_error("recording a release"))?;
        Ok(id)
    }

    /// A service's releases, newest first.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn releases(
        &self,
        env: &str,
        service: &str,
        limit: i64,
    ) -> Result<Vec<Release>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            release_columns!(),
            " FROM releases WHERE env = $1 AND service = $2 ORDER BY id DESC LIMIT $3"
        ))
        .bind(env)
        .bind(service)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading releases"))?;
        rows.iter().map(read_release).collect()
    }

    /// One release.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn release(&self, id: i64) -> Result<Option<Release>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            release_columns!(),
            " FROM releases WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("reading a release"))?;
        row.as_ref().map(read_release).transpose()
    }

    /// The releases an operation recorded.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn releases_of_operation(&self, op_id: i64) -> Result<Vec<Release>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            release_columns!(),
            " FROM releases WHERE op_id = $1 ORDER BY id"
        ))
        .bind(op_id)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading releases"))?;
        rows.iter().map(read_release).collect()
    }

    /// The operation of the newest release of a kind in an environment.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn last_release_operation(
        &self,
        env: &str,
        kind: &str,
    ) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar(
            "SELECT op_id FROM releases WHERE env = $1 AND kind = $2 ORDER BY id DESC LIMIT 1",
        )
        .bind(env)
        .bind(kind)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("reading releases"))
    }

    /// Image ids and digests the newest releases of every environment ran before
    /// and after, so cleanup keeps what a rollback may return to.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn recent_release_digests(
        &self,
        limit: i64,
    ) -> Result<std::collections::BTreeSet<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT digest_before, digest_after FROM releases ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading releases"))?;
        let mut digests = std::collections::BTreeSet::new();
        for row in &rows {
            for name in ["digest_before", "digest_after"] {
                let digest: Option<String> = column(row, name)?;
                digests.extend(digest);
            }
        }
        Ok(digests)
    }
}
