//! Compiles every contract under `proto/` with protox (pure Rust, no `protoc`), generates the tonic
//! clients and servers, and keeps the encoded descriptor set: with its comments (source info) and
//! its custom options (`google.api.*`, `emporium.api.v1.access`), for reflection, the chassis's
//! access table and the contract lint.

use std::path::PathBuf;

const PROTO_ROOT: &str = "../../proto";
const FILES: &[&str] = &[
    "emporium/api/v1/annotations.proto",
    "emporium/audit/v1/audit.proto",
    "emporium/catalog/v1/catalog.proto",
    "emporium/identity/v1/identity.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    compiler
        .include_source_info(true)
        .include_imports(true)
        .open_files(FILES)?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // Encoded from the descriptor pool: `prost_types` would drop the extension options.
    std::fs::write(
        out_dir.join("emporium_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let file_descriptor_set = compiler.file_descriptor_set();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // These carry a password or a client secret: their Debug is written by hand in lib.rs,
        // redacting it.
        .skip_debug([
            ".emporium.identity.v1.CreateAccountRequest",
            ".emporium.identity.v1.SetPasswordRequest",
            ".emporium.identity.v1.CreateClientResponse",
            ".emporium.identity.v1.ResetClientSecretResponse",
        ])
        .compile_fds(file_descriptor_set)?;
    Ok(())
}
