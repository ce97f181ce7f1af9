//! Files only the server's user may read: the SQLite database (it holds the signing
//! keys and password hashes — whoever reads it can mint admin tokens) with its `-wal` and
//! `-shm`, the generated admin credentials and the self-signed TLS key. They are created
//! mode 0600 whatever the umask, and existing ones that others can read are reported at
//! start.

use std::io;
use std::path::{Path, PathBuf};

/// Permission bits of a private file.
#[cfg(unix)]
const PRIVATE_MODE: u32 = 0o600;

/// Writes `contents` to `path` (created or truncated) with mode 0600, tightening the
/// mode of a file that already existed.
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(PRIVATE_MODE);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(PRIVATE_MODE))?;
    }
    file.write_all(contents)
}

/// Creates `dir` and its missing parents; those it creates are mode 0700.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Prepares a SQLite database file before SQLite opens it: creates it empty with mode
/// 0600 when missing (SQLite accepts an empty file as a new database, and creates the
/// `-wal` and `-shm` files with the database file's mode), and warns about the database,
/// `-wal` or `-shm` when group or others may read them.
pub fn prepare_database_file(path: &Path) -> io::Result<()> {
    if path.as_os_str().is_empty() || path.to_string_lossy().starts_with(':') {
        return Ok(()); // in-memory
    }
    if !path.exists() {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(PRIVATE_MODE);
        }
        match options.open(path) {
            Ok(_) => {}
            // Another instance created it meanwhile: check it like any existing file.
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err),
        }
    }
    for file in database_files(path) {
        warn_if_readable_by_others(&file);
    }
    Ok(())
}

/// The database file and the two SQLite creates beside it in WAL mode.
fn database_files(path: &Path) -> [PathBuf; 3] {
    let with_suffix = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [path.to_owned(), with_suffix("-wal"), with_suffix("-shm")]
}

/// Whether group or others may access the file at `path` (false when it is missing).
pub fn readable_by_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// Logs a warning when others may read `path`: it is left as it is (the operator may
/// have meant it, e.g. a backup group), but they should know.
pub fn warn_if_readable_by_others(path: &Path) {
    if readable_by_others(path) {
        tracing::warn!(
            path = %path.display(),
            "{} is readable by other users although it holds secrets (signing keys, \
             password hashes); restrict it with `chmod 600`",
            path.display()
        );
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_files_are_private_and_others_readable_ones_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("idlink.db");
        prepare_database_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert!(!readable_by_others(&db));

        let key = dir.path().join("key");
        std::fs::write(&key, "old").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(readable_by_others(&key));
        write_private(&key, b"new").unwrap();
        assert_eq!(mode(&key), 0o600);
        assert_eq!(std::fs::read(&key).unwrap(), b"new");

        assert_eq!(
            database_files(&db)[1],
            dir.path().join("idlink.db-wal"),
            "{:?}",
            database_files(&db)
        );
        prepare_database_file(Path::new(":memory:")).unwrap();
    }
}
