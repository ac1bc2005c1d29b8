//! Secrets fluxd keeps in files: the API bearer token and the webhook secret.
//! Made on first start (random, 0600) so that a fresh daemon is never open.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Reads the secret in `path`, or makes a new one there when the file is
/// absent. Returns the secret and whether it was just made.
pub fn load_or_create(path: &Path) -> io::Result<(String, bool)> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let secret = text.trim().to_string();
            if secret.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is empty; delete it to have a new secret made",
                        path.display()
                    ),
                ));
            }
            Ok((secret, false))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(path).map(|s| (s, true)),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("reading {}: {e}", path.display()),
        )),
    }
}

fn create(path: &Path) -> io::Result<String> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", path.display())))?;
    writeln!(file, "{secret}")?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_secret_is_made_once_and_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/api-token");
        let (first, made) = load_or_create(&path).unwrap();
        assert!(made);
        assert_eq!(first.len(), 64);
        let (again, made) = load_or_create(&path).unwrap();
        assert!(!made);
        assert_eq!(again, first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn an_empty_secret_file_is_an_error_not_an_open_door() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-token");
        fs::write(&path, "\n").unwrap();
        assert!(load_or_create(&path).is_err());
    }
}
