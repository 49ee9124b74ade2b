//! Where the GPU backend keeps what it learns about a machine between processes.
//!
//! burn's wgpu backend (CubeCL) benchmarks candidate kernels for every new shape
//! (`wgpu-tuned`: ~55 s for the seed network's training run on an H200) and compiles the
//! winners to SPIR-V. CubeCL can persist both in an "environment" store, but by default it
//! puts that store under the `target/` of the outermost `Cargo.toml` above the current
//! directory, and the user cache only when there is none: the same binary started from two
//! folders (a Slurm job's work dir, the repository) tunes twice, and the compiled kernels
//! are not kept at all. voxflow names one folder per user instead, so tuning is paid once
//! per machine (results are keyed by device, so a home shared between different GPUs
//! holds one set per GPU).
//!
//! `VOXFLOW_GPU_CACHE`: unset or empty = `$XDG_CACHE_HOME/voxflow/gpu` (`~/.cache/...`);
//! `off` = tune in memory only, every process anew; any other value = that folder.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The environment variable that moves or disables the cache.
pub const ENV: &str = "VOXFLOW_GPU_CACHE";

/// What the GPU backend does with tuning results and compiled kernels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuCache {
    /// Kept in this folder, read by every later process.
    Dir(PathBuf),
    /// Not kept: each process tunes and compiles anew (`VOXFLOW_GPU_CACHE=off`).
    Off,
}

impl GpuCache {
    /// The cache named by `VOXFLOW_GPU_CACHE`'s value `var`, with `user_cache` the
    /// platform's per-user cache folder (`None` where the platform names none, e.g. a
    /// service without `HOME`: then the temporary folder, as CubeCL itself falls back).
    /// A relative folder is taken from `cwd`, so the run report names where it really is.
    pub fn resolve(var: Option<&OsStr>, user_cache: Option<&Path>, cwd: &Path) -> GpuCache {
        match var {
            Some(v) if v == "off" => GpuCache::Off,
            Some(v) if !v.is_empty() => GpuCache::Dir(cwd.join(v)),
            _ => GpuCache::Dir(match user_cache {
                Some(dir) => dir.join("voxflow").join("gpu"),
                None => std::env::temp_dir().join("voxflow-gpu"),
            }),
        }
    }

    /// For the run report: where tuned kernels persist, or that they do not.
    pub fn describe(&self) -> String {
        match self {
            GpuCache::Dir(dir) => format!("kernel cache {}", dir.display()),
            GpuCache::Off => format!("kernel cache off ({ENV}=off)"),
        }
    }
}

#[cfg(feature = "wgpu")]
impl GpuCache {
    /// The cache this process uses, from the environment.
    pub fn from_env() -> GpuCache {
        use etcetera::BaseStrategy;
        let user_cache = etcetera::choose_base_strategy().ok().map(|s| s.cache_dir());
        let cwd = std::env::current_dir().unwrap_or_default();
        GpuCache::resolve(
            std::env::var_os(ENV).as_deref(),
            user_cache.as_deref(),
            &cwd,
        )
    }

    /// Hand this choice to CubeCL before its first device starts, and say for the run
    /// report what came of it. Settings from a `cubecl.toml` / `burn.toml` above the
    /// current folder and CubeCL's own environment variables are kept; only the store's
    /// folder and the two cache switches are ours. A folder that cannot be created (a
    /// file, no permission) turns the cache off, said in the report: CubeCL would carry on
    /// without it silently. When CubeCL had already read its configuration (a device was
    /// made before voxflow's probe), its own defaults apply.
    pub fn install(&self) -> String {
        use cubecl_runtime::config::{cache::CacheConfig, CubeClRuntimeConfig, RuntimeConfig};
        let (dir, note) = match self {
            GpuCache::Dir(dir) => match std::fs::create_dir_all(dir) {
                Ok(()) => (Some(dir), self.describe()),
                Err(e) => (
                    None,
                    format!("kernel cache off: cannot create {}: {e}", dir.display()),
                ),
            },
            GpuCache::Off => (None, self.describe()),
        };
        let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
        config.autotune.disable_cache = dir.is_none();
        config.compilation.cache = dir.is_some();
        if let Some(dir) = dir {
            config.environment.path = CacheConfig::Directory(dir.clone());
        }
        if CubeClRuntimeConfig::try_set(config) {
            note
        } else {
            "kernel cache as CubeCL configured it".to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_moves_or_disables_the_cache_and_defaults_to_the_user_cache() {
        let home_cache = Path::new("/home/ada/.cache");
        let cwd = Path::new("/scratch/job42");
        let resolve = |v: Option<&str>| GpuCache::resolve(v.map(OsStr::new), Some(home_cache), cwd);
        let default = GpuCache::Dir("/home/ada/.cache/voxflow/gpu".into());
        assert_eq!(resolve(None), default);
        assert_eq!(resolve(Some("")), default, "an empty value means unset");
        assert_eq!(resolve(Some("off")), GpuCache::Off);
        assert_eq!(
            resolve(Some("/shared/tune")),
            GpuCache::Dir("/shared/tune".into())
        );
        assert_eq!(
            resolve(Some("tune")),
            GpuCache::Dir("/scratch/job42/tune".into()),
            "a relative folder is taken from the current folder, as the report shows it"
        );
        assert_eq!(
            GpuCache::resolve(None, None, cwd),
            GpuCache::Dir(std::env::temp_dir().join("voxflow-gpu")),
            "no user cache folder: the temporary folder"
        );
        assert_eq!(
            GpuCache::Off.describe(),
            "kernel cache off (VOXFLOW_GPU_CACHE=off)"
        );
        assert_eq!(
            default.describe(),
            "kernel cache /home/ada/.cache/voxflow/gpu"
        );
    }
}
