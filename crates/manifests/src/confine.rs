//! Keeping every path read from a checkout inside the checkout.
//!
//! A config repo is not trusted: a committed symlink may point anywhere on
//! the machine fluxd runs on. A path is resolved here one component at a
//! time, following symlinks by reading them (never by opening what they
//! point at), and refused as soon as it would leave the root. Nothing
//! outside the root is touched, so a refusal tells nothing of what lies
//! there, not even whether the target exists.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use crate::error::LoadError;

/// How many symlinks one path may go through (as Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// The path `path` names once its symlinks are resolved, if it stays
/// inside `root`; a path that leaves it (by an absolute symlink, `..`, or a
/// chain of symlinks) is refused naming `path` only.
///
/// `path` is either relative to `root` or starts with it. Components that do
/// not exist yet are kept as written: reading them fails later with an
/// error naming `path`.
pub(crate) fn inside(root: &Path, path: &Path) -> Result<PathBuf, LoadError> {
    let refused = |why: &'static str| LoadError::Outside {
        path: path.to_path_buf(),
        why,
    };
    let real_root = root.canonicalize().map_err(|source| LoadError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let relative = if path.is_absolute() {
        path.strip_prefix(root)
            .or_else(|_| path.strip_prefix(&real_root))
            .map_err(|_| refused("it is not inside the checkout"))?
    } else {
        path
    };
    let mut todo: VecDeque<OsString> = VecDeque::new();
    queue_front(&mut todo, relative).map_err(|()| refused("it is not inside the checkout"))?;
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            if resolved.pop().is_none() {
                return Err(refused("it leads out of the checkout"));
            }
            continue;
        }
        let candidate = join(&real_root, &resolved).join(&name);
        let is_link = std::fs::symlink_metadata(&candidate).is_ok_and(|m| m.is_symlink());
        if !is_link {
            resolved.push(name);
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(refused("it goes through too many symlinks"));
        }
        let target = std::fs::read_link(&candidate).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let target = if target.is_absolute() {
            // An absolute link may still name a place inside the root.
            resolved.clear();
            target
                .strip_prefix(&real_root)
                .or_else(|_| target.strip_prefix(root))
                .map_err(|_| refused("it is a symlink out of the checkout"))?
                .to_path_buf()
        } else {
            target
        };
        queue_front(&mut todo, &target).map_err(|()| refused("it leads out of the checkout"))?;
    }
    Ok(join(&real_root, &resolved))
}

/// Puts the components of a relative `path` before the ones still to
/// resolve; an absolute one is an error.
fn queue_front(todo: &mut VecDeque<OsString>, path: &Path) -> Result<(), ()> {
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => names.push(OsString::from("..")),
            Component::Normal(name) => names.push(name.to_os_string()),
            Component::RootDir | Component::Prefix(_) => return Err(()),
        }
    }
    for name in names.into_iter().rev() {
        todo.push_front(name);
    }
    Ok(())
}

fn join(root: &Path, names: &[OsString]) -> PathBuf {
    let mut path = root.to_path_buf();
    path.extend(names);
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let root = dir.path().join("repo");
        std::fs::create_dir_all(root.join("apps/web")).expect("folders");
        std::fs::write(root.join("apps/web/web.yaml"), "kind: x\n").expect("a file");
        std::fs::write(dir.path().join("secret"), "outside\n").expect("a file");
        (dir, root)
    }

    fn refused(root: &Path, path: &str) -> String {
        match inside(root, &root.join(path)) {
            Err(error @ LoadError::Outside { .. }) => error.to_string(),
            other => panic!("{path} is not refused: {other:?}"),
        }
    }

    #[test]
    fn plain_paths_and_links_inside_resolve_to_the_file() {
        let (_dir, root) = tree();
        symlink("apps/web/web.yaml", root.join("same.yaml")).expect("a link");
        symlink("../apps", root.join("apps/up")).expect("a link");
        let real = root.canonicalize().expect("the root resolves");
        let web = real.join("apps/web/web.yaml");
        assert_eq!(
            inside(&root, &root.join("apps/web/web.yaml")).ok(),
            Some(web.clone())
        );
        assert_eq!(
            inside(&root, &root.join("same.yaml")).ok(),
            Some(web.clone())
        );
        assert_eq!(
            inside(&root, &root.join("apps/up/web/web.yaml")).ok(),
            Some(web.clone())
        );
        assert_eq!(
            inside(&root, Path::new("apps/./web/../web/web.yaml")).ok(),
            Some(web)
        );
    }

    #[test]
    fn links_and_dots_out_of_the_root_are_refused_naming_the_path_only() {
        let (dir, root) = tree();
        let secret = dir.path().join("secret");
        symlink(&secret, root.join("absolute.yaml")).expect("a link");
        symlink("../secret", root.join("dots.yaml")).expect("a link");
        symlink("dots.yaml", root.join("chain.yaml")).expect("a link");
        symlink(dir.path(), root.join("apps/folder")).expect("a link");
        symlink("/nowhere/at/all", root.join("dangling.yaml")).expect("a link");
        for path in [
            "absolute.yaml",
            "dots.yaml",
            "chain.yaml",
            "apps/folder/secret",
            "../secret",
            "apps/../../secret",
            "dangling.yaml",
        ] {
            let message = refused(&root, path);
            assert!(message.contains(path), "{message}");
            assert!(!message.contains("nowhere"), "{message}");
            assert!(!message.contains("outside\n"), "{message}");
        }
        assert!(inside(&root, &secret).is_err());
    }

    proptest::proptest! {
        /// Whatever path is asked for, through links in and out, up and down:
        /// what resolves is inside the root, and is where the path really
        /// leads.
        #[test]
        fn whatever_resolves_is_inside_the_root(
            names in proptest::collection::vec(
                proptest::sample::select(vec!["apps", "web", "web.yaml", "..", ".", "in", "out", "up", "abs"]),
                0..8,
            )
        ) {
            let (dir, root) = tree();
            linked(&dir, &root);
            let real = root.canonicalize().expect("the root resolves");
            let path = root.join(names.join("/"));
            if let Ok(resolved) = inside(&root, &path) {
                proptest::prop_assert!(resolved.starts_with(&real), "{resolved:?}");
                if let Ok(really) = path.canonicalize() {
                    proptest::prop_assert_eq!(really, resolved);
                }
            }
        }
    }

    /// Links of every kind in the tree: `in` stays inside, `out` and `abs`
    /// leave it, `up` climbs one folder.
    fn linked(dir: &tempfile::TempDir, root: &Path) {
        symlink("apps/web", root.join("in")).expect("a link");
        symlink("..", root.join("out")).expect("a link");
        symlink("..", root.join("apps/web/up")).expect("a link");
        symlink(dir.path(), root.join("apps/abs")).expect("a link");
    }

    #[test]
    fn a_link_loop_is_refused() {
        let (_dir, root) = tree();
        symlink("b.yaml", root.join("a.yaml")).expect("a link");
        symlink("a.yaml", root.join("b.yaml")).expect("a link");
        assert!(refused(&root, "a.yaml").contains("too many symlinks"));
    }
}
