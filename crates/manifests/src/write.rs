//! Writing a file so that readers see the old text or the new, never half.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same folder,
/// renamed over the original; the original's permissions are kept. Readers
/// see the old text or the new, never a mix. It is not synced to disk: git,
/// where the edit is committed next, is what makes it durable.
pub fn atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let permissions = std::fs::metadata(path).map(|m| m.permissions()).ok();
    let mut file = tempfile::Builder::new()
        .prefix(".flux-edit-")
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    if let Some(permissions) = permissions {
        file.as_file().set_permissions(permissions)?;
    }
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}
