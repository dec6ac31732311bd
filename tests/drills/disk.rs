//! A small tmpfs for the state directory, so a drill can fill the disk: mounted in a
//! tempdir, shrunk or grown with `mount -o remount,size=…`, unmounted on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes`; `None` when mounting is not permitted (not root,
    /// or a container without CAP_SYS_ADMIN).
    pub fn mount(bytes: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Tmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes in use, from `df`.
    pub fn used_bytes(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=used"])
            .arg(self.path())
            .output()
            .expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df output")
    }

    /// Changes the size (tmpfs refuses less than what is in use).
    pub fn resize(&self, bytes: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={bytes}")])
            .arg(self.path())
            .status()
            .expect("mount -o remount");
        assert!(status.success(), "remount to {bytes} bytes failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let path: PathBuf = self.path().to_path_buf();
        let _ = Command::new("umount").arg("-l").arg(&path).status();
    }
}
