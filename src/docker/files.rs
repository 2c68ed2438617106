//! Files in a folder on the Docker host, such as database backups: written,
//! read and listed through a short-lived helper container that bind-mounts
//! the folder, so it works for remote hosts exactly as for the local one and
//! never runs a shell. The helper runs `sleep` from the image it is given
//! (the database's own image, which is on the host already) and is removed
//! afterwards, whatever happened.

use std::io::Read;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use futures_util::TryStreamExt;

use super::error::DockerError;
use super::exec::Exec;
use super::host::DockerHost;

/// Where the helper sees the host folder.
const MOUNT_POINT: &str = "/deckhand-files";
/// Limit for moving one file.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(600);

impl DockerHost {
    /// Writes `bytes` as `name` in `folder` on the host; the folder is created
    /// when missing.
    ///
    /// # Errors
    /// When the helper cannot run or the upload fails.
    pub async fn write_host_file(
        &self,
        image: &str,
        folder: &str,
        name: &str,
        bytes: &[u8],
    ) -> Result<(), DockerError> {
        let archive = tar_of(name, bytes).map_err(|source| DockerError::File {
            action: "packing a file for upload".to_string(),
            path: name.to_string(),
            source,
        })?;
        self.with_helper(image, folder, |host, id| async move {
            let options = UploadToContainerOptionsBuilder::default()
                .path(MOUNT_POINT)
                .build();
            host.call_within(
                format!("writing \"{name}\" to {folder}"),
                TRANSFER_TIMEOUT,
                host.client().upload_to_container(
                    &id,
                    Some(options),
                    bollard::body_full(archive.into()),
                ),
            )
            .await
        })
        .await
    }

    /// Reads `name` from `folder` on the host.
    ///
    /// # Errors
    /// When the file does not exist or the helper cannot run.
    pub async fn read_host_file(
        &self,
        image: &str,
        folder: &str,
        name: &str,
    ) -> Result<Vec<u8>, DockerError> {
        let path = format!("{MOUNT_POINT}/{name}");
        let archive = self
            .with_helper(image, folder, |host, id| async move {
                let options = DownloadFromContainerOptionsBuilder::default()
                    .path(&path)
                    .build();
                let chunks: Vec<bytes::Bytes> = host
                    .call_within(
                        format!("reading \"{name}\" from {folder}"),
                        TRANSFER_TIMEOUT,
                        host.client()
                            .download_from_container(&id, Some(options))
                            .try_collect(),
                    )
                    .await?;
                Ok(chunks.concat())
            })
            .await?;
        first_file_of(&archive).map_err(|source| DockerError::File {
            action: "unpacking a downloaded file".to_string(),
            path: name.to_string(),
            source,
        })
    }

    /// The names of the files in `folder` on the host, sorted.
    ///
    /// # Errors
    /// When the helper cannot run.
    pub async fn list_host_files(
        &self,
        image: &str,
        folder: &str,
    ) -> Result<Vec<String>, DockerError> {
        self.with_helper(image, folder, |host, id| async move {
            let listing = host
                .exec(
                    &id,
                    Exec {
                        cmd: vec!["ls".into(), "-1".into(), MOUNT_POINT.into()],
                        env: Vec::new(),
                        stdin: None,
                        timeout: Duration::from_secs(30),
                    },
                )
                .await?;
            let mut names: Vec<String> = listing
                .stdout_text()
                .lines()
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_string)
                .collect();
            names.sort();
            Ok(names)
        })
        .await
    }

    /// Runs `work` with a helper container that mounts `folder`, then
    /// removes the helper.
    async fn with_helper<T, F, Fut>(
        &self,
        image: &str,
        folder: &str,
        work: F,
    ) -> Result<T, DockerError>
    where
        F: FnOnce(DockerHost, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, DockerError>>,
    {
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint: Some(vec!["sleep".to_string()]),
            cmd: Some(vec!["600".to_string()]),
            user: Some("0".to_string()),
            labels: Some(
                [("deckhand.helper".to_string(), "files".to_string())]
                    .into_iter()
                    .collect(),
            ),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{folder}:{MOUNT_POINT}")]),
                network_mode: Some("none".to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().build();
        let created = self
            .call(
                format!("creating a file helper for {folder}"),
                self.client().create_container(Some(options), body),
            )
            .await?;
        let id = created.id;
        let outcome = async {
            self.start(&id).await?;
            work(self.clone(), id.clone()).await
        }
        .await;
        if let Err(error) = self.remove(&id).await {
            tracing::warn!(host = %self.name(), error = %error, "cannot remove a file helper container");
        }
        outcome
    }
}

fn tar_of(name: &str, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o640);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or_default(),
    );
    header.set_cksum();
    builder.append_data(&mut header, name, bytes)?;
    builder.into_inner()
}

fn first_file_of(archive: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut entries = tar::Archive::new(archive);
    for entry in entries.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type().is_file() {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            return Ok(bytes);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "the archive holds no file",
    ))
}
