//! `fluxctl save`: the resources of the manifests as YAML files, Flux v1's
//! verb. From the daemon they are the manifests at the revision it read
//! last; with `--manifests`, those of a checkout. Each document is written
//! as it is in git, byte for byte: nothing server-set is in git, so there is
//! nothing to strip.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use flux_api::Manifest;
use flux_manifests::Checkout;

use crate::daemon::{self, Connection};
use crate::offline::Manifests;

/// Arguments of `save`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    manifests: Manifests,
    /// Where to write: `-` for standard output (the documents one after the other, each
    /// after a `---` line), or an existing folder to write one file per resource in,
    /// `<namespace>/<name>-<kind>.yaml`.
    #[arg(short, long, value_name = "DIR", default_value = "-")]
    out: String,
}

/// Writes every resource; exits 1 when a resource could not be written or,
/// offline, a file could not be read (the others are still written).
pub fn run(args: Args, connection: &Connection) -> ExitCode {
    if args.manifests.paths.is_empty() {
        return daemon::block_on(async move {
            let manifests = connection
                .client()
                .await?
                .manifests()
                .await
                .context("asking the daemon for its manifests")?;
            save(&manifests, &args.out)?;
            Ok(ExitCode::SUCCESS)
        });
    }
    let (checkout, failed) = args.manifests.load();
    let saved = manifests_of(&checkout).and_then(|manifests| save(&manifests, &args.out));
    if let Err(error) = saved {
        eprintln!("fluxctl: {error:#}");
        return ExitCode::FAILURE;
    }
    if failed {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The checkout's resources with their texts, as the daemon answers them.
fn manifests_of(checkout: &Checkout) -> anyhow::Result<Vec<Manifest>> {
    let mut manifests = Vec::with_capacity(checkout.resources.len());
    let mut read: Option<(&Path, String)> = None;
    for resource in &checkout.resources {
        let path = &*resource.location.file;
        if read.as_ref().is_none_or(|(file, _)| *file != path) {
            let text = match checkout.built_output(path) {
                Some(built) => built.to_string(),
                None => std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            };
            read = Some((path, text));
        }
        let Some((_, text)) = &read else {
            continue;
        };
        let Some(document) = resource.location.text_in(text) else {
            bail!("{} changed while it was read", path.display());
        };
        manifests.push(Manifest {
            id: resource.id.to_string(),
            kind: resource.kind.clone(),
            file: path.display().to_string(),
            text: document.into_owned(),
        });
    }
    Ok(manifests)
}

/// Writes the manifests to standard output (`-`) or into the folder `out`.
fn save(manifests: &[Manifest], out: &str) -> anyhow::Result<()> {
    if out == "-" {
        let mut stdout = std::io::stdout().lock();
        for manifest in manifests {
            write!(stdout, "---\n{}", manifest.text).context("writing to standard output")?;
        }
        return stdout.flush().context("writing to standard output");
    }
    let dir = Path::new(out);
    if !dir.is_dir() {
        bail!(
            "{out} is not a folder: give an existing folder to save into, or - for standard output"
        );
    }
    let mut written = HashSet::new();
    for manifest in manifests {
        let relative = file_of(manifest)?;
        if !written.insert(relative.clone()) {
            bail!(
                "{} would be written twice: {} shares its namespace, name and kind's file with another resource",
                relative.display(),
                manifest.id
            );
        }
        let path = dir.join(&relative);
        write_file(dir, &relative, &manifest.text)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("fluxctl: wrote {}", path.display());
    }
    Ok(())
}

/// Flux v1's layout: `<namespace>/<name>-<kind>.yaml`, a Namespace (and
/// any other cluster-scoped resource) at the top as `<name>-<kind>.yaml`.
fn file_of(manifest: &Manifest) -> anyhow::Result<PathBuf> {
    let id: flux_manifests::ResourceId = manifest.id.parse().with_context(|| {
        format!(
            "the daemon answered an invalid resource id {:?}",
            manifest.id
        )
    })?;
    let name = format!("{}-{}.yaml", id.name(), short_kind(&manifest.kind));
    let mut path = PathBuf::new();
    if !id.is_cluster_scoped() {
        path.push(plain_component(id.namespace(), &manifest.id)?);
    }
    path.push(plain_component(&name, &manifest.id)?);
    Ok(path)
}

/// Flux v1's abbreviations of kinds in file names; other kinds as written.
fn short_kind(kind: &str) -> &str {
    match kind {
        "Deployment" => "dep",
        "Service" => "svc",
        "ReplicationController" => "rc",
        "Namespace" => "ns",
        other => other,
    }
}

/// `part` when it names a file in the folder it is joined to, and nothing
/// above or beside it.
fn plain_component<'p>(part: &'p str, id: &str) -> anyhow::Result<&'p str> {
    let plain = !part.is_empty()
        && part != "."
        && part != ".."
        && !part.contains(['/', '\\', '\0'])
        && !part.starts_with("..");
    if !plain {
        bail!("{id} cannot be saved: {part:?} is not a plain file or folder name");
    }
    Ok(part)
}

/// Writes `text` (after a `---` line, so that files can be concatenated) to
/// `dir/relative`, making its folder; a symbolic link on the way is refused
/// rather than followed out of `dir`.
fn write_file(dir: &Path, relative: &Path, text: &str) -> anyhow::Result<()> {
    let path = dir.join(relative);
    if let Some(folder) = relative.parent().filter(|p| !p.as_os_str().is_empty()) {
        let folder = dir.join(folder);
        refuse_link(&folder)?;
        std::fs::create_dir_all(&folder).with_context(|| format!("making {}", folder.display()))?;
    }
    refuse_link(&path)?;
    std::fs::write(&path, format!("---\n{text}"))?;
    Ok(())
}

fn refuse_link(path: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            bail!("{} is a symbolic link: not following it", path.display())
        }
        _ => Ok(()),
    }
}
