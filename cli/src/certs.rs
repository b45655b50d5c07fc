//! `jacolbert certs`: a development certificate authority and node certificates for TLS and
//! mutual TLS between nodes. Not for production keys: those belong to the company's CA.
//!
//! In `--out DIR`: `ca.pem` / `ca.key` (made once, reused after), and `NAME.pem` / `NAME.key`, a
//! certificate for `--hosts` (DNS names or IP addresses) usable both to serve and to connect
//! as a client, signed by the CA.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

#[derive(clap::Args)]
pub struct Args {
    /// Directory to write the CA and node certificates and keys into (PEM files; made if missing).
    #[arg(long)]
    out: PathBuf,
    /// Names and addresses the certificate is valid for, comma-separated.
    #[arg(long, default_value = "localhost,127.0.0.1")]
    hosts: String,
    /// File stem of the node certificate.
    #[arg(long, default_value = "node")]
    name: String,
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A private key: readable by its owner only from the moment the file exists (written first
/// and restricted after, it would be readable by others in between); a key file already there
/// is emptied and restricted before the new key goes in.
fn write_key(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let writing = || format!("writing {}", path.display());
    let mut options = std::fs::OpenOptions::new();
    let mut file = options.write(true).create(true).truncate(true).mode(0o600).open(path).with_context(writing)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).with_context(writing)?;
    file.write_all(text.as_bytes()).with_context(writing)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let (ca_pem, ca_key) = (args.out.join("ca.pem"), args.out.join("ca.key"));
    let issuer = if ca_pem.exists() && ca_key.exists() {
        let key = KeyPair::from_pem(&std::fs::read_to_string(&ca_key)?)?;
        Issuer::from_ca_cert_pem(&std::fs::read_to_string(&ca_pem)?, key)?
    } else {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, "jacolbert development CA");
        let key = KeyPair::generate()?;
        write(&ca_pem, &params.self_signed(&key)?.pem())?;
        write_key(&ca_key, &key.serialize_pem())?;
        Issuer::new(params, key)
    };
    let hosts: Vec<String> = args.hosts.split(',').map(|h| h.trim().to_string()).filter(|h| !h.is_empty()).collect();
    anyhow::ensure!(!hosts.is_empty(), "--hosts names no host");
    let mut params = CertificateParams::new(hosts.clone())?;
    params.distinguished_name.push(DnType::CommonName, format!("jacolbert {}", args.name));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write(&args.out.join(format!("{}.pem", args.name)), &cert.pem())?;
    write_key(&args.out.join(format!("{}.key", args.name)), &key.serialize_pem())?;
    println!("{}: {}.pem and {}.key for {hosts:?}, signed by ca.pem", args.out.display(), args.name, args.name);
    Ok(())
}
