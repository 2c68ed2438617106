//! Images already on a host, or pulled to it: existence, identity, pulling and tagging.
//!
//! Building images is [`super::images`]' job; this module only looks at and fetches them.

use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::query_parameters::{CreateImageOptionsBuilder, TagImageOptionsBuilder};
use futures_util::TryStreamExt;

use super::error::DockerError;
use super::host::DockerHost;

/// Time allowed for a pull: large images on slow registries take minutes.
const PULL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Credentials for a private registry. `Debug` never shows them and Deckhand never logs
/// them.
#[derive(Clone)]
pub struct RegistryAuth {
    username: String,
    password: String,
    server: String,
}

impl RegistryAuth {
    /// Credentials for `server` (e.g. `ghcr.io`).
    pub fn new(username: String, password: String, server: String) -> RegistryAuth {
        RegistryAuth {
            username,
            password,
            server,
        }
    }

    fn to_credentials(&self) -> DockerCredentials {
        DockerCredentials {
            username: Some(self.username.clone()),
            password: Some(self.password.clone()),
            serveraddress: Some(self.server.clone()),
            ..Default::default()
        }
    }
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("[redacted]")
    }
}

/// What a host knows about one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Image id, `sha256:...`.
    pub id: String,
    /// Registry digest, `repo@sha256:...`, for images that came from a registry.
    pub digest: Option<String>,
    /// Tags pointing at this image.
    pub tags: Vec<String>,
    /// Creation time as the image records it.
    pub created: Option<String>,
    /// Labels from the image's config.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// What [`DockerHost::pull`] had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullOutcome {
    /// The image was already on the host; nothing was downloaded.
    AlreadyPresent,
    /// The image was downloaded.
    Pulled,
}

impl DockerHost {
    /// Whether the host has an image by this reference or id.
    ///
    /// # Errors
    ///
    /// Connection and API failures.
    pub async fn image_exists(&self, reference: &str) -> Result<bool, DockerError> {
        Ok(self.image_info(reference).await?.is_some())
    }

    /// The image's registry digest; `None` for images built or imported locally.
    ///
    /// # Errors
    ///
    /// [`DockerError::ImageMissing`] when the host does not have the image.
    pub async fn image_digest(&self, reference: &str) -> Result<Option<String>, DockerError> {
        let info = self
            .image_info(reference)
            .await?
            .ok_or_else(|| DockerError::ImageMissing {
                reference: reference.to_string(),
                host: self.name().to_string(),
            })?;
        Ok(info.digest)
    }

    /// Inspects an image; `None` when the host does not have it.
    ///
    /// # Errors
    ///
    /// Connection and API failures.
    pub async fn image_info(&self, reference: &str) -> Result<Option<ImageInfo>, DockerError> {
        let inspected = self
            .call(
                format!("inspecting image \"{reference}\""),
                self.client().inspect_image(reference),
            )
            .await;
        let image = match inspected {
            Ok(image) => image,
            Err(error) if DockerHost::is_not_found(&error) => return Ok(None),
            Err(error) => return Err(error),
        };
        Ok(Some(ImageInfo {
            id: image.id.unwrap_or_default(),
            digest: image
                .repo_digests
                .and_then(|digests| digests.into_iter().next()),
            tags: image.repo_tags.unwrap_or_default(),
            created: image.created.map(|created| created.to_string()),
            labels: image
                .config
                .and_then(|config| config.labels)
                .unwrap_or_default()
                .into_iter()
                .collect(),
        }))
    }

    /// Pulls an image unless the host already has it.
    ///
    /// # Errors
    ///
    /// [`DockerError::ImageNotFound`] when the image is missing and the pull fails (no
    /// registry reachable, unknown tag, refused credentials).
    pub async fn pull(
        &self,
        reference: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<PullOutcome, DockerError> {
        if self.image_exists(reference).await? {
            return Ok(PullOutcome::AlreadyPresent);
        }
        let options = CreateImageOptionsBuilder::default()
            .from_image(&with_default_tag(reference))
            .build();
        let client = self.client_for_long_call(PULL_TIMEOUT);
        let progress =
            client.create_image(Some(options), None, auth.map(RegistryAuth::to_credentials));
        let pulled = self
            .call_within(
                format!("pulling image \"{reference}\""),
                PULL_TIMEOUT,
                progress.try_for_each(|_| async { Ok(()) }),
            )
            .await;
        match pulled {
            Ok(()) => {
                tracing::info!(host = %self.name(), image = %reference, "pulled image");
                Ok(PullOutcome::Pulled)
            }
            Err(error @ DockerError::Api { .. }) => Err(DockerError::ImageNotFound {
                reference: reference.to_string(),
                host: self.name().to_string(),
                reason: DockerHost::engine_message(&error),
            }),
            Err(other) => Err(other),
        }
    }

    /// Points `target` (`repo:tag`) at the image `source` refers to.
    ///
    /// # Errors
    ///
    /// API failures, for instance when `source` does not exist.
    pub async fn tag_image(&self, source: &str, target: &str) -> Result<(), DockerError> {
        let (repo, tag) = split_tag(target);
        let options = TagImageOptionsBuilder::default()
            .repo(repo)
            .tag(tag)
            .build();
        self.call(
            format!("tagging image \"{source}\" as \"{target}\""),
            self.client().tag_image(source, Some(options)),
        )
        .await
    }
}

/// A reference without tag or digest pulls every tag of the repository; pin `latest`.
fn with_default_tag(reference: &str) -> String {
    let (_, tag) = split_tag(reference);
    if reference.contains('@') || !tag.is_empty() {
        reference.to_string()
    } else {
        format!("{reference}:latest")
    }
}

/// Splits `registry:5000/repo:tag` into (`registry:5000/repo`, `tag`); the tag is empty
/// when there is none.
pub(super) fn split_tag(reference: &str) -> (&str, &str) {
    let name_start = reference.rfind('/').map_or(0, |slash| slash + 1);
    match reference[name_start..].rfind(':') {
        Some(colon) => (
            &reference[..name_start + colon],
            &reference[name_start + colon + 1..],
        ),
        None => (reference, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_tags_after_the_last_slash() {
        let cases = [
            ("backend:v2", ("backend", "v2")),
            (
                "registry:5000/org/backend",
                ("registry:5000/org/backend", ""),
            ),
            (
                "registry:5000/org/backend:v1",
                ("registry:5000/org/backend", "v1"),
            ),
            ("ghcr.io/org/app:sha-9f2c", ("ghcr.io/org/app", "sha-9f2c")),
        ];
        for (reference, expected) in cases {
            assert_eq!(split_tag(reference), expected, "{reference}");
        }
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(with_default_tag("a/b@sha256:00"), "a/b@sha256:00");
    }

    #[test]
    fn credentials_are_redacted() {
        let auth = RegistryAuth::new("bot".into(), "hunter2".into(), "ghcr.io".into());
        assert_eq!(format!("{auth:?}"), "[redacted]");
    }
}
