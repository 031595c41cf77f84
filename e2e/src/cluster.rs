//! A real Kubernetes control plane on this machine, for tests: etcd, kube-apiserver (RBAC
//! authorizer, PodSecurity and the usual admission plugins, service-account tokens),
//! kube-controller-manager (namespace, garbage collector, deployment, replica-set,
//! service-account, resource-quota and disruption controllers), kube-scheduler, and kwok
//! playing the kubelet of one fake node, so pods are bound, admitted and become Ready without
//! a container runtime. What controller-runtime's envtest does, plus the controllers and a node.
//!
//! The binaries are built from Go modules by `e2e/cluster/build.sh` (`just control-plane`)
//! into a cache outside the clone; [`ControlPlane::start`] asks that script where. Without
//! them the suite is skipped with a message, except under `CI`, where it fails.
//!
//! Everything runs on free ports with its state, certificates (generated on the fly) and logs
//! in a temp dir. Dropping the [`ControlPlane`] stops every process (SIGTERM, then SIGKILL)
//! even when a test panics; then the temp dir is kept and its path printed, for the logs. Each
//! child also gets `PR_SET_PDEATHSIG`, so nothing outlives a test binary that was killed.

use std::fmt::Write as _;
use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The binaries the harness runs, all from `e2e/cluster/build.sh`.
pub const BINARIES: [&str; 7] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kubectl",
    "helm",
];

/// Name of the one fake node kwok manages.
pub const NODE: &str = "kwok-node-0";

/// The controllers of kube-controller-manager that tests rely on.
const CONTROLLERS: &str = "namespace-controller,garbage-collector-controller,deployment-controller,replicaset-controller,serviceaccount-controller,resourcequota-controller,disruption-controller,root-ca-certificate-publisher-controller";

/// The workspace root (this crate is `<root>/e2e`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Where the binaries are: `CARERP_CONTROL_PLANE_BIN`, or the cache dir `build.sh` builds into.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("CARERP_CONTROL_PLANE_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let script = workspace_root().join("e2e/cluster/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--print-dir")
        .output()
        .with_context(|| format!("running {} --print-dir", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} --print-dir failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(PathBuf::from(dir))
}

/// Runs the control plane's `helm` where no cluster is needed (`template`, `lint`), from the
/// workspace root with its own empty Helm homes. `None` when the control plane is not built
/// (outside CI, like [`ControlPlane::start`]); in CI that is an error.
pub fn helm_offline(args: &[&str]) -> anyhow::Result<Option<String>> {
    let helm = bin_dir()?.join("helm");
    if !helm.is_file() {
        let message = format!(
            "{} is not built: run `just control-plane` (e2e/cluster/build.sh)",
            helm.display()
        );
        if in_ci() {
            bail!("{message}");
        }
        eprintln!("skipping: {message}");
        return Ok(None);
    }
    let home = tempfile::tempdir()?;
    let out = Command::new(&helm)
        .args(args)
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .env("KUBECONFIG", home.path().join("no-kubeconfig"))
        .current_dir(workspace_root())
        .output()
        .context("running helm")?;
    if !out.status.success() {
        bail!(
            "helm {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// A free TCP port on 127.0.0.1 (free when asked; the process binds it right after).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// One child process with its log file. Dropping it stops it.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `command` in a process group of its own, stdout and stderr into `<dir>/<name>.log`.
    pub fn spawn(name: &str, mut command: Command, dir: &Path) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches nothing of the parent's state.
        unsafe {
            command.pre_exec(|| {
                // Killed with the thread that started it, should the test binary die.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", command.get_program()))?;
        Ok(Self {
            name: name.into(),
            child,
            log,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Still running (not exited)?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The exit status, once it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn signal(&self, signal: libc::c_int) {
        let Ok(pid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill(2) on the process group we created; at worst it is already gone.
        unsafe {
            libc::kill(-pid, signal);
        }
    }

    /// `kill -9` of the process (group), as a crash or an OOM kill would do.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the process, as a paused VM or a long GC would.
    pub fn freeze(&self, frozen: bool) {
        self.signal(if frozen { libc::SIGSTOP } else { libc::SIGCONT });
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        if !self.is_running() {
            return;
        }
        self.signal(libc::SIGCONT);
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Certificates and keys of one control plane, PEM.
struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    admin_cert: String,
    admin_key: String,
    sa_private: String,
    sa_public: String,
}

fn leaf(
    issuer: &Issuer<'_, &KeyPair>,
    common_name: &str,
    organization: Option<&str>,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn pki() -> anyhow::Result<Pki> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "carerp-test-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca, &ca_key);
    let (server_cert, server_key) = leaf(
        &issuer,
        "kube-apiserver",
        None,
        &[
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "10.96.0.1",
        ],
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    // system:masters: the harness, the controller manager, the scheduler and kwok are the
    // cluster's own components; only the operator runs with the chart's RBAC.
    let (admin_cert, admin_key) = leaf(
        &issuer,
        "carerp-test-admin",
        Some("system:masters"),
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let sa = KeyPair::generate()?;
    Ok(Pki {
        ca: ca_pem,
        server_cert,
        server_key,
        admin_cert,
        admin_key,
        sa_private: sa.serialize_pem(),
        sa_public: sa.public_key_pem(),
    })
}

fn write(dir: &Path, name: &str, contents: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A kubeconfig for `server`, authenticating with a client certificate or a bearer token.
fn kubeconfig(server: &str, ca: &str, user: &KubeUser<'_>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: carerp-test\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\n",
        BASE64.encode(ca)
    );
    out.push_str("users:\n- name: carerp-test\n  user:\n");
    match user {
        KubeUser::Certificate { cert, key } => {
            let _ = writeln!(
                out,
                "    client-certificate-data: {}\n    client-key-data: {}",
                BASE64.encode(cert),
                BASE64.encode(key)
            );
        }
        KubeUser::Token(token) => {
            let _ = writeln!(out, "    token: {token}");
        }
    }
    out.push_str("contexts:\n- name: carerp-test\n  context:\n    cluster: carerp-test\n    user: carerp-test\ncurrent-context: carerp-test\n");
    out
}

enum KubeUser<'a> {
    Certificate { cert: &'a str, key: &'a str },
    Token(&'a str),
}

/// A running control plane. Dropping it stops everything.
pub struct ControlPlane {
    bin: PathBuf,
    dir: Option<tempfile::TempDir>,
    server: String,
    ca: String,
    admin_kubeconfig: PathBuf,
    /// In start order; stopped in reverse.
    processes: Vec<Process>,
    startup: Duration,
}

impl ControlPlane {
    /// Starts a control plane, or `Ok(None)` after printing why the suite is skipped: the
    /// binaries are not built and this is not CI (`CI` set: their absence is an error).
    pub async fn start() -> anyhow::Result<Option<Self>> {
        let bin = bin_dir()?;
        let missing: Vec<&str> = BINARIES
            .into_iter()
            .filter(|b| !bin.join(b).is_file())
            .collect();
        if !missing.is_empty() {
            let message = format!(
                "the control plane is not built ({} missing in {}): run `just control-plane` (e2e/cluster/build.sh)",
                missing.join(", "),
                bin.display()
            );
            if in_ci() {
                bail!("{message}");
            }
            eprintln!("skipping the control-plane suite: {message}");
            return Ok(None);
        }
        let started = Instant::now();
        let mut plane = Self::boot(bin).await?;
        plane.startup = started.elapsed();
        eprintln!(
            "control plane up in {:.1} s at {} (state and logs in {})",
            plane.startup.as_secs_f64(),
            plane.server,
            plane.dir().display()
        );
        Ok(Some(plane))
    }

    async fn boot(bin: PathBuf) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("carerp-control-plane-")
            .tempdir()
            .context("creating the temp dir")?;
        let path = dir.path().to_path_buf();
        let pki = pki().context("generating certificates")?;
        let ca = write(&path, "ca.crt", &pki.ca)?;
        let server_cert = write(&path, "apiserver.crt", &pki.server_cert)?;
        let server_key = write(&path, "apiserver.key", &pki.server_key)?;
        let sa_key = write(&path, "sa.key", &pki.sa_private)?;
        let sa_pub = write(&path, "sa.pub", &pki.sa_public)?;

        let etcd_port = free_port()?;
        let peer_port = free_port()?;
        let api_port = free_port()?;
        let server = format!("https://127.0.0.1:{api_port}");
        let admin_kubeconfig = write(
            &path,
            "admin.kubeconfig",
            &kubeconfig(
                &server,
                &pki.ca,
                &KubeUser::Certificate {
                    cert: &pki.admin_cert,
                    key: &pki.admin_key,
                },
            ),
        )?;
        let mut plane = Self {
            bin,
            dir: Some(dir),
            server,
            ca: pki.ca.clone(),
            admin_kubeconfig,
            processes: Vec::new(),
            startup: Duration::ZERO,
        };

        let mut etcd = plane.command("etcd");
        etcd.args([
            "--name=carerp-test",
            &format!("--data-dir={}", path.join("etcd").display()),
            &format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
            &format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
            &format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
            &format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
            &format!("--initial-cluster=carerp-test=http://127.0.0.1:{peer_port}"),
            // Test data: durability buys nothing and fsync costs seconds.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]);
        plane.spawn("etcd", etcd)?;

        let issuer = "https://kubernetes.default.svc.cluster.local";
        let mut apiserver = plane.command("kube-apiserver");
        apiserver.args([
            &format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            &format!("--secure-port={api_port}"),
            &format!("--cert-dir={}", path.join("apiserver").display()),
            &format!("--tls-cert-file={}", server_cert.display()),
            &format!("--tls-private-key-file={}", server_key.display()),
            &format!("--client-ca-file={}", ca.display()),
            &format!("--service-account-issuer={issuer}"),
            &format!("--api-audiences={issuer}"),
            &format!("--service-account-key-file={}", sa_pub.display()),
            &format!("--service-account-signing-key-file={}", sa_key.display()),
            "--service-cluster-ip-range=10.96.0.0/16",
            "--authorization-mode=RBAC",
            "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,PodSecurity,ResourceQuota,OwnerReferencesPermissionEnforcement,DefaultTolerationSeconds,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy",
            // A node is born tainted not-ready until the node-lifecycle controller sees it
            // Ready; kwok reports it Ready at once, so it is not tainted in the first place.
            "--disable-admission-plugins=TaintNodesByCondition",
            "--allow-privileged=false",
            "--profiling=false",
            "--endpoint-reconciler-type=none",
        ]);
        plane.spawn("kube-apiserver", apiserver)?;

        let client = plane.client().await?;
        plane
            .wait_for(
                "the API server to be ready",
                Duration::from_secs(60),
                || {
                    let client = client.clone();
                    async move {
                        let request = http::Request::get("/readyz").body(Vec::new()).ok()?;
                        client.request_text(request).await.ok()
                    }
                },
            )
            .await?;

        let kubeconfig = plane.admin_kubeconfig.display().to_string();
        let mut kcm = plane.command("kube-controller-manager");
        kcm.args([
            &format!("--kubeconfig={kubeconfig}"),
            &format!("--controllers={CONTROLLERS}"),
            "--leader-elect=false",
            "--secure-port=0",
            &format!("--root-ca-file={}", ca.display()),
            "--cluster-name=carerp-test",
        ]);
        plane.spawn("kube-controller-manager", kcm)?;

        let mut scheduler = plane.command("kube-scheduler");
        scheduler.args([
            &format!("--kubeconfig={kubeconfig}"),
            "--leader-elect=false",
            "--secure-port=0",
        ]);
        plane.spawn("kube-scheduler", scheduler)?;

        let mut kwok = plane.command("kwok");
        kwok.args([
            &format!("--kubeconfig={kubeconfig}"),
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--cidr=10.244.0.0/16",
            "--node-ip=10.0.0.10",
            "--node-lease-duration-seconds=40",
        ]);
        plane.spawn("kwok", kwok)?;

        let node: Node = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE,
                "annotations": { "kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0" },
                "labels": {
                    "kubernetes.io/hostname": NODE,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok"
                }
            },
            "status": {
                "allocatable": { "cpu": "256", "memory": "1Ti", "pods": "5000" },
                "capacity": { "cpu": "256", "memory": "1Ti", "pods": "5000" }
            }
        }))?;
        Api::<Node>::all(client.clone())
            .create(&PostParams::default(), &node)
            .await
            .context("creating the fake node")?;

        let nodes: Api<Node> = Api::all(client.clone());
        plane
            .wait_for(
                "kwok to report the node Ready",
                Duration::from_secs(60),
                || {
                    let nodes = nodes.clone();
                    async move {
                        let node = nodes.get(NODE).await.ok()?;
                        node.status?
                            .conditions?
                            .into_iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                            .then_some(())
                    }
                },
            )
            .await?;
        // The service-account controller gives every namespace its `default` account: the
        // controller manager is running.
        let accounts: Api<ServiceAccount> = Api::namespaced(client, "default");
        plane
            .wait_for(
                "the controller manager to create the default ServiceAccount",
                Duration::from_secs(60),
                || {
                    let accounts = accounts.clone();
                    async move { accounts.get_opt("default").await.ok().flatten() }
                },
            )
            .await?;
        Ok(plane)
    }

    fn command(&self, binary: &str) -> Command {
        Command::new(self.bin.join(binary))
    }

    fn spawn(&mut self, name: &str, command: Command) -> anyhow::Result<()> {
        let process = Process::spawn(name, command, self.dir())?;
        self.processes.push(process);
        Ok(())
    }

    /// Polls `check` every 100 ms until it gives a value; fails with the logs of whatever
    /// died, or after `timeout`.
    pub async fn wait_for<T, F, Fut>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: F,
    ) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = check().await {
                return Ok(value);
            }
            for process in &mut self.processes {
                if let Some(status) = process.exited() {
                    bail!(
                        "waiting for {what}: {} exited ({status}); its log:\n{}",
                        process.name(),
                        tail(&process.log(), 40)
                    );
                }
            }
            if Instant::now() > deadline {
                bail!("timed out after {timeout:?} waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The temp dir holding state, certificates and logs.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new("."), |d| d.path())
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// How long [`ControlPlane::start`] took.
    pub fn startup(&self) -> Duration {
        self.startup
    }

    /// The kubeconfig of a cluster administrator (system:masters).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// A path of one of the built binaries (`kubectl`, `helm`).
    pub fn binary(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// A client with the administrator's certificate.
    pub async fn client(&self) -> anyhow::Result<Client> {
        client_for(&self.admin_kubeconfig).await
    }

    /// A kubeconfig that authenticates as `namespace/name`'s ServiceAccount, with a token
    /// from the TokenRequest API, so whoever uses it has exactly that account's RBAC. With
    /// `server`, it points there instead (a proxy in front of the API server).
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        server: Option<&str>,
    ) -> anyhow::Result<PathBuf> {
        let client = self.client().await?;
        let accounts: Api<ServiceAccount> = Api::namespaced(client, namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec!["https://kubernetes.default.svc.cluster.local".into()],
                expiration_seconds: Some(4 * 3600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let token = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .with_context(|| format!("requesting a token of ServiceAccount {namespace}/{name}"))?
            .status
            .map(|s| s.token)
            .context("the TokenRequest has no status")?;
        let file = format!(
            "sa-{namespace}-{name}-{}.kubeconfig",
            server.map_or(0, |s| s.len())
        );
        write(
            self.dir(),
            &file,
            &kubeconfig(
                server.unwrap_or(&self.server),
                &self.ca,
                &KubeUser::Token(&token),
            ),
        )
    }

    /// Runs `kubectl` as the administrator; its stdout, or an error with its stderr.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        self.run_tool("kubectl", args)
    }

    /// Runs `helm` as the administrator; its stdout, or an error with its stderr.
    pub fn helm(&self, args: &[&str]) -> anyhow::Result<String> {
        self.run_tool("helm", args)
    }

    /// Runs `kubectl` as the administrator; whether it succeeded, and its stdout. For
    /// commands that answer with their exit status (`kubectl auth can-i`).
    pub fn kubectl_status(&self, args: &[&str]) -> anyhow::Result<(bool, String)> {
        let out = self.tool_command("kubectl").args(args).output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ))
    }

    fn tool_command(&self, tool: &str) -> Command {
        let helm_home = self.dir().join("helm");
        let mut command = Command::new(self.binary(tool));
        command
            .env("KUBECONFIG", &self.admin_kubeconfig)
            .env("HELM_CONFIG_HOME", helm_home.join("config"))
            .env("HELM_CACHE_HOME", helm_home.join("cache"))
            .env("HELM_DATA_HOME", helm_home.join("data"))
            .current_dir(workspace_root());
        command
    }

    fn run_tool(&self, tool: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .tool_command(tool)
            .args(args)
            .output()
            .with_context(|| format!("running {tool}"))?;
        if !out.status.success() {
            bail!(
                "{tool} {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The log of one of the control plane's processes (`kube-apiserver`, `kwok`, ...).
    pub fn log_of(&self, name: &str) -> String {
        self.processes
            .iter()
            .find(|p| p.name() == name)
            .map(Process::log)
            .unwrap_or_default()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        while let Some(mut process) = self.processes.pop() {
            process.stop(Duration::from_secs(5));
        }
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!(
                "the control plane's state and logs are kept in {}",
                kept.display()
            );
        }
    }
}

/// A client for a kubeconfig file.
pub async fn client_for(path: &Path) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("loading the kubeconfig")?;
    Client::try_from(config).context("building the client")
}

/// The last `lines` lines of a log.
pub fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `target/<profile>/`, where cargo put the workspace's binaries for this test run.
pub fn cargo_bin_dir() -> PathBuf {
    // A test runs from target/debug/deps, a binary (bench-operator) from target/debug.
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let dir = exe.parent()?;
            Some(if dir.ends_with("deps") {
                dir.parent()?.to_path_buf()
            } else {
                dir.to_path_buf()
            })
        })
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The `carerp-operator` binary of this build (`cargo test --workspace` builds it), or
/// `CARERP_OPERATOR_BIN` (a target dir shared by several checkouts holds whichever built last).
pub fn operator_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("CARERP_OPERATOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| cargo_bin_dir().join("carerp-operator"));
    if !path.is_file() {
        bail!(
            "{} is not built: `cargo build -p carerp-operator` (`cargo test --workspace` builds it)",
            path.display()
        );
    }
    Ok(path)
}

/// One `carerp-operator run` process on this machine.
pub struct Operator {
    pub process: Process,
    /// `POD_NAME`; the Lease identity is this plus a random suffix.
    pub name: String,
    /// Where `/metrics`, `/healthz` and `/readyz` answer.
    pub admin: std::net::SocketAddr,
}

impl Operator {
    /// Starts the operator with `kubeconfig` (a ServiceAccount's, so it has exactly that
    /// account's RBAC), on the PostgreSQL and NATS of the test environment. `env` adds or
    /// overrides variables.
    pub fn start(
        plane: &ControlPlane,
        name: &str,
        kubeconfig: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let admin: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let database = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let mut command = Command::new(operator_binary()?);
        command
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", name)
            .env("POD_NAMESPACE", "carerp-system")
            .env("CARERP_ADMIN_DATABASE_URL", &database)
            .env("NATS_URL", &nats)
            .env("CARERP_TENANT_NATS_URL", &nats)
            .env("CARERP_DATABASE_HOST", "127.0.0.1")
            .env("ADMIN_ADDR", admin.to_string())
            .env("LOG_FORMAT", "pretty")
            .env("RUST_LOG", "info,carerp_operator=debug");
        for (key, value) in env {
            command.env(key, value);
        }
        let process = Process::spawn(&format!("operator-{name}"), command, plane.dir())?;
        Ok(Self {
            process,
            name: name.into(),
            admin,
        })
    }

    /// The operator's `/metrics` text, if it answers.
    pub async fn metrics(&self) -> Option<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.admin).await.ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: operator\r\n\r\n")
            .await
            .ok()?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await.ok()?;
        body.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
    }

    /// `carerp_operator_reconciliations_total`, once the operator answers.
    pub async fn reconciliations(&self) -> Option<u64> {
        let text = self.metrics().await?;
        text.lines()
            .find_map(|l| l.strip_prefix("carerp_operator_reconciliations_total "))
            .and_then(|v| v.trim().parse().ok())
    }
}

/// A TCP proxy in front of the API server that a test can cut, to cut one client off from
/// the control plane (a network partition) while the others carry on.
pub struct Proxy {
    addr: std::net::SocketAddr,
    accept: tokio::task::JoinHandle<()>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    /// Listens on a free local port and forwards every connection to `target`.
    pub async fn start(target: std::net::SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let tracked = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tracked.lock().unwrap_or_else(|e| e.into_inner()).push(task);
            }
        });
        Ok(Self {
            addr,
            accept,
            connections,
        })
    }

    /// `https://127.0.0.1:<port>`, for a kubeconfig.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Drops every connection and refuses new ones, from now on.
    pub fn cut(&self) {
        self.accept.abort();
        for task in self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

impl ControlPlane {
    /// The API server's address, for a [`Proxy`].
    pub fn api_addr(&self) -> anyhow::Result<std::net::SocketAddr> {
        let hostport = self
            .server
            .strip_prefix("https://")
            .context("the server URL is https")?;
        Ok(hostport.parse()?)
    }

    /// `helm install` of the operator chart from `charts/carerp-operator` into
    /// `carerp-system` (CRD included), waiting for its Deployment (kwok runs its pods).
    pub fn install_chart(&self, extra: &[&str]) -> anyhow::Result<String> {
        let mut args = vec![
            "install",
            "carerp",
            "charts/carerp-operator",
            "--namespace",
            "carerp-system",
            "--create-namespace",
            "--wait",
            "--timeout",
            "120s",
        ];
        args.extend_from_slice(extra);
        self.helm(&args)
    }
}
