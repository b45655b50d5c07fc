//! The Python client (`clients/python`, installed into the venv the test command makes) against
//! a real local cluster: clients/python/tests/test_client.py does the checking and says how many
//! checks passed.

mod common;

use std::path::PathBuf;

#[test]
fn the_python_client_searches_writes_and_lists_services_on_a_real_cluster() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("JACOLBERT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".deps/pyclient/bin/python"));
    assert!(
        python.is_file(),
        "no Python with the client installed at {} (scripts/test.sh makes that venv; or set JACOLBERT_PYTHON)",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, router) = common::local(dir.path(), 2);
    let out = std::process::Command::new(&python)
        .arg(root.join("clients/python/tests/test_client.py"))
        .arg(&router)
        // The installed package, not the source folder beside the script.
        .current_dir(dir.path())
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{stdout}");
    assert!(out.status.success() && stdout.contains("checks passed"), "{stdout}\n{stderr}");
}
