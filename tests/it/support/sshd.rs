//! A local OpenSSH server for the `ssh://` Docker transport: `/usr/sbin/sshd` in the
//! foreground on `127.0.0.22:22`, accepting one freshly generated client key for root.
//!
//! The address and port are fixed because bollard hands ssh the destination without
//! its port, so only port 22 can be reached; 127.0.0.22 keeps clear of an sshd the
//! machine may run on 127.0.0.1. The host key is kept in `/var/tmp/deckhand/sshd/`
//! across runs, so the entry `ssh` adds to `~/.ssh/known_hosts` stays valid.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where sshd listens.
pub const ADDRESS: &str = "127.0.0.22";

/// A running sshd; stopped when dropped.
pub struct TestSshd {
    child: Child,
    /// The private key root logs in with.
    pub client_key: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestSshd {
    /// Starts sshd and waits until it accepts connections.
    pub fn start() -> TestSshd {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let host_key = persistent_host_key();
        let client_key = dir.path().join("client_key");
        keygen(&client_key);
        std::fs::copy(
            client_key.with_extension("pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("authorized_keys written");
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress {ADDRESS}:22\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n",
                host_key.display(),
                dir.path().join("authorized_keys").display(),
                dir.path().join("sshd.pid").display(),
            ),
        )
        .expect("sshd_config written");
        // sshd's privilege separation folder.
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("/usr/sbin/sshd starts (apt-get install openssh-server; .ci/run does)");
        let mut sshd = TestSshd {
            child,
            client_key,
            _dir: dir,
        };
        sshd.wait_until_listening();
        sshd
    }

    /// `ssh://root@127.0.0.22`.
    pub fn endpoint(&self) -> String {
        format!("ssh://root@{ADDRESS}")
    }

    fn wait_until_listening(&mut self) {
        let address: SocketAddr = format!("{ADDRESS}:22").parse().expect("an address");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sshd exited at start ({status}); is {ADDRESS}:22 taken?");
            }
            assert!(Instant::now() < deadline, "sshd did not listen within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The host key kept across runs (see the module comment).
fn persistent_host_key() -> PathBuf {
    let dir = Path::new("/var/tmp/deckhand/sshd");
    std::fs::create_dir_all(dir).expect("/var/tmp/deckhand/sshd");
    let key = dir.join("host_key");
    if !key.exists() {
        keygen(&key);
    }
    key
}

/// A new ed25519 key pair without a passphrase at `path` and `path.pub`.
pub fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .expect("ssh-keygen runs (apt-get install openssh-client)");
    assert!(status.success(), "ssh-keygen made {}", path.display());
}
