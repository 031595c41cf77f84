//! A tenant of a benchmark's own, run by `carerp-operator local` from the release binaries
//! next to the benchmark's, as `cargo dev` runs one.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The owner's password of every benchmark tenant.
pub const OWNER_PASSWORD: &str = "Vq7#mZ2!pL9x-garage";

/// A tenant run by `carerp-operator local`, from the binaries next to this one.
pub struct LocalTenant {
    pub child: Child,
    pub name: String,
    /// The BFF's URL, `http://127.0.0.1:<port>`.
    pub bff: String,
    pub owner_email: String,
    /// What it prints after the sign-in line.
    lines: mpsc::Receiver<String>,
}

impl LocalTenant {
    /// Starts a tenant of its own named `display_name`, with `args` after `local` (such
    /// as `--seed-demo`), and waits for the table of URLs and the sign-in line.
    pub fn start(display_name: &str, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_in(&bin_dir()?, display_name, args)
    }

    /// [`LocalTenant::start`] with the binaries in `dir`.
    pub fn start_in(
        dir: &std::path::Path,
        display_name: &str,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let name = format!("bench-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        let file = std::env::temp_dir().join(format!("{name}.yaml"));
        std::fs::write(
            &file,
            format!(
                "apiVersion: carerp.io/v1alpha1\nkind: CarErpTenant\nmetadata:\n  name: {name}\nspec:\n  displayName: {display_name}\n  settings:\n    currency: EUR\n    taxRateBasisPoints: 1900\n    laborRateCents: 6000\n"
            ),
        )?;
        let operator = dir.join("carerp-operator");
        let mut child = Command::new(&operator)
            .args(["local", "--owner-password", OWNER_PASSWORD])
            .args(args)
            .arg("-f")
            .arg(&file)
            // One client address sends everything: the per-address limit would be the figure.
            .env("BFF_RATE_LIMIT_PER_SECOND", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {} (build it first)", operator.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        // Read the table of URLs, then keep draining so the tenant never blocks on its logs.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut tenant = Self {
            child,
            name,
            bff: String::new(),
            owner_email: String::new(),
            lines: rx,
        };
        while tenant.owner_email.is_empty() {
            let line = tenant
                .wait_for_line("", Duration::from_secs(360))
                .context("carerp-operator local printed no bff URL and sign-in line")?;
            let columns: Vec<&str> = line.split_whitespace().collect();
            if let ["bff", url, ..] = columns.as_slice()
                && url.starts_with("http://")
            {
                tenant.bff = url.to_string();
            } else if let Some(rest) = line.strip_prefix("sign in as ") {
                tenant.owner_email = rest.split_whitespace().next().unwrap_or("").to_string();
            }
        }
        anyhow::ensure!(!tenant.bff.is_empty(), "no bff URL in the table");
        Ok(tenant)
    }

    /// The next line it prints that starts with `prefix`, waiting at most `timeout`.
    pub fn wait_for_line(&self, prefix: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let line = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .with_context(|| format!("no line starting {prefix:?} within {timeout:?}"))?;
            if line.starts_with(prefix) {
                return Ok(line);
            }
        }
    }

    /// The last `n` lines it printed that no one has read yet (its services' logs among
    /// them), for the error of a failed run.
    pub fn unread_tail(&self, n: usize) -> String {
        let unread: Vec<String> = self.lines.try_iter().collect();
        unread[unread.len().saturating_sub(n)..].join("\n")
    }

    /// Ctrl-C, as a developer stops it.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.interrupt()
    }

    fn interrupt(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = i32::try_from(self.child.id())?;
        // SAFETY: sending a signal to our own child has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill()?;
        bail!("carerp-operator local did not stop within 30 s of Ctrl-C")
    }
}

/// A failed run still stops the tenant it started.
impl Drop for LocalTenant {
    fn drop(&mut self) {
        let _ = self.interrupt();
    }
}

fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe
        .parent()
        .context("no folder of the binary")?
        .to_path_buf())
}
