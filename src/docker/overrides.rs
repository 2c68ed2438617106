//! What of a container's configuration was chosen for it, as opposed to inherited from its
//! image, and how to carry that over to a new container.
//!
//! `docker inspect` shows a container's config with the image's defaults merged in (env,
//! cmd, entrypoint, labels, user, working dir, healthcheck, exposed ports, volumes). A
//! replacement on a new image must keep what was set for the container but take the new
//! image's defaults for the rest, so each field is compared with the old image's config:
//! equal means inherited. (A value set explicitly to exactly the image default is
//! indistinguishable from an inherited one and follows the new image; that is the
//! trade-off.) Networks and anonymous volumes are carried here too.

use std::collections::{HashMap, HashSet};

use bollard::models::{
    ContainerConfig, ContainerInspectResponse, EndpointSettings, HealthConfig, ImageConfig,
};

/// Length of the short container id Docker adds as a network alias.
const SHORT_ID_LEN: usize = 12;

/// The parts of a container's config that were set for it rather than inherited.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct ExplicitConfig {
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub healthcheck: Option<HealthConfig>,
    pub labels: HashMap<String, String>,
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    pub stop_signal: Option<String>,
}

/// Compares a container's config with its image's and keeps what differs.
pub(super) fn explicit_config(container: &ContainerConfig, image: &ImageConfig) -> ExplicitConfig {
    let image_env: HashSet<&String> = image.env.iter().flatten().collect();
    let image_labels = image.labels.clone().unwrap_or_default();
    let (cmd, entrypoint) = explicit_command(container, image);
    ExplicitConfig {
        env: container
            .env
            .iter()
            .flatten()
            .filter(|entry| !image_env.contains(entry))
            .cloned()
            .collect(),
        cmd,
        entrypoint,
        user: differing(&container.user, &image.user),
        working_dir: differing(&container.working_dir, &image.working_dir),
        healthcheck: (container.healthcheck != image.healthcheck)
            .then(|| container.healthcheck.clone())
            .flatten(),
        labels: container
            .labels
            .iter()
            .flatten()
            .filter(|(key, value)| image_labels.get(*key) != Some(*value))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
        exposed_ports: minus(&container.exposed_ports, &image.exposed_ports),
        volumes: minus(&container.volumes, &image.volumes),
        stop_signal: differing(&container.stop_signal, &image.stop_signal),
    }
}

/// Docker's merge rule: the image's entrypoint applies when the container set none, and the
/// image's cmd applies only when the container set neither entrypoint nor cmd. So an
/// explicit entrypoint makes the cmd explicit too, whatever it is.
fn explicit_command(
    container: &ContainerConfig,
    image: &ImageConfig,
) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let entrypoint_is_explicit = non_empty(&container.entrypoint) != non_empty(&image.entrypoint);
    if entrypoint_is_explicit {
        let entrypoint = container.entrypoint.clone().unwrap_or_default();
        return (container.cmd.clone(), Some(entrypoint));
    }
    let cmd_is_explicit = non_empty(&container.cmd) != non_empty(&image.cmd);
    (
        cmd_is_explicit.then(|| container.cmd.clone()).flatten(),
        None,
    )
}

fn non_empty(list: &Option<Vec<String>>) -> Option<&Vec<String>> {
    list.as_ref().filter(|items| !items.is_empty())
}

fn differing(container: &Option<String>, image: &Option<String>) -> Option<String> {
    let container_value = container.as_deref().unwrap_or("");
    (container_value != image.as_deref().unwrap_or("")).then(|| container_value.to_string())
}

fn minus(container: &Option<Vec<String>>, image: &Option<Vec<String>>) -> Vec<String> {
    let inherited: HashSet<&String> = image.iter().flatten().collect();
    container
        .iter()
        .flatten()
        .filter(|item| !inherited.contains(item))
        .cloned()
        .collect()
}

/// The networks a container is on, split into the one it is created with (its network
/// mode) and the ones connected after creation: API versions before 1.44 accept only one
/// endpoint at creation.
#[derive(Debug, Clone, Default)]
pub(super) struct NetworkPlan {
    pub primary: Option<(String, EndpointSettings)>,
    pub extra: Vec<(String, EndpointSettings)>,
}

/// Carries each network attachment's aliases, static addresses, links and driver options,
/// dropping the old container's short id alias and everything runtime-assigned.
pub(super) fn network_plan(raw: &ContainerInspectResponse) -> NetworkPlan {
    let network_mode = raw
        .host_config
        .as_ref()
        .and_then(|host_config| host_config.network_mode.clone())
        .unwrap_or_default();
    let primary_name = match network_mode.as_str() {
        "" | "default" => "bridge".to_string(),
        "host" | "none" => return NetworkPlan::default(),
        mode if mode.starts_with("container:") => return NetworkPlan::default(),
        mode => mode.to_string(),
    };
    let short_id: String = raw
        .id
        .as_deref()
        .unwrap_or_default()
        .chars()
        .take(SHORT_ID_LEN)
        .collect();
    let mut plan = NetworkPlan::default();
    let networks = raw
        .network_settings
        .as_ref()
        .and_then(|settings| settings.networks.clone())
        .unwrap_or_default();
    let mut names: Vec<&String> = networks.keys().collect();
    names.sort();
    for name in names {
        let endpoint = &networks[name];
        let aliases: Vec<String> = endpoint
            .aliases
            .iter()
            .flatten()
            .filter(|alias| **alias != short_id)
            .cloned()
            .collect();
        let carried = EndpointSettings {
            aliases: (!aliases.is_empty()).then_some(aliases),
            ipam_config: endpoint.ipam_config.clone(),
            links: endpoint.links.clone(),
            driver_opts: endpoint.driver_opts.clone(),
            ..Default::default()
        };
        if *name == primary_name {
            plan.primary = Some((name.clone(), carried));
        } else {
            plan.extra.push((name.clone(), carried));
        }
    }
    plan
}

/// Binds that re-attach the container's anonymous volumes (and named volumes mounted
/// through the image's `VOLUME`), so the replacement keeps their data instead of getting
/// fresh empty volumes. Destinations already covered by binds or mounts are skipped.
pub(super) fn volume_binds_to_keep(raw: &ContainerInspectResponse) -> Vec<String> {
    let host_config = raw.host_config.clone().unwrap_or_default();
    let mut covered: HashSet<String> = host_config
        .binds
        .iter()
        .flatten()
        .filter_map(|bind| bind.split(':').nth(1).map(str::to_string))
        .collect();
    covered.extend(
        host_config
            .mounts
            .iter()
            .flatten()
            .filter_map(|mount| mount.target.clone()),
    );
    raw.mounts
        .iter()
        .flatten()
        .filter(|mount| mount.typ.as_deref() == Some("volume"))
        .filter_map(|mount| {
            let name = mount.name.as_deref()?;
            let destination = mount.destination.as_deref()?;
            if covered.contains(destination) {
                return None;
            }
            let mode = if mount.rw == Some(false) { ":ro" } else { "" };
            Some(format!("{name}:{destination}{mode}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Option<Vec<String>> {
        Some(items.iter().map(|item| item.to_string()).collect())
    }

    fn image() -> ImageConfig {
        ImageConfig {
            env: strings(&["PATH=/usr/bin", "APP_VERSION=v1"]),
            cmd: strings(&["npm", "start"]),
            entrypoint: None,
            user: Some("app".to_string()),
            working_dir: Some("/app".to_string()),
            labels: Some(HashMap::from([("maintainer".to_string(), "x".to_string())])),
            ..Default::default()
        }
    }

    /// A container created from `image()` with only the given overrides, as inspect shows
    /// it after Docker's merge.
    fn merged(overrides: ContainerConfig) -> ContainerConfig {
        let image = image();
        ContainerConfig {
            env: overrides.env.or(image.env),
            cmd: overrides.cmd.or(image.cmd),
            entrypoint: overrides.entrypoint.or(image.entrypoint),
            user: overrides.user.or(image.user),
            working_dir: overrides.working_dir.or(image.working_dir),
            labels: overrides.labels.or(image.labels),
            ..Default::default()
        }
    }

    #[test]
    fn inherited_values_are_not_explicit() {
        let explicit = explicit_config(&merged(ContainerConfig::default()), &image());
        assert_eq!(explicit, ExplicitConfig::default());
    }

    #[test]
    fn overrides_are_explicit() {
        let container = merged(ContainerConfig {
            env: strings(&[
                "PATH=/usr/bin",
                "APP_VERSION=v1",
                "DATABASE_URL=postgres://db",
            ]),
            cmd: strings(&["npm", "run", "worker"]),
            user: Some("root".to_string()),
            ..Default::default()
        });
        let explicit = explicit_config(&container, &image());
        assert_eq!(explicit.env, vec!["DATABASE_URL=postgres://db".to_string()]);
        assert_eq!(explicit.cmd, strings(&["npm", "run", "worker"]));
        assert_eq!(explicit.entrypoint, None);
        assert_eq!(explicit.user.as_deref(), Some("root"));
        assert_eq!(explicit.working_dir, None);
    }

    #[test]
    fn an_explicit_entrypoint_carries_its_cmd() {
        let container = ContainerConfig {
            entrypoint: strings(&["/bin/sh", "-c"]),
            cmd: None,
            ..merged(ContainerConfig::default())
        };
        let explicit = explicit_config(&container, &image());
        assert_eq!(explicit.entrypoint, strings(&["/bin/sh", "-c"]));
        assert_eq!(explicit.cmd, None);
    }
}
