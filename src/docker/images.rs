//! Builds the example stack's images on a Docker host, without a registry.
//!
//! `deckhand-demo/base:bookworm` is a Debian rootfs tarball (made with mmdebstrap when
//! missing) imported as one image. The backend stand-in, postgres, redis and nginx build
//! on it; the Web IDE and git web browser stand-ins are busybox on `scratch`. Dockerfiles
//! and scripts live under `docker/images/` and are embedded here; build contexts are made
//! in memory. Each built image carries a hash of its context (and of its parent image) so
//! [`ensure_images`] rebuilds exactly what changed and nothing else. Running the images is
//! [`super::stack`]'s job.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::query_parameters::{BuildImageOptionsBuilder, CreateImageOptionsBuilder};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::error::DockerError;
use super::host::DockerHost;

/// The imported Debian bookworm rootfs every stateful demo image builds on.
pub const BASE_IMAGE: &str = "deckhand-demo/base:bookworm";
/// Where the rootfs tarball is looked for, and made when missing.
pub const DEFAULT_ROOTFS: &str = "/var/tmp/deckhand/rootfs.tar";
/// Where Debian's busybox-static puts its binary.
pub const DEFAULT_BUSYBOX: &str = "/bin/busybox";
/// Label holding the hash of the build context an image was built from.
pub const CONTEXT_HASH_LABEL: &str = "deckhand.context-hash";

/// Packages in the base rootfs: the stack's servers plus what health checks and the
/// runbook's steps use.
const ROOTFS_PACKAGES: &str =
    "postgresql-15,redis-server,nginx-light,openssl,curl,ca-certificates,procps";
/// Time allowed for building or importing one image.
const BUILD_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Time allowed for mmdebstrap (about 85 s with a warm apt cache).
const MMDEBSTRAP_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// How many lines of builder output an error quotes.
const BUILD_OUTPUT_LINES: usize = 15;

/// One image of the example stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DemoImage {
    /// `deckhand-demo/base:bookworm`, the imported rootfs.
    Base,
    /// `deckhand-demo/tasktracker-backend:<variant>`, port 3000.
    Backend(BackendVariant),
    /// `deckhand-demo/postgres:15`, port 5432.
    Postgres,
    /// `deckhand-demo/redis:7`, port 6379.
    Redis,
    /// `deckhand-demo/nginx:bookworm`, ports 80 and 443.
    Nginx,
    /// `deckhand-demo/ide:v1`, the code-server stand-in on port 8080.
    Ide,
    /// `deckhand-demo/gitweb:v1`, the git web browser stand-in on port 3001.
    Gitweb,
}

/// Versions and fault variants of the backend stand-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendVariant {
    /// First release: the `tasks` table.
    V1,
    /// Second release: adds a `priority` column.
    V2,
    /// The develop branch: v2 plus a `labels` table.
    Develop,
    /// v2 whose health endpoints answer 500, so its healthcheck fails.
    Unhealthy,
    /// v2 that prints an error and exits with code 3 right after starting.
    Crash,
    /// v2 with a migration that fails (`npm run db:migrate` exits 1).
    MigrateFails,
}

impl BackendVariant {
    /// Every variant.
    pub const ALL: [BackendVariant; 6] = [
        BackendVariant::V1,
        BackendVariant::V2,
        BackendVariant::Develop,
        BackendVariant::Unhealthy,
        BackendVariant::Crash,
        BackendVariant::MigrateFails,
    ];

    /// The image tag, which is also the version `/health` reports.
    pub fn tag(self) -> &'static str {
        match self {
            BackendVariant::V1 => "v1",
            BackendVariant::V2 => "v2",
            BackendVariant::Develop => "develop",
            BackendVariant::Unhealthy => "unhealthy",
            BackendVariant::Crash => "crash",
            BackendVariant::MigrateFails => "migrate-fails",
        }
    }

    fn fault(self) -> &'static str {
        match self {
            BackendVariant::Unhealthy => "unhealthy",
            BackendVariant::Crash => "crash",
            _ => "none",
        }
    }

    /// The migrations this version ships.
    fn migrations(self) -> &'static [Migration] {
        const V2: &[Migration] = &[CREATE_TASKS, ADD_TASK_PRIORITY];
        match self {
            BackendVariant::V1 => &[CREATE_TASKS],
            BackendVariant::V2 | BackendVariant::Unhealthy | BackendVariant::Crash => V2,
            BackendVariant::Develop => &[CREATE_TASKS, ADD_TASK_PRIORITY, CREATE_LABELS],
            BackendVariant::MigrateFails => &[CREATE_TASKS, ADD_TASK_PRIORITY, ADD_TASK_ASSIGNEE],
        }
    }
}

/// One migration of the backend stand-in, from `docker/images/backend/app/migrations/`.
struct Migration {
    name: &'static str,
    up: &'static [u8],
    down: &'static [u8],
}

macro_rules! embedded {
    ($path:expr) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docker/images/",
            $path
        ))
        .as_slice()
    };
}

macro_rules! migration {
    ($name:literal) => {
        Migration {
            name: $name,
            up: embedded!(concat!("backend/app/migrations/", $name, ".up.sql")),
            down: embedded!(concat!("backend/app/migrations/", $name, ".down.sql")),
        }
    };
}

const CREATE_TASKS: Migration = migration!("20240101000000_create_tasks");
const ADD_TASK_PRIORITY: Migration = migration!("20240201000000_add_task_priority");
/// Broken on purpose: it references a table that does not exist.
const ADD_TASK_ASSIGNEE: Migration = migration!("20240215000000_add_task_assignee");
const CREATE_LABELS: Migration = migration!("20240301000000_create_labels");

impl DemoImage {
    /// The image reference it is tagged as.
    pub fn reference(self) -> String {
        match self {
            DemoImage::Base => BASE_IMAGE.to_string(),
            DemoImage::Backend(variant) => {
                format!("deckhand-demo/tasktracker-backend:{}", variant.tag())
            }
            DemoImage::Postgres => "deckhand-demo/postgres:15".to_string(),
            DemoImage::Redis => "deckhand-demo/redis:7".to_string(),
            DemoImage::Nginx => "deckhand-demo/nginx:bookworm".to_string(),
            DemoImage::Ide => "deckhand-demo/ide:v1".to_string(),
            DemoImage::Gitweb => "deckhand-demo/gitweb:v1".to_string(),
        }
    }

    fn builds_on_base(self) -> bool {
        matches!(
            self,
            DemoImage::Base
                | DemoImage::Backend(_)
                | DemoImage::Postgres
                | DemoImage::Redis
                | DemoImage::Nginx
        )
    }
}

/// Which images to make, and the local files they are made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    /// The Debian rootfs tarball; made with mmdebstrap when missing.
    pub rootfs: PathBuf,
    /// A static busybox binary (Debian's busybox-static).
    pub busybox: PathBuf,
    /// The images wanted.
    pub images: Vec<DemoImage>,
}

impl ImageSet {
    /// What the example stack runs: postgres, redis, backend v1 (with v2 and develop to
    /// deploy), nginx, the IDE and the git web browser.
    pub fn demo_stack() -> ImageSet {
        ImageSet::with_images(vec![
            DemoImage::Postgres,
            DemoImage::Redis,
            DemoImage::Backend(BackendVariant::V1),
            DemoImage::Backend(BackendVariant::V2),
            DemoImage::Backend(BackendVariant::Develop),
            DemoImage::Nginx,
            DemoImage::Ide,
            DemoImage::Gitweb,
        ])
    }

    /// Every image, fault variants included, as tests use them.
    pub fn everything() -> ImageSet {
        let mut images = vec![DemoImage::Base];
        images.extend(BackendVariant::ALL.map(DemoImage::Backend));
        images.extend([
            DemoImage::Postgres,
            DemoImage::Redis,
            DemoImage::Nginx,
            DemoImage::Ide,
            DemoImage::Gitweb,
        ]);
        ImageSet::with_images(images)
    }

    /// The given images, from the default rootfs and busybox paths.
    pub fn with_images(images: Vec<DemoImage>) -> ImageSet {
        ImageSet {
            rootfs: PathBuf::from(DEFAULT_ROOTFS),
            busybox: PathBuf::from(DEFAULT_BUSYBOX),
            images,
        }
    }
}

/// What [`ensure_images`] did for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsuredImage {
    /// The image reference.
    pub reference: String,
    /// Whether it had to be made.
    pub outcome: EnsureOutcome,
    /// Time spent on it.
    pub elapsed: Duration,
}

/// Whether an image had to be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnsureOutcome {
    /// Present and built from the same context; untouched.
    AlreadyPresent,
    /// Built (or rebuilt because its context changed).
    Built,
    /// Imported from the rootfs tarball.
    Imported,
}

/// Makes sure the host has every image of the set, building or importing only those that
/// are missing or whose context changed. Safe to call again; images are reused by tag.
///
/// # Errors
///
/// [`DockerError::Build`] with the builder's output when a build fails,
/// [`DockerError::File`] when the rootfs or busybox cannot be read or made.
pub async fn ensure_images(
    host: &DockerHost,
    set: &ImageSet,
) -> Result<Vec<EnsuredImage>, DockerError> {
    let mut ensured = Vec::new();
    let base_id = if set.images.iter().any(|image| image.builds_on_base()) {
        let (base, base_id) = ensure_base(host, &set.rootfs).await?;
        if set.images.contains(&DemoImage::Base) {
            ensured.push(base);
        }
        base_id
    } else {
        String::new()
    };
    let busybox = if set.images.iter().any(|image| *image != DemoImage::Base) {
        read_file(&set.busybox, "reading the busybox binary").await?
    } else {
        Vec::new()
    };
    for image in &set.images {
        if *image == DemoImage::Base {
            continue;
        }
        let context = BuildContext::for_image(*image, &busybox, &base_id);
        ensured.push(ensure_built(host, *image, &context).await?);
    }
    Ok(ensured)
}

/// Imports the base image unless present; returns what happened and its id.
async fn ensure_base(
    host: &DockerHost,
    rootfs: &Path,
) -> Result<(EnsuredImage, String), DockerError> {
    let started = Instant::now();
    if let Some(info) = host.image_info(BASE_IMAGE).await? {
        let ensured = EnsuredImage {
            reference: BASE_IMAGE.to_string(),
            outcome: EnsureOutcome::AlreadyPresent,
            elapsed: started.elapsed(),
        };
        return Ok((ensured, info.id));
    }
    if tokio::fs::metadata(rootfs).await.is_err() {
        make_rootfs(rootfs).await?;
    }
    import_rootfs(host, rootfs).await?;
    let info = host
        .image_info(BASE_IMAGE)
        .await?
        .ok_or_else(|| DockerError::Build {
            image: BASE_IMAGE.to_string(),
            host: host.name().to_string(),
            message: "the import finished but the image is not there".to_string(),
        })?;
    let elapsed = started.elapsed();
    tracing::info!(host = %host.name(), image = BASE_IMAGE, elapsed_ms = elapsed.as_millis() as u64, "imported base image");
    let ensured = EnsuredImage {
        reference: BASE_IMAGE.to_string(),
        outcome: EnsureOutcome::Imported,
        elapsed,
    };
    Ok((ensured, info.id))
}

/// Runs mmdebstrap with fixed arguments to make the rootfs tarball.
async fn make_rootfs(rootfs: &Path) -> Result<(), DockerError> {
    let file_error = |action: &str, source: std::io::Error| DockerError::File {
        action: action.to_string(),
        path: rootfs.display().to_string(),
        source,
    };
    if let Some(directory) = rootfs.parent() {
        tokio::fs::create_dir_all(directory)
            .await
            .map_err(|source| file_error("creating the directory for", source))?;
    }
    let partial = rootfs.with_extension("tar.partial");
    tracing::info!(path = %rootfs.display(), "making the base rootfs with mmdebstrap");
    let run = tokio::process::Command::new("mmdebstrap")
        .arg("--variant=apt")
        .arg(format!("--include={ROOTFS_PACKAGES}"))
        .arg("--format=tar")
        .arg("bookworm")
        .arg(&partial)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(MMDEBSTRAP_TIMEOUT, run)
        .await
        .map_err(|_| {
            file_error(
                "mmdebstrap timed out making",
                std::io::Error::from(std::io::ErrorKind::TimedOut),
            )
        })?
        .map_err(|source| {
            file_error(
                "running mmdebstrap (apt-get install mmdebstrap) to make",
                source,
            )
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        let message = tail.into_iter().rev().collect::<Vec<_>>().join("; ");
        return Err(file_error(
            "mmdebstrap failed making",
            std::io::Error::other(format!("{}: {message}", output.status)),
        ));
    }
    tokio::fs::rename(&partial, rootfs)
        .await
        .map_err(|source| file_error("moving the finished rootfs to", source))
}

/// `docker import`: streams the tarball to the engine as a one-layer image.
async fn import_rootfs(host: &DockerHost, rootfs: &Path) -> Result<(), DockerError> {
    let file = tokio::fs::File::open(rootfs)
        .await
        .map_err(|source| DockerError::File {
            action: "opening the rootfs tarball".to_string(),
            path: rootfs.display().to_string(),
            source,
        })?;
    let chunks = futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buffer = vec![0u8; 1 << 20];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(read) => {
                buffer.truncate(read);
                Some((Ok(bytes::Bytes::from(buffer)), file))
            }
            Err(error) => Some((Err(error), file)),
        }
    });
    let (repository, tag) = super::image::split_tag(BASE_IMAGE);
    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(repository)
        .tag(tag)
        .changes(vec![
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            "ENV LANG=C.UTF-8".to_string(),
            "CMD [\"/bin/bash\"]".to_string(),
        ])
        .build();
    let client = host.client_for_long_call(BUILD_TIMEOUT);
    let progress = client.create_image(Some(options), Some(bollard::body_try_stream(chunks)), None);
    host.call_within(
        format!("importing \"{}\" as \"{BASE_IMAGE}\"", rootfs.display()),
        BUILD_TIMEOUT,
        futures_util::TryStreamExt::try_for_each(progress, |_| async { Ok(()) }),
    )
    .await
    .map_err(|error| DockerError::Build {
        image: BASE_IMAGE.to_string(),
        host: host.name().to_string(),
        message: DockerHost::engine_message(&error),
    })
}

/// Builds an image unless one with the same context hash is already tagged.
async fn ensure_built(
    host: &DockerHost,
    image: DemoImage,
    context: &BuildContext,
) -> Result<EnsuredImage, DockerError> {
    let started = Instant::now();
    let reference = image.reference();
    let existing = host.image_info(&reference).await?;
    let is_current = existing
        .as_ref()
        .and_then(|info| info.labels.get(CONTEXT_HASH_LABEL))
        .is_some_and(|hash| *hash == context.hash);
    if is_current {
        return Ok(EnsuredImage {
            reference,
            outcome: EnsureOutcome::AlreadyPresent,
            elapsed: started.elapsed(),
        });
    }
    build(host, &reference, context).await?;
    let elapsed = started.elapsed();
    tracing::info!(host = %host.name(), image = %reference, elapsed_ms = elapsed.as_millis() as u64, "built image");
    Ok(EnsuredImage {
        reference,
        outcome: EnsureOutcome::Built,
        elapsed,
    })
}

async fn build(
    host: &DockerHost,
    reference: &str,
    context: &BuildContext,
) -> Result<(), DockerError> {
    let labels = HashMap::from([(CONTEXT_HASH_LABEL, context.hash.as_str())]);
    let options = BuildImageOptionsBuilder::default()
        .t(reference)
        .rm(true)
        .forcerm(true)
        .buildargs(&context.build_args)
        .labels(&labels)
        .build();
    let client = host.client_for_long_call(BUILD_TIMEOUT);
    let body = bollard::body_full(context.tar.clone());
    let mut output = client.build_image(options, None, Some(body));
    let mut last_lines: Vec<String> = Vec::new();
    let streamed = host
        .call_within(format!("building \"{reference}\""), BUILD_TIMEOUT, async {
            while let Some(item) = output.next().await {
                let info = item?;
                for line in info.stream.iter().flat_map(|text| text.lines()) {
                    if !line.trim().is_empty() {
                        last_lines.push(line.trim_end().to_string());
                    }
                }
                if let Some(detail) = info.error_detail {
                    let message = detail.message.unwrap_or_default();
                    return Err(bollard::errors::Error::DockerStreamError { error: message });
                }
            }
            Ok(())
        })
        .await;
    streamed.map_err(|error| {
        let tail_start = last_lines.len().saturating_sub(BUILD_OUTPUT_LINES);
        DockerError::Build {
            image: reference.to_string(),
            host: host.name().to_string(),
            message: format!(
                "{}; last output: {}",
                DockerHost::engine_message(&error),
                last_lines[tail_start..].join(" | ")
            ),
        }
    })
}

async fn read_file(path: &Path, action: &str) -> Result<Vec<u8>, DockerError> {
    tokio::fs::read(path)
        .await
        .map_err(|source| DockerError::File {
            action: action.to_string(),
            path: path.display().to_string(),
            source,
        })
}

/// An in-memory build context: a tar of the Dockerfile and its files, and its hash.
struct BuildContext {
    tar: bytes::Bytes,
    build_args: HashMap<String, String>,
    hash: String,
}

/// One file of a build context.
enum Entry<'a> {
    File {
        path: String,
        contents: &'a [u8],
        mode: u32,
    },
    Symlink {
        path: String,
        target: &'static str,
    },
}

/// Applets linked into the scratch images' `/bin`, so `sh -c` and friends work there.
const BUSYBOX_APPLETS: [&str; 12] = [
    "sh", "cat", "echo", "env", "head", "ls", "printf", "sleep", "tail", "wget", "id", "pwd",
];

const EXECUTABLE: u32 = 0o755;
const READABLE: u32 = 0o644;

impl BuildContext {
    fn for_image(image: DemoImage, busybox: &[u8], base_id: &str) -> BuildContext {
        let mut build_args = HashMap::new();
        let mut entries = Vec::new();
        let file = |path: &str, contents, mode| Entry::File {
            path: path.to_string(),
            contents,
            mode,
        };
        match image {
            DemoImage::Base => {}
            DemoImage::Backend(variant) => {
                build_args.insert("APP_VERSION".to_string(), variant.tag().to_string());
                build_args.insert("APP_FAULT".to_string(), variant.fault().to_string());
                entries.extend([
                    file("Dockerfile", embedded!("backend/Dockerfile"), READABLE),
                    file("busybox", busybox, EXECUTABLE),
                    file("npm", embedded!("backend/npm"), EXECUTABLE),
                    file(
                        "app/server.sh",
                        embedded!("backend/app/server.sh"),
                        EXECUTABLE,
                    ),
                    file(
                        "app/handle-request.sh",
                        embedded!("backend/app/handle-request.sh"),
                        EXECUTABLE,
                    ),
                    file("app/db.sh", embedded!("backend/app/db.sh"), EXECUTABLE),
                ]);
                for migration in variant.migrations() {
                    for (direction, contents) in [("up", migration.up), ("down", migration.down)] {
                        entries.push(Entry::File {
                            path: format!("app/migrations/{}.{direction}.sql", migration.name),
                            contents,
                            mode: READABLE,
                        });
                    }
                }
            }
            DemoImage::Postgres => entries.extend([
                file("Dockerfile", embedded!("postgres/Dockerfile"), READABLE),
                file(
                    "entrypoint.sh",
                    embedded!("postgres/entrypoint.sh"),
                    EXECUTABLE,
                ),
            ]),
            DemoImage::Redis => {
                entries.push(file("Dockerfile", embedded!("redis/Dockerfile"), READABLE));
            }
            DemoImage::Nginx => entries.extend([
                file("Dockerfile", embedded!("nginx/Dockerfile"), READABLE),
                file("nginx.conf", embedded!("nginx/nginx.conf"), READABLE),
                file(
                    "entrypoint.sh",
                    embedded!("nginx/entrypoint.sh"),
                    EXECUTABLE,
                ),
            ]),
            DemoImage::Ide => {
                entries.extend([
                    file("Dockerfile", embedded!("ide/Dockerfile"), READABLE),
                    file("www/index.html", embedded!("ide/www/index.html"), READABLE),
                    file("www/healthz", embedded!("ide/www/healthz"), READABLE),
                ]);
                entries.extend(busybox_bin(busybox));
            }
            DemoImage::Gitweb => {
                entries.extend([
                    file("Dockerfile", embedded!("gitweb/Dockerfile"), READABLE),
                    file(
                        "www/index.html",
                        embedded!("gitweb/www/index.html"),
                        READABLE,
                    ),
                    file("www/health", embedded!("gitweb/www/health"), READABLE),
                ]);
                entries.extend(busybox_bin(busybox));
            }
        }
        let parent = if image.builds_on_base() { base_id } else { "" };
        BuildContext {
            tar: bytes::Bytes::from(tar_of(&entries)),
            hash: context_hash(&entries, &build_args, parent),
            build_args,
        }
    }
}

fn busybox_bin(busybox: &[u8]) -> Vec<Entry<'_>> {
    let mut entries = vec![Entry::File {
        path: "bin/busybox".to_string(),
        contents: busybox,
        mode: EXECUTABLE,
    }];
    entries.extend(BUSYBOX_APPLETS.map(|applet| Entry::Symlink {
        path: format!("bin/{applet}"),
        target: "busybox",
    }));
    entries
}

fn tar_of(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        // Writing into a Vec cannot fail and every path is a short relative one we chose.
        match entry {
            Entry::File {
                path,
                contents,
                mode,
            } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(contents.len() as u64);
                header.set_mode(*mode);
                builder
                    .append_data(&mut header, path, *contents)
                    .expect("appending to an in-memory tar cannot fail");
            }
            Entry::Symlink { path, target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                header.set_mode(0o777);
                builder
                    .append_link(&mut header, path, target)
                    .expect("appending to an in-memory tar cannot fail");
            }
        }
    }
    builder
        .into_inner()
        .expect("finishing an in-memory tar cannot fail")
}

fn context_hash(
    entries: &[Entry<'_>],
    build_args: &HashMap<String, String>,
    parent: &str,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(parent.as_bytes());
    let mut args: Vec<_> = build_args.iter().collect();
    args.sort();
    for (name, value) in args {
        hasher.update(format!("\0arg {name}={value}").as_bytes());
    }
    for entry in entries {
        match entry {
            Entry::File {
                path,
                contents,
                mode,
            } => {
                hasher.update(format!("\0file {path} {mode:o} {}\0", contents.len()).as_bytes());
                hasher.update(contents);
            }
            Entry::Symlink { path, target } => {
                hasher.update(format!("\0link {path} {target}").as_bytes());
            }
        }
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_migrations_embedded_and_a_distinct_context() {
        let mut hashes = std::collections::HashSet::new();
        for variant in BackendVariant::ALL {
            let context =
                BuildContext::for_image(DemoImage::Backend(variant), b"busybox", "sha256:base");
            assert!(!context.tar.is_empty());
            assert!(hashes.insert(context.hash), "{variant:?} shares a context");
        }
    }

    #[test]
    fn a_new_base_changes_the_hash_of_images_built_on_it_only() {
        let on_base = |base| BuildContext::for_image(DemoImage::Redis, b"", base).hash;
        assert_ne!(on_base("sha256:one"), on_base("sha256:two"));
        let scratch = |base| BuildContext::for_image(DemoImage::Ide, b"bb", base).hash;
        assert_eq!(scratch("sha256:one"), scratch("sha256:two"));
    }
}
