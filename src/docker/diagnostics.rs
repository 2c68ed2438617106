//! Read-only views for incident reports: a container's memory, the host's networks with
//! their members, and disk usage (`docker stats`, `docker network inspect`,
//! `docker system df` in the runbook). Nothing here changes the host.

use std::collections::HashSet;

use bollard::models::{ContainerSummaryStateEnum, SystemDataUsageResponse};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, ListNetworksOptions,
    ListVolumesOptions, StatsOptionsBuilder,
};
use futures_util::StreamExt;

use super::error::DockerError;
use super::host::DockerHost;

/// A container's memory use at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Memory in use, page cache that could be dropped excluded (as `docker stats`).
    pub used_bytes: u64,
    /// The container's limit, or the host's memory when it has none.
    pub limit_bytes: u64,
}

impl MemoryUsage {
    /// Use as a percentage of the limit.
    pub fn percent(&self) -> f64 {
        if self.limit_bytes == 0 {
            return 0.0;
        }
        self.used_bytes as f64 * 100.0 / self.limit_bytes as f64
    }
}

/// A network and the containers attached to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    /// Network id.
    pub id: String,
    /// Network name, e.g. `tasktracker_default`.
    pub name: String,
    /// Driver, e.g. `bridge`.
    pub driver: String,
    /// Labels, including compose's.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Attached containers, by name.
    pub containers: Vec<NetworkMember>,
}

/// A container attached to a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkMember {
    /// Container id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// Address on this network, e.g. `172.18.0.3/16`.
    pub ipv4_address: String,
}

/// Disk used by Docker on a host, by kind, as `docker system df` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskUsage {
    /// Images.
    pub images: UsageSummary,
    /// Containers' writable layers.
    pub containers: UsageSummary,
    /// Volumes; sizes are unknown on engines before API 1.52 without a full `df`.
    pub volumes: UsageSummary,
    /// The builder's cache; `None` when the engine does not report it through this API.
    pub build_cache: Option<UsageSummary>,
}

/// Counts and sizes of one kind of Docker object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsageSummary {
    /// How many there are.
    pub total_count: u64,
    /// How many are in use (by a container, or running).
    pub active_count: u64,
    /// Space they take, when known.
    pub size_bytes: Option<u64>,
    /// Space that removing the unused ones would free, when known.
    pub reclaimable_bytes: Option<u64>,
}

impl DockerHost {
    /// One sample of a container's memory use.
    ///
    /// # Errors
    ///
    /// API failures, e.g. the container is not running.
    pub async fn stats_memory(&self, container: &str) -> Result<MemoryUsage, DockerError> {
        let options = StatsOptionsBuilder::default()
            .stream(false)
            .one_shot(true)
            .build();
        let mut samples = self.client().stats(container, Some(options));
        let sample = self
            .call(format!("reading stats of \"{container}\""), async {
                samples.next().await.transpose()
            })
            .await?;
        let memory = sample
            .and_then(|sample| sample.memory_stats)
            .unwrap_or_default();
        let usage = memory.usage.unwrap_or(0);
        let stats = memory.stats.unwrap_or_default();
        // cgroup v1 reports total_inactive_file, v2 inactive_file; docker stats subtracts it.
        let inactive = stats
            .get("total_inactive_file")
            .or_else(|| stats.get("inactive_file"))
            .copied()
            .unwrap_or(0);
        Ok(MemoryUsage {
            used_bytes: usage.saturating_sub(inactive),
            limit_bytes: memory.limit.unwrap_or(0),
        })
    }

    /// All networks with their attached containers, sorted by name.
    ///
    /// # Errors
    ///
    /// Connection and API failures.
    pub async fn list_networks(&self) -> Result<Vec<NetworkInfo>, DockerError> {
        let listed = self
            .call(
                "listing networks",
                self.client().list_networks(None::<ListNetworksOptions>),
            )
            .await?;
        let mut networks = Vec::new();
        for network in listed {
            let Some(id) = network.id else { continue };
            // `None`: removed between listing and inspecting.
            if let Some(info) = self.network(&id).await? {
                networks.push(info);
            }
        }
        networks.sort_by(|left, right| left.name.cmp(&right.name));
        Ok(networks)
    }

    /// One network with its attached containers, by name or id; `None` when there is no
    /// such network. Cheaper than [`DockerHost::list_networks`] on a host with many.
    ///
    /// # Errors
    ///
    /// Connection and API failures.
    pub async fn network(&self, name: &str) -> Result<Option<NetworkInfo>, DockerError> {
        let inspected = self
            .call(
                format!("inspecting network \"{name}\""),
                self.client().inspect_network(name, None),
            )
            .await;
        let inspected = match inspected {
            Ok(inspected) => inspected,
            Err(error) if DockerHost::is_not_found(&error) => return Ok(None),
            Err(error) => return Err(error),
        };
        let mut containers: Vec<NetworkMember> = inspected
            .containers
            .unwrap_or_default()
            .into_iter()
            .map(|(container_id, endpoint)| NetworkMember {
                id: container_id,
                name: endpoint.name.unwrap_or_default(),
                ipv4_address: endpoint.ipv4_address.unwrap_or_default(),
            })
            .collect();
        containers.sort_by(|left, right| left.name.cmp(&right.name));
        Ok(Some(NetworkInfo {
            id: inspected.id.unwrap_or_default(),
            name: inspected.name.unwrap_or_default(),
            driver: inspected.driver.unwrap_or_default(),
            labels: inspected.labels.unwrap_or_default().into_iter().collect(),
            containers,
        }))
    }

    /// Disk used by images, containers, volumes and the build cache.
    ///
    /// Engines with API 1.52 or later report the totals in one call. Older engines answer
    /// `/system/df` in a shape the client cannot read, so the totals are computed from the
    /// image, container and volume lists: image sizes then count shared layers once per
    /// image, volume sizes are unknown and the build cache is not reported.
    ///
    /// # Errors
    ///
    /// Connection and API failures.
    pub async fn disk_usage(&self) -> Result<DiskUsage, DockerError> {
        // Asking an older engine for totals it cannot give costs a full `system df`.
        if !self.api_at_least(1, 52) {
            return self.disk_usage_from_lists().await;
        }
        let reported = self
            .call_within(
                "reading disk usage",
                self.timeout() * 4,
                self.client().df(None),
            )
            .await?;
        if let Some(usage) = from_engine_totals(&reported) {
            return Ok(usage);
        }
        self.disk_usage_from_lists().await
    }

    /// Whether the negotiated API version is at least `major.minor`.
    fn api_at_least(&self, major: u32, minor: u32) -> bool {
        let mut parts = self.api_version().split('.').map(str::parse::<u32>);
        match (parts.next(), parts.next()) {
            (Some(Ok(have_major)), Some(Ok(have_minor))) => {
                (have_major, have_minor) >= (major, minor)
            }
            _ => false,
        }
    }

    async fn disk_usage_from_lists(&self) -> Result<DiskUsage, DockerError> {
        let container_options = ListContainersOptionsBuilder::default()
            .all(true)
            .size(true)
            .build();
        let containers = self
            .call_within(
                "listing containers with sizes",
                self.timeout() * 4,
                self.client().list_containers(Some(container_options)),
            )
            .await?;
        let images = self
            .call(
                "listing images",
                self.client()
                    .list_images(Some(ListImagesOptionsBuilder::default().all(false).build())),
            )
            .await?;
        let volumes = self
            .call(
                "listing volumes",
                self.client().list_volumes(None::<ListVolumesOptions>),
            )
            .await?;

        let images_in_use: HashSet<&str> = containers
            .iter()
            .filter_map(|container| container.image_id.as_deref())
            .collect();
        let volumes_in_use: HashSet<&str> = containers
            .iter()
            .flat_map(|container| container.mounts.iter().flatten())
            .filter_map(|mount| mount.name.as_deref())
            .collect();
        let mut image_summary = UsageSummary::default();
        let (mut image_bytes, mut image_reclaimable) = (0u64, 0u64);
        for image in &images {
            let size = u64::try_from(image.size).unwrap_or(0);
            image_summary.total_count += 1;
            image_bytes += size;
            if images_in_use.contains(image.id.as_str()) {
                image_summary.active_count += 1;
            } else {
                image_reclaimable += size;
            }
        }
        image_summary.size_bytes = Some(image_bytes);
        image_summary.reclaimable_bytes = Some(image_reclaimable);

        let mut container_summary = UsageSummary::default();
        let (mut container_bytes, mut container_reclaimable) = (0u64, 0u64);
        for container in &containers {
            let size = container
                .size_rw
                .and_then(|size| u64::try_from(size).ok())
                .unwrap_or(0);
            container_summary.total_count += 1;
            container_bytes += size;
            if container.state == Some(ContainerSummaryStateEnum::RUNNING) {
                container_summary.active_count += 1;
            } else {
                container_reclaimable += size;
            }
        }
        container_summary.size_bytes = Some(container_bytes);
        container_summary.reclaimable_bytes = Some(container_reclaimable);

        let volume_list = volumes.volumes.unwrap_or_default();
        let volume_summary = UsageSummary {
            total_count: volume_list.len() as u64,
            active_count: volume_list
                .iter()
                .filter(|volume| volumes_in_use.contains(volume.name.as_str()))
                .count() as u64,
            size_bytes: None,
            reclaimable_bytes: None,
        };
        Ok(DiskUsage {
            images: image_summary,
            containers: container_summary,
            volumes: volume_summary,
            build_cache: None,
        })
    }
}

/// The engine's own totals (API 1.52 and later); `None` when it reported none.
fn from_engine_totals(reported: &SystemDataUsageResponse) -> Option<DiskUsage> {
    let images = reported.image_usage.as_ref()?;
    let containers = reported.container_usage.as_ref()?;
    let volumes = reported.volume_usage.as_ref()?;
    let summary =
        |total: Option<i64>, active: Option<i64>, size: Option<i64>, free: Option<i64>| {
            UsageSummary {
                total_count: total.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                active_count: active.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                size_bytes: size.and_then(|n| u64::try_from(n).ok()),
                reclaimable_bytes: free.and_then(|n| u64::try_from(n).ok()),
            }
        };
    Some(DiskUsage {
        images: summary(
            images.total_count,
            images.active_count,
            images.total_size,
            images.reclaimable,
        ),
        containers: summary(
            containers.total_count,
            containers.active_count,
            containers.total_size,
            containers.reclaimable,
        ),
        volumes: summary(
            volumes.total_count,
            volumes.active_count,
            volumes.total_size,
            volumes.reclaimable,
        ),
        build_cache: reported.build_cache_usage.as_ref().map(|cache| {
            summary(
                cache.total_count,
                cache.active_count,
                cache.total_size,
                cache.reclaimable,
            )
        }),
    })
}
