//! PagerDuty incidents and the diagnose operation that answers each one.

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::{Store, StoreError, column, from_text, query_error, to_text};

/// An incident as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentRecord {
    /// PagerDuty's incident id, e.g. `Q1CHATOPS01AB`.
    pub incident_id: String,
    /// The diagnose operation whose message shows the report.
    pub op_id: i64,
    /// The environment diagnosed.
    pub env: String,
    /// The PagerDuty service it was raised on.
    pub service_id: String,
    /// The incident number people see, e.g. 4217.
    pub number: Option<i64>,
    /// The incident's title.
    pub title: String,
    /// Link to the incident in PagerDuty.
    pub html_url: String,
    /// `triggered`, `acknowledged` or `resolved`.
    pub status: String,
    /// Who moved it to that status, as PagerDuty names them.
    pub status_by: Option<String>,
    /// When the incident started.
    pub created_at: DateTime<Utc>,
    /// When its status last changed.
    pub updated_at: DateTime<Utc>,
}

macro_rules! incident_columns {
    () => {
        "incident_id, op_id, env, service_id, number, title, html_url, status, status_by, created_at, updated_at"
    };
}

fn read_incident(row: &AnyRow) -> Result<IncidentRecord, StoreError> {
    let created_at: String = column(row, "created_at")?;
    let updated_at: String = column(row, "updated_at")?;
    Ok(IncidentRecord {
        incident_id: column(row, "incident_id")?,
        op_id: column(row, "op_id")?,
        env: column(row, "env")?,
        service_id: column(row, "service_id")?,
        number: column(row, "number")?,
        title: column(row, "title")?,
        html_url: column(row, "html_url")?,
        status: column(row, "status")?,
        status_by: column(row, "status_by")?,
        created_at: from_text("created_at", &created_at)?,
        updated_at: from_text("updated_at", &updated_at)?,
    })
}

/// Records an incident; false when it was recorded before.
pub(super) async fn insert(
    connection: &mut AnyConnection,
    incident: &IncidentRecord,
) -> Result<bool, StoreError> {
    let result = sqlx::query(concat!(
        "INSERT INTO incidents (",
        incident_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (incident_id) DO NOTHING"
    ))
    .bind(&incident.incident_id)
    .bind(incident.op_id)
    .bind(&incident.env)
    .bind(&incident.service_id)
    .bind(incident.number)
    .bind(&incident.title)
    .bind(&incident.html_url)
    .bind(&incident.status)
    .bind(incident.status_by.as_deref())
    .bind(to_text(incident.created_at))
    .bind(to_text(incident.updated_at))
    .execute(&mut *connection)
    .await
    .map_err(query_error("recording an incident"))?;
    Ok(result.rows_affected() == 1)
}

impl Store {
    /// Records an incident; returns false when it was recorded before (a
    /// redelivered trigger), leaving the first record as it is.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn insert_incident(&self, incident: &IncidentRecord) -> Result<bool, StoreError> {
        let mut connection = self.connection().await?;
        insert(&mut connection, incident).await
    }

    /// One incident by PagerDuty id.
    ///
    /// # Errors
    /// When the store cannot be reached or the row is unreadable.
    pub async fn incident(&self, incident_id: &str) -> Result<Option<IncidentRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            incident_columns!(),
            " FROM incidents WHERE incident_id = $1"
        ))
        .bind(incident_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("reading an incident"))?;
        row.as_ref().map(read_incident).transpose()
    }

    /// The incident an operation answers, if any.
    ///
    /// # Errors
    /// When the store cannot be reached or the row is unreadable.
    pub async fn incident_of_operation(
        &self,
        op_id: i64,
    ) -> Result<Option<IncidentRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            incident_columns!(),
            " FROM incidents WHERE op_id = $1"
        ))
        .bind(op_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("reading an incident"))?;
        row.as_ref().map(read_incident).transpose()
    }

    /// Records an incident's new status. Only a change that happened after
    /// the stored one is applied, so a late redelivery of "acknowledged"
    /// cannot undo "resolved". Returns whether the row changed.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn update_incident_status(
        &self,
        incident_id: &str,
        status: &str,
        status_by: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE incidents SET status = $1, status_by = $2, updated_at = $3 WHERE incident_id = $4 AND updated_at <= $3",
        )
        .bind(status)
        .bind(status_by)
        .bind(to_text(at))
        .bind(incident_id)
        .execute(&self.pool)
        .await
        .map_err(query_error("updating an incident"))?;
        if result.rows_affected() != 1 {
            return Ok(false);
        }
        // The header of the operation's message changed: its owner
        // republishes it.
        sqlx::query(
            "UPDATE operations SET revision = revision + 1, dirty = 1 WHERE id = (SELECT op_id FROM incidents WHERE incident_id = $1)",
        )
        .bind(incident_id)
        .execute(&self.pool)
        .await
        .map_err(query_error("updating an incident"))?;
        Ok(true)
    }
}
