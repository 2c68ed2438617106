//! The plan of an operation: what will change, from what to what, and which
//! checks gate it. Shown by `--dry-run`, shown in approval requests, stored
//! with the operation (this serialized shape is a contract), and what the
//! run then carries out — so approvers sign off on exactly what runs.

use serde::{Deserialize, Serialize};

/// What an operation will do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Image changes, per service.
    #[serde(default)]
    pub changes: Vec<Change>,
    /// One line per step, in order.
    #[serde(default)]
    pub steps: Vec<String>,
    /// Checks that gate it (health, smoke, exit codes).
    #[serde(default)]
    pub checks: Vec<String>,
    /// Anything else worth knowing (a hold it will leave, a backup it takes).
    #[serde(default)]
    pub notes: Vec<String>,
    /// The command's warning, such as possible data loss.
    #[serde(default)]
    pub warning: Option<String>,
    /// The git ref being deployed, when there is one.
    #[serde(default)]
    pub git_ref: Option<String>,
}

/// One service moving from one image to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The service.
    pub service: String,
    /// Image reference it runs now.
    pub from_image: Option<String>,
    /// Image id or digest it runs now.
    pub from_digest: Option<String>,
    /// Image reference it will run.
    pub to_image: String,
    /// Containers (replicas) that will be replaced.
    pub replicas: usize,
    /// Where the target comes from, e.g. `release r12, deployed 2 h ago by bob`.
    #[serde(default)]
    pub note: Option<String>,
}

impl Change {
    /// `backend: …:v1 → …:v2 (2 replicas; release r12 …)`.
    pub fn describe(&self) -> String {
        let from = self.from_image.as_deref().unwrap_or("(not running)");
        let mut line = format!("{}: {} → {}", self.service, from, self.to_image);
        let mut extras = Vec::new();
        if self.replicas > 1 {
            extras.push(format!("{} replicas, one at a time", self.replicas));
        }
        if let Some(note) = &self.note {
            extras.push(note.clone());
        }
        if !extras.is_empty() {
            line.push_str(&format!(" ({})", extras.join("; ")));
        }
        line
    }
}

impl Plan {
    /// The plan as JSON for the store.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string())
    }

    /// Reads a stored plan; an unreadable one reads as empty.
    pub fn from_json(text: &str) -> Plan {
        serde_json::from_str(text).unwrap_or_default()
    }

    /// Lines for messages: changes, then checks, notes and the warning.
    pub fn lines(&self) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        for change in &self.changes {
            fields.push(("change".to_string(), change.describe()));
        }
        for check in &self.checks {
            fields.push(("gated by".to_string(), check.clone()));
        }
        for note in &self.notes {
            fields.push(("note".to_string(), note.clone()));
        }
        if let Some(warning) = &self.warning {
            fields.push(("⚠ warning".to_string(), warning.clone()));
        }
        fields
    }
}
