//! Runbook "502 Bad Gateway": `nginx -t` in the proxy container, and whether the proxy
//! reaches each upstream's health endpoint from inside (`docker-compose exec nginx wget -O-
//! http://backend:3000/health`), with curl, falling back to wget.
//!
//! An upstream's address inside the network is its service name and the container port
//! behind the port of its configured `url`; its first health path is requested.

use futures_util::future::join_all;

use crate::config::{Service, ServiceKind};
use crate::docker::{ContainerInfo, DockerError, ExecOutput};

use super::{Check, Finding, Status, Subject, first_line, seconds};

/// An upstream as the proxy would reach it.
struct Upstream<'a> {
    service: &'a Service,
    url: Result<String, String>,
}

/// One thing found wrong, with its fix.
struct Problem {
    line: String,
    fix: Option<String>,
}

/// The proxy's configuration test and its view of every upstream.
pub async fn check(subject: &Subject<'_>) -> Finding {
    let proxies: Vec<_> = subject.of_kind(ServiceKind::Nginx).collect();
    if proxies.is_empty() {
        return Finding::ok(Check::Proxy, "no nginx proxy in this environment");
    }
    let upstreams = upstreams(subject);
    let mut evidence = Vec::new();
    let mut problems = Vec::new();
    for proxy in proxies {
        let container = match proxy.running_container() {
            Ok(container) => container,
            Err(line) => {
                evidence.push(line.clone());
                problems.push(Problem {
                    line,
                    fix: Some(subject.restart_command(proxy.service)),
                });
                continue;
            }
        };
        let (config_test, reached) = tokio::join!(
            config_test(subject, container),
            join_all(
                upstreams
                    .iter()
                    .map(|upstream| reach(subject, container, upstream))
            )
        );
        match config_test {
            Ok(lines) => evidence.push(format!("{}: nginx -t: {}", container.name, lines)),
            Err(reason) => {
                evidence.push(format!("{}: nginx -t failed: {reason}", container.name));
                problems.push(Problem {
                    line: format!(
                        "nginx -t failed in {}: {reason}; fix the configuration before restarting nginx",
                        container.name
                    ),
                    fix: None,
                });
            }
        }
        for (upstream, result) in upstreams.iter().zip(reached) {
            match result {
                Ok(line) => evidence.push(format!("{} → {line}", container.name)),
                Err(line) => {
                    evidence.push(format!("{} → {line}", container.name));
                    problems.push(Problem {
                        line: format!("{} cannot reach {line}", container.name),
                        fix: Some(subject.restart_command(upstream.service)),
                    });
                }
            }
        }
    }
    let finding = match problems.first() {
        None => Finding::ok(
            Check::Proxy,
            format!(
                "nginx configuration ok, {} upstream(s) reachable",
                upstreams.len()
            ),
        ),
        Some(first) => {
            let lines: Vec<&str> = problems
                .iter()
                .map(|problem| problem.line.as_str())
                .collect();
            Finding::new(Check::Proxy, Status::Fail, lines.join("; ")).with_fix(
                first
                    .fix
                    .clone()
                    .or_else(|| problems.iter().find_map(|problem| problem.fix.clone())),
            )
        }
    };
    finding.with_evidence(evidence)
}

/// Runs `nginx -t`; the summary line of a passing test, or the first error.
async fn config_test(subject: &Subject<'_>, container: &ContainerInfo) -> Result<String, String> {
    let output = subject
        .exec(container, &["nginx", "-t"])
        .await
        .map_err(|error| describe_error(&error))?;
    // nginx -t writes its verdict to stderr in both cases.
    let text = output.stderr_text();
    if output.exit_code == 0 {
        return Ok(text
            .lines()
            .find(|line| line.contains("test is successful"))
            .unwrap_or("ok")
            .trim()
            .to_string());
    }
    let reason = text
        .lines()
        .find_map(nginx_error)
        .unwrap_or_else(|| first_line(&output));
    Err(crate::secret::redact(&reason))
}

/// `[emerg] unknown directive "x" in /etc/nginx/nginx.conf:41` from an nginx error line,
/// without the timestamp and process id nginx puts before it when it logs to stderr.
fn nginx_error(line: &str) -> Option<String> {
    let start = line.find("[emerg]").or_else(|| line.find("[alert]"))?;
    let (level, rest) = line[start..].split_at(7);
    let rest = rest.trim_start();
    let rest = match rest.split_once(": ") {
        Some((pid, message)) if pid.chars().all(|c| c.is_ascii_digit() || c == '#') => message,
        _ => rest,
    };
    Some(format!("{level} {rest}"))
}

/// Requests the upstream's health endpoint from inside the proxy container.
async fn reach(
    subject: &Subject<'_>,
    container: &ContainerInfo,
    upstream: &Upstream<'_>,
) -> Result<String, String> {
    let url = upstream.url.as_ref().map_err(Clone::clone)?;
    let seconds_allowed = subject.command_limit().as_secs().max(1).to_string();
    let curl = [
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        &seconds_allowed,
        url,
    ];
    let output = subject
        .exec(container, &curl)
        .await
        .map_err(|error| format!("{url}: {}", describe_error(&error)))?;
    if is_missing_program(&output) {
        return reach_with_wget(subject, container, url, &seconds_allowed).await;
    }
    let status = output.stdout_text().trim().to_string();
    match (output.exit_code, status.as_str()) {
        (0, code) if code.starts_with('2') || code.starts_with('3') => Ok(format!("{url}: {code}")),
        (0, code) => Err(format!("{url}: HTTP {code}")),
        _ => Err(format!("{url}: {}", first_line(&output))),
    }
}

async fn reach_with_wget(
    subject: &Subject<'_>,
    container: &ContainerInfo,
    url: &str,
    seconds_allowed: &str,
) -> Result<String, String> {
    let wget = ["wget", "-q", "-O", "/dev/null", "-T", seconds_allowed, url];
    let output = subject
        .exec(container, &wget)
        .await
        .map_err(|error| format!("{url}: {}", describe_error(&error)))?;
    if is_missing_program(&output) {
        return Err(format!(
            "{url}: the proxy container has neither curl nor wget"
        ));
    }
    if output.exit_code == 0 {
        Ok(format!("{url}: ok"))
    } else {
        Err(format!("{url}: {}", first_line(&output)))
    }
}

/// The runtime answers 126/127 when the program does not exist in the container.
fn is_missing_program(output: &ExecOutput) -> bool {
    matches!(output.exit_code, 126 | 127)
}

fn describe_error(error: &DockerError) -> String {
    match error {
        DockerError::Timeout { after, .. } => format!("timed out after {}", seconds(*after)),
        other => other.chain(),
    }
}

/// The upstreams: configured ones, or every app service with health paths.
fn upstreams<'a>(subject: &'a Subject<'_>) -> Vec<Upstream<'a>> {
    let settings = &subject.environment.diagnose;
    subject
        .services
        .iter()
        .filter(|entry| match &settings.proxy_upstreams {
            Some(names) => names.contains(&entry.service.name),
            None => entry.service.kind == ServiceKind::App && !entry.service.health.is_empty(),
        })
        .map(|entry| Upstream {
            service: entry.service,
            url: inner_url(
                entry.service,
                entry.containers.as_deref().unwrap_or_default(),
            ),
        })
        .collect()
}

/// `http://backend:3000/health`: the service's name on the network, the container port
/// published behind its configured URL's port, its first health path.
fn inner_url(service: &Service, containers: &[ContainerInfo]) -> Result<String, String> {
    let name = &service.name;
    let url = service
        .url
        .as_deref()
        .ok_or_else(|| format!("{name}: no url configured, so its port is unknown"))?;
    let parsed = url::Url::parse(url).map_err(|_| format!("{name}: unreadable url \"{url}\""))?;
    let published = parsed.port_or_known_default();
    let container = containers
        .iter()
        .find(|container| container.state.running)
        .or(containers.first())
        .ok_or_else(|| format!("{name}: no container"))?;
    let port = container
        .ports
        .iter()
        .find(|port| Some(port.host_port) == published)
        .or(match container.ports.as_slice() {
            [only] => Some(only),
            _ => None,
        })
        .map(|port| port.container_port)
        .ok_or_else(|| format!("{name}: no published port behind {url}"))?;
    let host = match &service.selector {
        crate::config::Selector::Compose { service, .. } => service.clone(),
        crate::config::Selector::Container(container_name) => container_name.clone(),
    };
    let path = service.health.first().map(String::as_str).unwrap_or("/");
    Ok(format!("http://{host}:{port}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_errors_lose_their_timestamp_and_pid() {
        let cases = [
            (
                "2026/11/28 13:31:26 [emerg] 56#56: unknown directive \"x\" in /etc/nginx/nginx.conf:41",
                Some("[emerg] unknown directive \"x\" in /etc/nginx/nginx.conf:41"),
            ),
            (
                "nginx: [emerg] unexpected end of file",
                Some("[emerg] unexpected end of file"),
            ),
            (
                "nginx: configuration file /etc/nginx/nginx.conf test failed",
                None,
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(nginx_error(line).as_deref(), expected, "{line}");
        }
    }
}
