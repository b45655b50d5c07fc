//! `--model` is a directory, or a Hugging Face model id found in the local HF cache
//! (`$HF_HOME/hub`, else `~/.cache/huggingface/hub`), at the revision `refs/main` names.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    if path.is_file() {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        return Err(Error::model(
            path,
            format!(
                "this is a file: pass the model's directory (the one holding config.json), e.g. --model {}",
                dir.display()
            ),
        ));
    }
    // `org/name` is a Hugging Face id unless it reads as a path: absolute, relative to here,
    // deeper than two parts, or starting in a directory that exists.
    let hf_id = spec.split_once('/').filter(|(org, name)| {
        !org.is_empty()
            && !name.is_empty()
            && !name.contains('/')
            && !matches!(org.chars().next(), Some('.' | '~'))
            && !Path::new(org).is_dir()
    });
    let Some((org, name)) = hf_id else {
        return Err(Error::model(
            path,
            "no such directory: pass the directory that holds the model's config.json, model.safetensors and \
             vocab.txt (scripts/make_bench_model.py makes a test model; tests/fixtures holds two small ones)",
        ));
    };
    let hub = match std::env::var_os("HF_HOME") {
        Some(home) => PathBuf::from(home).join("hub"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/huggingface/hub"),
    };
    let repo = hub.join(format!("models--{org}--{name}"));
    let snapshot = std::fs::read_to_string(repo.join("refs/main"))
        .ok()
        .map(|rev| repo.join("snapshots").join(rev.trim()))
        .filter(|dir| dir.join("config.json").is_file());
    snapshot.ok_or_else(|| {
        Error::model(
            path,
            format!(
                "not a directory, and not in the local Hugging Face cache as a model id ({}): download it first \
                 (`huggingface-cli download {spec}` where the network allows, or copy the model directory here) \
                 and pass its directory to --model",
                repo.display()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_cached_snapshot_and_explains_a_missing_one() {
        let home = std::env::temp_dir().join(format!("jacolbert-hf-{}", std::process::id()));
        let snap = home.join("hub/models--org--m/snapshots/abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        std::fs::create_dir_all(home.join("hub/models--org--m/refs")).unwrap();
        std::fs::write(home.join("hub/models--org--m/refs/main"), "abc123\n").unwrap();
        std::env::set_var("HF_HOME", &home);
        assert_eq!(resolve_model("org/m").unwrap(), snap);
        let err = resolve_model("org/other").unwrap_err().to_string();
        assert!(err.contains("huggingface-cli download org/other"), "{err}");
        assert!(resolve_model("no-such-dir").unwrap_err().to_string().contains("no such directory"));
        // A path, not an id: no advice to download it.
        let inside = home.join("models/jacolbert");
        for spec in [inside.to_str().unwrap(), "./models/x", "a/b/c"] {
            let err = resolve_model(spec).unwrap_err().to_string();
            assert!(err.contains("no such directory") && !err.contains("huggingface-cli"), "{spec}: {err}");
        }
        let err = resolve_model(snap.join("config.json").to_str().unwrap()).unwrap_err().to_string();
        assert!(err.contains("this is a file") && err.contains("abc123"), "{err}");
        std::fs::remove_dir_all(&home).unwrap();
    }
}
