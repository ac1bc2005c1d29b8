//! `fluxctl install`: the Kubernetes objects that run fluxd in the cluster
//! it syncs, Flux v1's verb (`fluxctl install … | kubectl apply -f -`).
//!
//! The YAML is written as text rather than serialised, so that every RBAC
//! rule carries the reason fluxd needs it as a comment, and so that the
//! output is byte-for-byte the same for the same flags. Every value that
//! comes from a flag is written as a double-quoted scalar.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

/// The name of fluxd's objects (Deployment, ServiceAccount, roles, Service).
const NAME: &str = "flux";
/// The Secret that holds the deploy key, as v1 named it.
pub const DEPLOY_KEY_SECRET: &str = "flux-git-deploy";
/// The Secret fluxd keeps its API token and webhook secret in.
pub const API_SECRET: &str = "flux-api";
/// The ConfigMap whose `known_hosts` holds the git hosts' keys, as v1 named it.
pub const SSH_CONFIG: &str = "flux-ssh-config";
/// The port of fluxd's API, webhooks and metrics.
const API_PORT: u16 = 3030;
/// fluxd's data folder (its default `--data-dir`), on an emptyDir.
const DATA_DIR: &str = "/var/lib/fluxd";
/// Where the `flux-ssh-config` ConfigMap is mounted: ssh reads
/// `/etc/ssh/ssh_known_hosts` as its global known hosts even with
/// `-F /dev/null`, which is how fluxd runs it.
const SSH_DIR: &str = "/etc/ssh";
/// The user (and group) fluxd runs as: the image's non-root user.
const USER_ID: u32 = 65532;

/// Arguments of `install`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// URL of the git repo of manifests, e.g. git@github.com:<you>/flux-get-started.
    #[arg(long)]
    pub git_url: String,
    /// Branch fluxd syncs and commits to.
    #[arg(long, default_value = "master")]
    pub git_branch: String,
    /// Folder of the repo holding manifests (repeatable or comma-separated; default: all of it).
    #[arg(long = "git-path", visible_alias = "git-paths", value_delimiter = ',')]
    pub git_paths: Vec<String>,
    /// Name of the sync tag and of the notes ref.
    #[arg(long, default_value = "flux")]
    pub git_label: String,
    /// Committer name.
    #[arg(long, default_value = "Flux")]
    pub git_user: String,
    /// Committer email.
    #[arg(long)]
    pub git_email: String,
    /// fluxd only reads the repo: it never pushes.
    #[arg(long)]
    pub git_readonly: bool,
    /// Namespace fluxd runs in (made when it is not `default`).
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Passed to fluxd: `.flux.yaml` commands make a path's manifests.
    #[arg(long)]
    pub manifest_generation: bool,
    /// Scan no registry (fluxd's `--registry-exclude-image=*`): no image
    /// listings, no automation.
    #[arg(long)]
    pub registry_disable_scanning: bool,
    /// Run fluxd non-root with a read-only root filesystem, no capabilities,
    /// no privilege escalation and the runtime's default seccomp profile.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "true|false")]
    pub add_security_context: bool,
    /// Write one file per object into this existing folder instead of standard output.
    #[arg(short = 'o', long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// The only namespaces fluxd may touch (repeatable): its rights become a
    /// Role in each of them instead of a ClusterRole.
    #[arg(long = "k8s-allow-namespace", value_delimiter = ',')]
    pub k8s_allow_namespaces: Vec<String>,
    /// The fluxd image (build and push it with `scripts/image`).
    #[arg(long)]
    pub image: String,
    /// A known_hosts file with the git host's keys, put in the
    /// `flux-ssh-config` ConfigMap (without it, make that ConfigMap yourself).
    #[arg(long, value_name = "FILE")]
    pub ssh_known_hosts: Option<PathBuf>,
    /// Delete cluster objects fluxd applied that left the repo.
    #[arg(long)]
    pub sync_garbage_collection: bool,
    /// Registry hosts reached without checking their certificate (repeatable).
    #[arg(long = "registry-insecure-host", value_delimiter = ',')]
    pub registry_insecure_hosts: Vec<String>,
    /// Images (globs) never scanned (repeatable).
    #[arg(long = "registry-exclude-image", value_delimiter = ',')]
    pub registry_exclude_images: Vec<String>,
    /// Pods of fluxd; more than one runs them with `--leader-election`
    /// (one leads, the others serve reads and stand by).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub replicas: u32,
}

/// One object of the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The file it is written to with `-o`.
    pub file: String,
    /// The YAML document, without a `---` line.
    pub yaml: String,
}

/// Prints the objects or writes them into `--output-dir`.
pub fn run(args: Args) -> ExitCode {
    match install(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fluxctl install: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn install(args: &Args) -> anyhow::Result<()> {
    let known_hosts = match &args.ssh_known_hosts {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading --ssh-known-hosts {}", path.display()))?,
        ),
        None => None,
    };
    let objects = objects(args, known_hosts.as_deref())?;
    match &args.output_dir {
        None => {
            let mut out = String::new();
            for object in &objects {
                out.push_str("---\n");
                out.push_str(&object.yaml);
            }
            print!("{out}");
        }
        Some(dir) => write_files(dir, &objects)?,
    }
    Ok(())
}

fn write_files(dir: &Path, objects: &[Object]) -> anyhow::Result<()> {
    if !dir.is_dir() {
        bail!(
            "--output-dir {}: not an existing folder (make it first)",
            dir.display()
        );
    }
    for object in objects {
        let path = dir.join(&object.file);
        std::fs::write(&path, &object.yaml)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Every object fluxd needs, in the order `kubectl apply` should make
/// them (the namespace first); refuses flags fluxd could not start with.
pub fn objects(args: &Args, known_hosts: Option<&str>) -> anyhow::Result<Vec<Object>> {
    check(args)?;
    let ns = args.namespace.as_str();
    let mut objects = Vec::new();
    if ns != "default" {
        objects.push(Object {
            file: "flux-namespace.yaml".into(),
            yaml: namespace(ns),
        });
    }
    objects.push(Object {
        file: "flux-account.yaml".into(),
        yaml: service_account(ns),
    });
    if args.k8s_allow_namespaces.is_empty() {
        objects.push(Object {
            file: "flux-clusterrole.yaml".into(),
            yaml: sync_role("ClusterRole", None),
        });
        objects.push(Object {
            file: "flux-clusterrolebinding.yaml".into(),
            yaml: binding("ClusterRoleBinding", "ClusterRole", NAME, None, ns),
        });
    } else {
        for allowed in &args.k8s_allow_namespaces {
            objects.push(Object {
                file: format!("flux-role-{allowed}.yaml"),
                yaml: sync_role("Role", Some(allowed)),
            });
            objects.push(Object {
                file: format!("flux-rolebinding-{allowed}.yaml"),
                yaml: binding("RoleBinding", "Role", NAME, Some(allowed), ns),
            });
        }
    }
    objects.push(Object {
        file: "flux-state-role.yaml".into(),
        yaml: state_role(ns),
    });
    objects.push(Object {
        file: "flux-state-rolebinding.yaml".into(),
        yaml: binding("RoleBinding", "Role", "flux-state", Some(ns), ns),
    });
    objects.push(Object {
        file: "flux-git-deploy-secret.yaml".into(),
        yaml: empty_secret(ns, DEPLOY_KEY_SECRET, "the deploy key it makes"),
    });
    objects.push(Object {
        file: "flux-api-secret.yaml".into(),
        yaml: empty_secret(ns, API_SECRET, "the API token and webhook secret it makes"),
    });
    if let Some(known_hosts) = known_hosts {
        objects.push(Object {
            file: "flux-ssh-config-configmap.yaml".into(),
            yaml: ssh_config(ns, known_hosts),
        });
    }
    objects.push(Object {
        file: "flux-deployment.yaml".into(),
        yaml: deployment(args),
    });
    objects.push(Object {
        file: "flux-service.yaml".into(),
        yaml: service(ns),
    });
    Ok(objects)
}

fn check(args: &Args) -> anyhow::Result<()> {
    if args.git_url.trim().is_empty() {
        bail!("--git-url is empty: give the URL of the repo of manifests");
    }
    if args.git_email.trim().is_empty() {
        bail!("--git-email is empty: give the email fluxd commits with");
    }
    if args.image.trim().is_empty() {
        bail!("--image is empty: give the fluxd image (scripts/image builds and pushes one)");
    }
    check_namespace("--namespace", &args.namespace)?;
    for allowed in &args.k8s_allow_namespaces {
        check_namespace("--k8s-allow-namespace", allowed)?;
    }
    for path in &args.git_paths {
        if path.starts_with('/') || path.split('/').any(|part| part == "..") {
            bail!(
                "--git-path {path:?}: a git path is relative to the repo's root and stays inside it"
            );
        }
    }
    Ok(())
}

/// A namespace name is a DNS label: what the API server accepts.
fn check_namespace(flag: &str, name: &str) -> anyhow::Result<()> {
    let label = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !label {
        bail!(
            "{flag} {name:?}: a namespace is at most 63 lowercase letters, digits and '-', \
             starting and ending with a letter or digit"
        );
    }
    Ok(())
}

/// A scalar as YAML reads it back exactly: a JSON string is a YAML
/// double-quoted scalar.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

fn metadata(out: &mut String, name: &str, namespace: Option<&str>) {
    out.push_str("metadata:\n");
    let _ = writeln!(out, "  name: {}", quoted(name));
    if let Some(ns) = namespace {
        let _ = writeln!(out, "  namespace: {}", quoted(ns));
    }
    out.push_str("  labels:\n    app.kubernetes.io/name: fluxd\n");
}

fn namespace(ns: &str) -> String {
    let mut out = String::from("apiVersion: v1\nkind: Namespace\n");
    metadata(&mut out, ns, None);
    out
}

fn service_account(ns: &str) -> String {
    let mut out = String::from("apiVersion: v1\nkind: ServiceAccount\n");
    metadata(&mut out, NAME, Some(ns));
    out
}

/// What sync, garbage collection and the rollout view do, cluster-wide or
/// in one namespace, and the Events it records on the objects it touches
/// (created, then patched when one repeats: the first rule covers them).
/// fluxd makes no other calls to the API server: it watches only the
/// workloads, neither scales nor reads pods.
fn sync_role(kind: &str, namespace: Option<&str>) -> String {
    let mut out = format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}\n");
    metadata(&mut out, NAME, namespace);
    out.push_str(
        "# Discovery (/api, /apis) needs no rule: the built-in system:discovery role\n\
         # grants it to every authenticated user.\n\
         rules:\n\
         # Sync applies whatever kinds the repo holds by server-side apply: a patch,\n\
         # authorised as create too when it makes the object. It reads the live object\n\
         # first to honour fluxcd.io/ignore and to skip unchanged objects.\n\
         - apiGroups: [\"*\"]\n  resources: [\"*\"]\n  verbs: [\"get\", \"create\", \"patch\"]\n\
         # Sync watches every kind for objects carrying the sync set's mark (metadata\n\
         # only; listed when a watch cannot be opened), and garbage collection deletes\n\
         # those that left the repo. Watching CustomResourceDefinitions and APIServices\n\
         # (only a ClusterRole grants it) tells it when to run discovery again.\n\
         - apiGroups: [\"*\"]\n  resources: [\"*\"]\n  verbs: [\"list\", \"watch\", \"delete\"]\n\
         # The rollout view lists and watches the workloads, and lists their service\n\
         # accounts (for the image pull secrets the registry scan uses).\n\
         - apiGroups: [\"apps\"]\n  resources: [\"deployments\", \"daemonsets\", \"statefulsets\"]\n  verbs: [\"list\", \"watch\"]\n\
         - apiGroups: [\"batch\"]\n  resources: [\"jobs\", \"cronjobs\"]\n  verbs: [\"list\", \"watch\"]\n\
         - apiGroups: [\"\"]\n  resources: [\"serviceaccounts\"]\n  verbs: [\"list\"]\n",
    );
    out
}

/// What fluxd keeps in its own namespace.
fn state_role(ns: &str) -> String {
    let mut out = String::from("apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\n");
    metadata(&mut out, "flux-state", Some(ns));
    let _ = write!(
        out,
        "rules:\n\
         # The deploy key, the API token and the webhook secret live in these Secrets\n\
         # so that they outlive the pod: read on every start, written when empty\n\
         # (and the key when it is regenerated).\n\
         - apiGroups: [\"\"]\n  resources: [\"secrets\"]\n  resourceNames: [{secret}, {api}]\n  verbs: [\"get\", \"update\", \"patch\"]\n\
         # Leader election between replicas: a Lease in this namespace.\n\
         - apiGroups: [\"coordination.k8s.io\"]\n  resources: [\"leases\"]\n  verbs: [\"get\", \"create\", \"update\"]\n\
         # Events that concern no object of the repo go on fluxd's own Pod, here.\n\
         - apiGroups: [\"\"]\n  resources: [\"events\"]\n  verbs: [\"create\", \"patch\"]\n",
        secret = quoted(DEPLOY_KEY_SECRET),
        api = quoted(API_SECRET),
    );
    out
}

fn binding(kind: &str, role_kind: &str, role: &str, namespace: Option<&str>, ns: &str) -> String {
    let mut out = format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}\n");
    metadata(&mut out, role, namespace);
    let _ = write!(
        out,
        "roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: {role_kind}\n  name: {role}\n\
         subjects:\n- kind: ServiceAccount\n  name: {NAME}\n  namespace: {ns}\n",
        role = quoted(role),
        ns = quoted(ns),
    );
    out
}

/// A Secret fluxd fills on first start: with its data left out, applying
/// this again keeps what fluxd put there.
fn empty_secret(ns: &str, name: &str, what: &str) -> String {
    let mut out = String::from("apiVersion: v1\nkind: Secret\n");
    metadata(&mut out, name, Some(ns));
    let _ = write!(
        out,
        "# Empty: fluxd fills it with {what} on first start.\ntype: Opaque\n"
    );
    out
}

fn ssh_config(ns: &str, known_hosts: &str) -> String {
    let mut out = String::from("apiVersion: v1\nkind: ConfigMap\n");
    metadata(&mut out, SSH_CONFIG, Some(ns));
    let _ = writeln!(out, "data:\n  known_hosts: {}", quoted(known_hosts));
    out
}

/// fluxd's arguments in the Deployment, each `--flag=value`.
pub fn fluxd_args(args: &Args) -> Vec<String> {
    let mut out = vec![
        format!("--git-url={}", args.git_url),
        format!("--git-branch={}", args.git_branch),
    ];
    out.extend(args.git_paths.iter().map(|p| format!("--git-path={p}")));
    out.push(format!("--git-label={}", args.git_label));
    out.push(format!("--git-user={}", args.git_user));
    out.push(format!("--git-email={}", args.git_email));
    if args.git_readonly {
        out.push("--git-readonly".into());
    }
    if args.manifest_generation {
        out.push("--manifest-generation".into());
    }
    out.extend(
        args.k8s_allow_namespaces
            .iter()
            .map(|ns| format!("--k8s-allow-namespace={ns}")),
    );
    if args.sync_garbage_collection {
        out.push("--sync-garbage-collection".into());
    }
    if args.registry_disable_scanning {
        out.push("--registry-exclude-image=*".into());
    }
    out.extend(
        args.registry_exclude_images
            .iter()
            .map(|glob| format!("--registry-exclude-image={glob}")),
    );
    out.extend(
        args.registry_insecure_hosts
            .iter()
            .map(|host| format!("--registry-insecure-host={host}")),
    );
    if args.replicas > 1 {
        out.push("--leader-election".into());
    }
    // The probes and the Service reach the API from outside the pod.
    out.push(format!("--listen=0.0.0.0:{API_PORT}"));
    out.push(format!("--data-dir={DATA_DIR}"));
    out.push(format!("--k8s-api-secret-name={API_SECRET}"));
    out
}

fn deployment(args: &Args) -> String {
    let ns = args.namespace.as_str();
    let mut out = String::from("apiVersion: apps/v1\nkind: Deployment\n");
    metadata(&mut out, NAME, Some(ns));
    let strategy = if args.replicas > 1 {
        "\x20 # Replicas elect a leader: only the holder of the Lease commits.\n\
         \x20 strategy:\n    type: RollingUpdate\n"
    } else {
        "\x20 # One fluxd at a time: a rolling update would run two that both commit.\n\
         \x20 strategy:\n    type: Recreate\n"
    };
    let _ = write!(
        out,
        "spec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      name: {NAME}\n\
         {strategy}\
         \x20 template:\n    metadata:\n      labels:\n        name: {NAME}\n        app: {NAME}\n\
         \x20       app.kubernetes.io/name: fluxd\n\
         \x20   spec:\n      serviceAccountName: {NAME}\n",
        replicas = args.replicas,
    );
    if args.add_security_context {
        let _ = write!(
            out,
            "      securityContext:\n        runAsNonRoot: true\n        runAsUser: {USER_ID}\n\
             \x20       runAsGroup: {USER_ID}\n        fsGroup: {USER_ID}\n\
             \x20       seccompProfile:\n          type: RuntimeDefault\n"
        );
    }
    let _ = write!(
        out,
        "      volumes:\n\
         \x20     # The git mirror, the registry cache: rebuilt when the pod is replaced.\n\
         \x20     - name: data\n        emptyDir: {{}}\n\
         \x20     # git and ssh-keygen write temporary files; the root filesystem is read-only.\n\
         \x20     - name: tmp\n        emptyDir: {{}}\n\
         \x20     # The git host keys: ssh reads /etc/ssh/ssh_known_hosts.\n\
         \x20     - name: ssh-config\n        configMap:\n          name: {SSH_CONFIG}\n\
         \x20         optional: true\n          items:\n          - key: known_hosts\n\
         \x20           path: ssh_known_hosts\n\
         \x20     containers:\n      - name: fluxd\n        image: {image}\n\
         \x20       imagePullPolicy: IfNotPresent\n        args:\n",
        image = quoted(&args.image),
    );
    for arg in fluxd_args(args) {
        let _ = writeln!(out, "        - {}", quoted(&arg));
    }
    let _ = write!(
        out,
        "        env:\n        - name: HOME\n          value: /tmp\n\
         \x20       # fluxd's own Pod, for the Events that concern no object of the repo.\n"
    );
    // fluxd's own Pod: for the Events that concern no object of the repo,
    // and, with replicas, the Lease's holder and where followers reach it.
    let mut fields = vec![
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ];
    if args.replicas > 1 {
        fields.push(("POD_IP", "status.podIP"));
    }
    for (name, field) in fields {
        let _ = write!(
            out,
            "        - name: {name}\n          valueFrom:\n            fieldRef:\n\
             \x20             fieldPath: {field}\n"
        );
    }
    let _ = write!(
        out,
        "        ports:\n        - name: http\n          containerPort: {API_PORT}\n\
         \x20       livenessProbe:\n          httpGet:\n            path: /healthz\n            port: http\n\
         \x20         periodSeconds: 10\n          failureThreshold: 3\n\
         \x20       readinessProbe:\n          httpGet:\n            path: /readyz\n            port: http\n\
         \x20         periodSeconds: 5\n\
         \x20       resources:\n          requests:\n            cpu: 50m\n            memory: 64Mi\n\
         \x20         limits:\n            memory: 512Mi\n"
    );
    if args.add_security_context {
        out.push_str(
            "        securityContext:\n          allowPrivilegeEscalation: false\n\
             \x20         readOnlyRootFilesystem: true\n          runAsNonRoot: true\n\
             \x20         capabilities:\n            drop: [\"ALL\"]\n",
        );
    }
    let _ = write!(
        out,
        "        volumeMounts:\n        - name: data\n          mountPath: {DATA_DIR}\n\
         \x20       - name: tmp\n          mountPath: /tmp\n\
         \x20       - name: ssh-config\n          mountPath: {SSH_DIR}\n          readOnly: true\n"
    );
    out
}

fn service(ns: &str) -> String {
    let mut out = String::from("apiVersion: v1\nkind: Service\n");
    metadata(&mut out, NAME, Some(ns));
    let _ = write!(
        out,
        "# The API (fluxctl through a port-forward) and the webhooks (/hooks/...).\n\
         spec:\n  selector:\n    name: {NAME}\n  ports:\n  - name: http\n    port: {API_PORT}\n\
         \x20   targetPort: http\n"
    );
    out
}
