//! `--model` is a directory, or a Hugging Face model id found in the local HF cache
//! (`$HF_HOME/hub`, else `~/.cache/huggingface/hub`), at the revision `refs/main` names.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let how = format!(
        "download it first (e.g. `huggingface-cli download {spec}` where the network allows, or copy \
         the model directory here) and pass its directory to --model"
    );
    let Some((org, name)) = spec.split_once('/').filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
    else {
        return Err(Error::model(path, format!("not a directory, nor a Hugging Face id like org/name; {how}")));
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
    snapshot
        .ok_or_else(|| Error::model(path, format!("not in the local Hugging Face cache ({}); {how}", repo.display())))
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
        assert!(resolve_model("no-such-dir").unwrap_err().to_string().contains("not a directory"));
        std::fs::remove_dir_all(&home).unwrap();
    }
}
