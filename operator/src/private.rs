//! Private PostgreSQL and NATS for `local`, under `.carerp/`, when nothing answers at the
//! configured URLs and the server binaries are installed. They stop when `local` stops; their
//! data stays for the next run.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Whether something accepts TCP connections at `host:port`.
pub fn answers(host: &str, port: u16) -> bool {
    use std::net::ToSocketAddrs;
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|addr| TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_for_port(port: u16, what: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} did not answer on 127.0.0.1:{port} within {timeout:?}")
}

/// Finds a program on PATH or in the usual PostgreSQL folders.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("bin")).collect();
        versions.sort();
        dirs.extend(versions.into_iter().rev());
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|candidate| candidate.is_file())
}

/// A private `nats-server -js` whose store lives in `dir`.
pub struct PrivateNats {
    child: Child,
    pub url: String,
    binary: PathBuf,
    dir: PathBuf,
    port: u16,
    /// `dir/nats.conf` when the server runs with an authorization configuration.
    config: Option<PathBuf>,
}

impl PrivateNats {
    pub fn start(binary: &Path, dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(binary, dir, None)
    }

    /// [`PrivateNats::start`] with `authorization` (e.g.
    /// [`crate::nats_auth::Trust::server_config`]) in its configuration file: the tests and
    /// the benchmark of per-tenant credentials.
    pub fn start_with_auth(binary: &Path, dir: &Path, authorization: &str) -> anyhow::Result<Self> {
        Self::start_with(binary, dir, Some(authorization))
    }

    fn start_with(binary: &Path, dir: &Path, authorization: Option<&str>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = free_port()?;
        let config = match authorization {
            Some(authorization) => {
                let path = dir.join("nats.conf");
                let store = dir.join("jetstream");
                std::fs::write(
                    &path,
                    format!(
                        "host: 127.0.0.1\nport: {port}\njetstream {{ store_dir: {store:?} }}\n{authorization}"
                    ),
                )
                .with_context(|| format!("writing {}", path.display()))?;
                Some(path)
            }
            None => None,
        };
        let child = Self::spawn(binary, dir, port, config.as_deref())?;
        let mut nats = Self {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            binary: binary.to_path_buf(),
            dir: dir.to_path_buf(),
            port,
            config,
        };
        if let Err(err) = wait_for_port(port, "private NATS", Duration::from_secs(10)) {
            nats.stop();
            return Err(err);
        }
        Ok(nats)
    }

    fn spawn(binary: &Path, dir: &Path, port: u16, config: Option<&Path>) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("nats.log"))?;
        let mut command = Command::new(binary);
        match config {
            Some(config) => command.arg("-c").arg(config),
            None => command
                .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
                .arg(dir),
        };
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))
    }

    /// Starts it again after [`PrivateNats::stop`], on the same port and store (fault tests).
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        self.child = Self::spawn(&self.binary, &self.dir, self.port, self.config.as_deref())?;
        wait_for_port(self.port, "private NATS", Duration::from_secs(10))
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private PostgreSQL cluster in `dir`, trusting local connections as `postgres`.
pub struct PrivatePostgres {
    pg_ctl: PathBuf,
    dir: PathBuf,
    as_postgres: bool,
    port: u16,
    pub url: String,
}

/// PostgreSQL refuses to run as root; as root the server runs as the `postgres` user.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PrivatePostgres {
    fn command(pg_bin: &Path, as_postgres: bool) -> Command {
        if as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_bin);
            c
        } else {
            Command::new(pg_bin)
        }
    }

    pub fn start(initdb: &Path, pg_ctl: &Path, dir: &Path) -> anyhow::Result<Self> {
        let as_postgres = is_root();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir.canonicalize()?;
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()?;
            if !status.success() {
                bail!("cannot hand {} to the postgres user", dir.display());
            }
        }
        if !dir.join("PG_VERSION").exists() {
            let output = Self::command(initdb, as_postgres)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "-D"])
                .arg(&dir)
                .output()
                .with_context(|| format!("running {}", initdb.display()))?;
            if !output.status.success() {
                bail!(
                    "initdb failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
        }
        let port = free_port()?;
        let server = Self {
            pg_ctl: pg_ctl.to_path_buf(),
            dir,
            as_postgres,
            port,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        };
        server.run_server()?;
        Ok(server)
    }

    /// Starts the server of an initialised cluster on its port and waits until it answers.
    fn run_server(&self) -> anyhow::Result<()> {
        let output = Self::command(&self.pg_ctl, self.as_postgres)
            .args(["-w", "-t", "30", "-D"])
            .arg(&self.dir)
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .arg("-o")
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -k {}",
                self.port,
                self.dir.display()
            ))
            .arg("start")
            .output()
            .with_context(|| format!("running {}", self.pg_ctl.display()))?;
        if !output.status.success() {
            bail!(
                "pg_ctl start failed (see {}): {}",
                self.dir.join("server.log").display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// Starts the stopped server again on the same port with the same data (fault tests stop
    /// it with [`PrivatePostgres::stop`] in between).
    pub fn start_again(&self) -> anyhow::Result<()> {
        self.run_server()
    }

    pub fn stop(&mut self) {
        let _ = Self::command(&self.pg_ctl, self.as_postgres)
            .args(["-w", "-m", "fast", "-D"])
            .arg(&self.dir)
            .arg("stop")
            .output();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_nats_starts_answers_and_stops() {
        let Some(binary) = find_binary("nats-server") else {
            eprintln!("skipped: nats-server is not installed");
            return;
        };
        let dir = std::env::temp_dir().join(format!("carerp-private-nats-{}", std::process::id()));
        let mut nats = PrivateNats::start(&binary, &dir).unwrap();
        let port: u16 = nats.url.rsplit(':').next().unwrap().parse().unwrap();
        assert!(answers("127.0.0.1", port));
        nats.stop();
        assert!(!answers("127.0.0.1", port));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn private_postgres_starts_answers_and_stops() {
        let (Some(initdb), Some(pg_ctl)) = (find_binary("initdb"), find_binary("pg_ctl")) else {
            eprintln!("skipped: PostgreSQL server binaries are not installed");
            return;
        };
        let dir = std::env::temp_dir().join(format!("carerp-private-pg-{}", std::process::id()));
        let mut pg = PrivatePostgres::start(&initdb, &pg_ctl, &dir).unwrap();
        let port: u16 = pg
            .url
            .rsplit(':')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(answers("127.0.0.1", port));
        pg.stop();
        assert!(!answers("127.0.0.1", port));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
