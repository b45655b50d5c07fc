//! Generates the jacolbert.v1 messages, their proto3 JSON mapping (pbjson) and tonic services. protoc comes from the
//! protoc-bin-vendored crate unless `PROTOC` names one, so no system package is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded; nothing else reads the environment now.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    println!("cargo:rerun-if-changed=jacolbert/v1/jacolbert.proto");
    let descriptors = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("jacolbert_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptors)
        .compile_protos(&["jacolbert/v1/jacolbert.proto"], &["."])?;
    // The proto3 JSON mapping of every message, for the router's HTTP/JSON API.
    pbjson_build::Builder::new().register_descriptors(&std::fs::read(&descriptors)?)?.build(&[".jacolbert.v1"])?;
    Ok(())
}
