//! A throwaway PostgreSQL that asks for a password over TCP (`scram-sha-256` in its
//! `pg_hba.conf`), for the one test that must prove a tenant role logs in with its password:
//! the shared server trusts every connection from 127.0.0.1, so it would accept any password.
//! The admin connects through the server's own Unix socket, which it trusts.
//!
//! Built from the PostgreSQL that `.ci/services` installs (`/usr/lib/postgresql/<v>/bin`, or
//! `PG_BINDIR`); run as `postgres` when the tests run as root, as `initdb` refuses root.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub struct ScramServer {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

fn bindir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BINDIR") {
        return dir.into();
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server binaries under /usr/lib/postgresql (or set PG_BINDIR)")
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// `program args` as the `postgres` user when we are root.
fn run(program: &Path, args: &[&str]) {
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let output = command.args(args).output().expect("run a PostgreSQL tool");
    assert!(
        output.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl ScramServer {
    pub fn start() -> Self {
        let bin = bindir();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("carerp-scram-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let dir_str = dir.to_str().expect("a UTF-8 temp dir");
        run(Path::new("mkdir"), &["-p", dir_str]);
        let data = format!("{dir_str}/data");
        run(
            &bin.join("initdb"),
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ],
        );
        let options = format!("-p {port} -k {dir_str} -c listen_addresses=127.0.0.1 -c fsync=off");
        let log = format!("{dir_str}/log");
        run(
            &bin.join("pg_ctl"),
            &["-D", &data, "-l", &log, "-w", "-o", &options, "start"],
        );
        Self { bin, dir, port }
    }

    /// The superuser, through the socket.
    pub async fn admin(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .connect_with(
                PgConnectOptions::new()
                    .socket(&self.dir)
                    .port(self.port)
                    .username("postgres")
                    .database("postgres"),
            )
            .await
            .expect("the throwaway PostgreSQL answers on its socket")
    }

    /// `role` with `password` over TCP, where the server asks for it.
    pub fn over_tcp(&self, role: &str, password: &str, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(role)
            .password(password)
            .database(database)
    }
}

impl Drop for ScramServer {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        if let Some(data) = data.to_str() {
            run(
                &self.bin.join("pg_ctl"),
                &["-D", data, "-m", "immediate", "-w", "stop"],
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
