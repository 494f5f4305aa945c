//! A lock per cache key, shared by every imgscript process on this
//! machine, so that two runs never build the same layer at once: the
//! second waits for the first and then uses its result.
//!
//! The locks are `flock` locks on files under imgscript's cache folder.
//! The kernel releases them when a process ends, also when it is killed,
//! so a crashed build never leaves a step locked.

use std::fs::File;
use std::path::PathBuf;

use nix::fcntl::{Flock, FlockArg};

/// Holds the lock of one cache key until dropped.
pub struct KeyLock {
    _lock: Option<Flock<File>>,
}

/// Whether a lock was free or had to be waited for.
pub enum Acquired {
    Free(KeyLock),
    AfterWaiting(KeyLock),
}

/// Takes the lock of `key`, waiting for the process that holds it. Without
/// a cache folder (no HOME) there is nothing to share, and the lock is
/// empty.
pub async fn acquire(key: &str) -> std::io::Result<Acquired> {
    let Some(path) = lock_path(key) else {
        return Ok(Acquired::Free(KeyLock { _lock: None }));
    };
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)?;
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => return Ok(Acquired::Free(KeyLock { _lock: Some(lock) })),
        Err((file, nix::errno::Errno::EWOULDBLOCK)) => file,
        Err((_, errno)) => return Err(errno.into()),
    };
    let lock = tokio::task::spawn_blocking(move || Flock::lock(file, FlockArg::LockExclusive))
        .await
        .map_err(std::io::Error::other)?
        .map_err(|(_, errno)| std::io::Error::from(errno))?;
    Ok(Acquired::AfterWaiting(KeyLock { _lock: Some(lock) }))
}

fn lock_path(key: &str) -> Option<PathBuf> {
    crate::cache_index::cache_folder().map(|folder| folder.join("locks").join(key))
}
