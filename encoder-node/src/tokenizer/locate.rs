//! Where the MeCab dictionary (unidic-lite's `dicdir`) is looked for, in order:
//! an explicit path (`--mecab-dic`), `$JACOLBERT_MECAB_DIC`, `.deps/python` in the working
//! directory or any parent (where `scripts/fetch-unidic.sh` installs it), then the
//! site-packages of the usual Python installations.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const ENV_VAR: &str = "JACOLBERT_MECAB_DIC";
/// unidic-lite's layout inside a site-packages directory.
const PACKAGE_DICDIR: &str = "unidic_lite/dicdir";
const FILES: [&str; 4] = ["sys.dic", "unk.dic", "matrix.bin", "char.bin"];

/// Resolves the dictionary directory. An explicit path or the environment variable must point
/// at a complete dictionary; otherwise the first complete well-known place wins.
pub fn resolve_dictionary(explicit: Option<&Path>) -> Result<PathBuf> {
    let from_env = std::env::var_os(ENV_VAR).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = explicit.map(Path::to_path_buf).or(from_env) {
        return match missing_file(&dir) {
            None => Ok(dir),
            Some(file) => Err(Error::DictionaryNotFound { searched: format!("{} (no {file} there)", dir.display()) }),
        };
    }
    let candidates = well_known_places();
    if let Some(found) = candidates.iter().find(|dir| missing_file(dir).is_none()) {
        return Ok(found.clone());
    }
    // Dozens of places: the message sums them up, the debug log lists them.
    for place in &candidates {
        tracing::debug!(place = %place.display(), "no MeCab dictionary here");
    }
    let python = candidates.iter().filter(|p| !p.to_string_lossy().contains(".deps/python")).count();
    Err(Error::DictionaryNotFound {
        searched: format!(
            "${ENV_VAR} (unset), .deps/python in the working directory and each directory above it, and {python} \
             Python site-packages directories (RUST_LOG=debug lists them)"
        ),
    })
}

fn missing_file(dir: &Path) -> Option<&'static str> {
    FILES.into_iter().find(|f| !dir.join(f).is_file())
}

fn well_known_places() -> Vec<PathBuf> {
    let mut places = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            places.push(dir.join(".deps/python").join(PACKAGE_DICDIR));
        }
    }
    let mut prefixes: Vec<PathBuf> = Vec::new();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        prefixes.push(venv.into());
    }
    if let Some(conda) = std::env::var_os("CONDA_PREFIX") {
        prefixes.push(conda.into());
    }
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        prefixes.push(home.join(".local"));
        prefixes.extend(subdirs(&home.join(".pyenv/versions")));
    }
    prefixes.extend(["/usr/local", "/usr", "/opt/conda"].map(PathBuf::from));
    for prefix in prefixes {
        for python in subdirs(&prefix.join("lib")).into_iter().filter(|p| is_python_dir(p)) {
            for packages in ["site-packages", "dist-packages"] {
                places.push(python.join(packages).join(PACKAGE_DICDIR));
            }
        }
    }
    places
}

fn is_python_dir(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("python3"))
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_directory_without_the_files_names_what_is_missing() {
        let dir = std::env::temp_dir().join(format!("jacolbert-no-dic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = resolve_dictionary(Some(&dir)).unwrap_err().to_string();
        assert!(err.contains("no sys.dic there"), "{err}");
        assert!(err.contains("scripts/fetch-unidic.sh"), "{err}");
        assert!(err.contains("--mecab-dic"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn well_known_places_include_the_repo_local_install() {
        let cwd = std::env::current_dir().unwrap();
        assert!(well_known_places().contains(&cwd.join(".deps/python/unidic_lite/dicdir")));
    }
}
