//! The plan of an operation: what will change, from what to what, and which
//! checks gate it. Shown by `--dry-run`, shown in approval requests, stored
//! with the operation (this serialized shape is a contract), and what the
//! run then carries out — so approvers sign off on exactly what runs.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
    /// What `to_image` pointed at when the plan was made (the registry
    /// digest, or the image id of a local image): the approval covers this,
    /// not the tag. `None` when the host did not have the image yet.
    #[serde(default)]
    pub to_digest: Option<String>,
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

/// `sha256:0123456789ab` from a full image id or `repo@sha256:…` digest.
pub fn short_digest(digest: &str) -> String {
    let bare = digest.rsplit('@').next().unwrap_or(digest);
    bare.chars().take("sha256:".len() + 12).collect()
}

impl Plan {
    /// The hash an approval binds to: the request's parameters hash, and
    /// when the plan pinned images, what each tag pointed at, so moving a
    /// tag after the request changes what must be approved.
    pub fn bind(&self, params_hash: &str) -> String {
        let pinned: Vec<(&str, &str)> = self
            .changes
            .iter()
            .filter_map(|change| {
                change
                    .to_digest
                    .as_deref()
                    .map(|digest| (change.service.as_str(), digest))
            })
            .collect();
        if pinned.is_empty() {
            return params_hash.to_string();
        }
        let mut hasher = Sha256::new();
        hasher.update(params_hash.as_bytes());
        for (service, digest) in pinned {
            hasher.update([0]);
            hasher.update(service.as_bytes());
            hasher.update([b'=']);
            hasher.update(digest.as_bytes());
        }
        hex::encode(hasher.finalize())
    }

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
        for change in &self.changes {
            if let Some(digest) = &change.to_digest {
                fields.push((
                    "pinned".to_string(),
                    format!("{} is {}", change.to_image, short_digest(digest)),
                ));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(digest: Option<&str>) -> Plan {
        Plan {
            changes: vec![Change {
                service: "backend".to_string(),
                from_image: Some("demo/backend:v1".to_string()),
                from_digest: Some("sha256:aaaa".to_string()),
                to_image: "demo/backend:v2".to_string(),
                to_digest: digest.map(str::to_string),
                replicas: 1,
                note: None,
            }],
            ..Plan::default()
        }
    }

    #[test]
    fn an_approval_binds_what_the_tag_pointed_at() {
        assert_eq!(plan(None).bind("p1"), "p1", "nothing pinned, nothing added");
        let first = plan(Some("sha256:1111")).bind("p1");
        let moved = plan(Some("sha256:2222")).bind("p1");
        assert_ne!(first, "p1");
        assert_ne!(first, moved, "a moved tag needs a new approval");
        assert_eq!(first, plan(Some("sha256:1111")).bind("p1"));
        assert_eq!(
            plan(Some("sha256:0123456789abcdef")).lines(),
            [
                (
                    "change".to_string(),
                    "backend: demo/backend:v1 → demo/backend:v2".to_string()
                ),
                (
                    "pinned".to_string(),
                    "demo/backend:v2 is sha256:0123456789ab".to_string()
                ),
            ]
        );
        assert_eq!(
            short_digest("demo/backend@sha256:0123456789abcdef"),
            "sha256:0123456789ab"
        );
    }
}
