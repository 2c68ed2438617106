//! Finding and removing what a host no longer needs: stopped containers of an environment
//! and dangling images (the runbook's `docker system prune` and `docker rmi` of dangling
//! images), one object at a time so the caller removes exactly what it listed.
//!
//! Running containers are never removed (removal is not forced, so the engine refuses a
//! container that started in the meantime), volumes are never removed, and an image still
//! used by any container stays.

use std::collections::HashMap;

use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use chrono::{DateTime, Utc};

use super::error::DockerError;
use super::host::DockerHost;
use super::{LABEL_PROJECT, OLD_CONTAINER_SUFFIX};

/// Which containers belong to an environment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerScope {
    /// Every container labelled with this compose project.
    pub compose_project: Option<String>,
    /// Containers with exactly these names.
    pub container_names: Vec<String>,
}

/// A container that is not running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoppedContainer {
    /// Container id.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// `exited`, `created` or `dead`.
    pub state: String,
    /// Docker's status text, e.g. `Exited (0) 2 hours ago`.
    pub status: String,
    /// Size of its writable layer, when the engine reported it.
    pub size_bytes: Option<u64>,
}

/// An image with no tag that no container uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DanglingImage {
    /// Image id (`sha256:…`).
    pub id: String,
    /// Its size.
    pub size_bytes: u64,
    /// Registry digests it was pulled by (`repo@sha256:…`), if any.
    pub digests: Vec<String>,
    /// When it was built.
    pub created: Option<DateTime<Utc>>,
}

impl DockerHost {
    /// Containers of the scope that are exited, created but never started, or dead, by
    /// name. Old containers a replacement keeps (`….deckhand-old`) are left out: they are
    /// what an interrupted deploy reverts to.
    ///
    /// # Errors
    ///
    /// Connection and API failures.
    pub async fn stopped_containers(
        &self,
        scope: &ContainerScope,
    ) -> Result<Vec<StoppedContainer>, DockerError> {
        let mut filters: HashMap<&str, Vec<String>> = HashMap::from([(
            "status",
            vec![
                "exited".to_string(),
                "created".to_string(),
                "dead".to_string(),
            ],
        )]);
        if let (Some(project), true) = (&scope.compose_project, scope.container_names.is_empty()) {
            filters.insert("label", vec![format!("{LABEL_PROJECT}={project}")]);
        }
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .size(true)
            .filters(&filters)
            .build();
        let summaries = self
            .call_within(
                "listing stopped containers",
                self.timeout() * 2,
                self.client().list_containers(Some(options)),
            )
            .await?;
        let mut stopped: Vec<StoppedContainer> = summaries
            .into_iter()
            .filter_map(|summary| {
                let name = summary
                    .names
                    .as_ref()
                    .and_then(|names| names.first())
                    .map(|name| name.trim_start_matches('/').to_string())?;
                let in_project = scope.compose_project.as_ref().is_some_and(|project| {
                    summary
                        .labels
                        .as_ref()
                        .and_then(|labels| labels.get(LABEL_PROJECT))
                        == Some(project)
                });
                let named = scope.container_names.contains(&name);
                if !(in_project || named) || name.ends_with(OLD_CONTAINER_SUFFIX) {
                    return None;
                }
                let state = summary.state.unwrap_or(ContainerSummaryStateEnum::EMPTY);
                Some(StoppedContainer {
                    id: summary.id?,
                    name,
                    state: state.to_string(),
                    status: summary.status.unwrap_or_default(),
                    size_bytes: summary.size_rw.and_then(|size| u64::try_from(size).ok()),
                })
            })
            .collect();
        stopped.sort_by(|left, right| left.name.cmp(&right.name));
        Ok(stopped)
    }

    /// Images without a tag that no container uses, largest first; with `label`
    /// (`key` or `key=value`), only images carrying it.
    ///
    /// # Errors
    ///
    /// Connection and API failures.
    pub async fn dangling_images(
        &self,
        label: Option<&str>,
    ) -> Result<Vec<DanglingImage>, DockerError> {
        let mut filters = HashMap::from([("dangling", vec!["true".to_string()])]);
        if let Some(label) = label {
            filters.insert("label", vec![label.to_string()]);
        }
        let options = ListImagesOptionsBuilder::default()
            .all(false)
            .filters(&filters)
            .build();
        let images = self
            .call(
                "listing dangling images",
                self.client().list_images(Some(options)),
            )
            .await?;
        let mut dangling: Vec<DanglingImage> = images
            .into_iter()
            // -1 means the engine did not count; a positive count means a container uses it.
            .filter(|image| image.containers <= 0)
            .map(|image| DanglingImage {
                id: image.id,
                size_bytes: u64::try_from(image.size).unwrap_or(0),
                digests: image.repo_digests,
                created: DateTime::from_timestamp(image.created, 0),
            })
            .collect();
        dangling.sort_by_key(|image| std::cmp::Reverse(image.size_bytes));
        Ok(dangling)
    }

    /// Removes a container that is not running, keeping its volumes. The engine refuses a
    /// running container; a container that is already gone is not an error.
    ///
    /// # Errors
    ///
    /// API failures, including "cannot remove a running container".
    pub async fn remove_stopped_container(&self, container: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(false)
            .v(false)
            .build();
        let removed = self
            .call(
                format!("removing stopped container \"{container}\""),
                self.client().remove_container(container, Some(options)),
            )
            .await;
        match removed {
            Err(error) if DockerHost::is_not_found(&error) => Ok(()),
            other => other,
        }
    }

    /// Removes an image by id unless a container uses it; an image that is already gone is
    /// not an error. Callers list dangling images right before, since removing by id also
    /// removes an image's only tag.
    ///
    /// # Errors
    ///
    /// API failures, including "image is being used by a container".
    pub async fn remove_unused_image(&self, image_id: &str) -> Result<(), DockerError> {
        let options = RemoveImageOptionsBuilder::default()
            .force(false)
            .noprune(false)
            .build();
        let removed = self
            .call(
                format!("removing image \"{image_id}\""),
                self.client().remove_image(image_id, Some(options), None),
            )
            .await;
        match removed {
            Err(error) if DockerHost::is_not_found(&error) => Ok(()),
            other => other.map(|_| ()),
        }
    }
}
