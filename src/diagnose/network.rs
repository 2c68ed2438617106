//! Runbook "Network Issues": the environment's networks with the containers attached
//! (`docker network inspect`), services left off every shared network, and whether each
//! service's name resolves from inside another container (`getent hosts NAME`).

use std::collections::{BTreeMap, BTreeSet};

use futures_util::future::join_all;

use crate::config::{Selector, Service, ServiceKind};
use crate::docker::ContainerInfo;

use super::{Check, Finding, Subject};

/// How many containers are tried for `getent` before name resolution is left untested.
const MAX_PROBERS: usize = 3;
/// Docker's built-in networks, where containers do not find each other by name.
const UNNAMED_NETWORKS: [&str; 3] = ["bridge", "host", "none"];

/// Networks, membership, and name resolution between services.
pub async fn check(subject: &Subject<'_>) -> Finding {
    let running: Vec<(&Service, &ContainerInfo)> = subject.running().collect();
    if running.is_empty() {
        return Finding::fail(Check::Network, "no running container to look at");
    }
    let mut members: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (service, container) in &running {
        for attachment in &container.networks {
            members
                .entry(attachment.network.as_str())
                .or_default()
                .insert(service.name.as_str());
        }
    }
    let (mut evidence, (prober, resolved)) = tokio::join!(
        describe_networks(subject, &members),
        resolve_names(subject, &running)
    );
    let mut problems: Vec<(String, &Service)> = Vec::new();
    let shared: BTreeSet<&str> = members
        .iter()
        .filter(|(network, services)| services.len() > 1 && !UNNAMED_NETWORKS.contains(network))
        .flat_map(|(_, services)| services.iter().copied())
        .collect();
    let n_services = running
        .iter()
        .map(|(service, _)| service.name.as_str())
        .collect::<BTreeSet<_>>()
        .len();
    if n_services > 1 {
        for (service, container) in &running {
            if !shared.contains(service.name.as_str()) {
                problems.push((
                    format!(
                        "{} shares no network with another service where names resolve (the default bridge does not)",
                        container.name
                    ),
                    service,
                ));
            }
        }
    }
    match prober {
        Some(prober) => {
            for (service, result) in resolved {
                match result {
                    Ok(address) => evidence.push(format!(
                        "{} resolves from {prober}: {address}",
                        dns_name(service)
                    )),
                    Err(reason) => {
                        evidence.push(format!(
                            "{} does not resolve from {prober}: {reason}",
                            dns_name(service)
                        ));
                        problems.push((
                            format!("{} does not resolve from {prober}", dns_name(service)),
                            service,
                        ));
                    }
                }
            }
        }
        None => evidence.push(
            "name resolution not tested: no running container has getent or busybox".to_string(),
        ),
    }
    let finding = match problems.first() {
        None => Finding::ok(
            Check::Network,
            format!(
                "{} network(s); every service reachable by name",
                members.len()
            ),
        ),
        Some((_, service)) => {
            let lines: Vec<&str> = problems.iter().map(|(line, _)| line.as_str()).collect();
            Finding::fail(Check::Network, lines.join("; "))
                .with_fix(Some(subject.restart_command(service)))
        }
    };
    finding.with_evidence(evidence)
}

/// One line per network with its driver and members, from `docker network inspect`.
async fn describe_networks(
    subject: &Subject<'_>,
    members: &BTreeMap<&str, BTreeSet<&str>>,
) -> Vec<String> {
    let inspected = join_all(members.keys().map(|network| subject.host.network(network))).await;
    members
        .iter()
        .zip(inspected)
        .map(|((network, services), inspected)| {
            let detail = match inspected {
                Ok(Some(info)) => {
                    let names: Vec<&str> = info
                        .containers
                        .iter()
                        .map(|member| member.name.as_str())
                        .collect();
                    format!(
                        "{}, {} container(s): {}",
                        info.driver,
                        names.len(),
                        names.join(", ")
                    )
                }
                Ok(None) => "not found by inspect".to_string(),
                Err(error) => format!("not inspected: {error}"),
            };
            let services: Vec<&str> = services.iter().copied().collect();
            format!(
                "network {network} ({detail}); services: {}",
                services.join(", ")
            )
        })
        .collect()
}

/// Resolves every running service's name from the first container that has `getent`,
/// trying proxies and apps first (their images are the likeliest to have it).
async fn resolve_names<'s>(
    subject: &Subject<'_>,
    running: &[(&'s Service, &ContainerInfo)],
) -> (Option<String>, Vec<(&'s Service, Result<String, String>)>) {
    let mut candidates: Vec<&ContainerInfo> =
        running.iter().map(|(_, container)| *container).collect();
    let rank = |container: &ContainerInfo| {
        running
            .iter()
            .find(|(_, candidate)| candidate.id == container.id)
            .map(|(service, _)| match service.kind {
                ServiceKind::Nginx => 0,
                ServiceKind::App => 1,
                _ => 2,
            })
            .unwrap_or(3)
    };
    candidates.sort_by_key(|container| rank(container));
    // One candidate per service, and only a few: images without getent tend to come in
    // numbers (many replicas of one small image).
    let mut tried_services = BTreeSet::new();
    candidates.retain(|container| {
        running
            .iter()
            .find(|(_, candidate)| candidate.id == container.id)
            .is_some_and(|(service, _)| tried_services.insert(service.name.as_str()))
    });
    candidates.truncate(MAX_PROBERS);
    let mut services: Vec<&'s Service> = Vec::new();
    for (service, _) in running {
        if !services.iter().any(|known| known.name == service.name) {
            services.push(service);
        }
    }
    for prober in candidates {
        let prober_service = running
            .iter()
            .find(|(_, candidate)| candidate.id == prober.id)
            .map(|(service, _)| service.name.as_str());
        // Its own name tells nothing; the others' names are what its connections use.
        let names: Vec<&'s Service> = services
            .iter()
            .copied()
            .filter(|service| Some(service.name.as_str()) != prober_service)
            .collect();
        let Some((first, rest)) = names.split_first() else {
            return (Some(prober.name.clone()), Vec::new());
        };
        for resolver in [Resolver::Getent, Resolver::BusyboxNslookup] {
            // One lookup tells whether this container has the tool; then all the others.
            let first_lookup = resolver.lookup(subject, prober, first).await;
            if first_lookup.is_none() {
                continue;
            }
            let others = join_all(
                rest.iter()
                    .map(|service| resolver.lookup(subject, prober, service)),
            )
            .await;
            let results = std::iter::once((*first, first_lookup))
                .chain(rest.iter().copied().zip(others))
                .map(|(service, lookup)| {
                    let result = lookup
                        .unwrap_or_else(|| Err(format!("{} stopped working", resolver.name())));
                    (service, result)
                })
                .collect();
            return (
                Some(format!("{} ({})", prober.name, resolver.name())),
                results,
            );
        }
    }
    (None, Vec::new())
}

/// The name other containers use for a service: its compose service name, or its
/// container name.
fn dns_name(service: &Service) -> String {
    match &service.selector {
        Selector::Compose { service, .. } => service.clone(),
        Selector::Container(name) => name.clone(),
    }
}

/// A way to resolve a name from inside a container.
#[derive(Debug, Clone, Copy)]
enum Resolver {
    /// `getent hosts NAME` (glibc images).
    Getent,
    /// `busybox nslookup NAME` (busybox images without getent).
    BusyboxNslookup,
}

impl Resolver {
    fn name(self) -> &'static str {
        match self {
            Resolver::Getent => "getent",
            Resolver::BusyboxNslookup => "nslookup",
        }
    }

    /// The address `service` resolves to, or why not; `None` when the container lacks
    /// the tool (the runtime answers 126 or 127) or the exec failed.
    async fn lookup(
        self,
        subject: &Subject<'_>,
        prober: &ContainerInfo,
        service: &Service,
    ) -> Option<Result<String, String>> {
        let name = dns_name(service);
        let cmd: [&str; 3] = match self {
            Resolver::Getent => ["getent", "hosts", &name],
            Resolver::BusyboxNslookup => ["busybox", "nslookup", &name],
        };
        let output = subject.exec(prober, &cmd).await.ok()?;
        if matches!(output.exit_code, 126 | 127) {
            return None;
        }
        let stdout = output.stdout_text();
        let address = match self {
            Resolver::Getent => stdout.split_whitespace().next().map(str::to_string),
            Resolver::BusyboxNslookup => nslookup_address(&stdout),
        };
        Some(match (output.exit_code, address) {
            (0, Some(address)) => Ok(address),
            (code, _) => Err(format!("{} exited with code {code}", self.name())),
        })
    }
}

/// The first address after the `Name:` line of busybox nslookup's answer (the lines
/// before it are the DNS server's own address).
fn nslookup_address(output: &str) -> Option<String> {
    let mut answer = output
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("Name:"));
    answer.next()?;
    answer
        .find(|line| line.trim_start().starts_with("Address"))
        .and_then(|line| line.split_once(':'))
        .and_then(|(_, address)| address.split_whitespace().next())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nslookup_answers_give_the_address_after_the_name() {
        let busybox = "Server:\t\t127.0.0.11\nAddress:\t127.0.0.11:53\n\nNon-authoritative answer:\nName:\tapi\nAddress: 172.20.0.5\n";
        assert_eq!(nslookup_address(busybox).as_deref(), Some("172.20.0.5"));
        let older = "Server:    127.0.0.11\nAddress 1: 127.0.0.11\n\nName:      api\nAddress 1: 172.20.0.5 api.net\n";
        assert_eq!(nslookup_address(older).as_deref(), Some("172.20.0.5"));
        assert_eq!(
            nslookup_address("** server can't find api: NXDOMAIN\n"),
            None
        );
    }
}
