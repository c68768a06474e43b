//! Compiles every contract under `proto/` with protox (pure Rust, no `protoc`), generates the tonic
//! clients and servers, and keeps the encoded descriptor set for gRPC server reflection.

use std::path::PathBuf;

use prost::Message;

const PROTO_ROOT: &str = "../../proto";
const FILES: &[&str] = &[
    "emporium/audit/v1/audit.proto",
    "emporium/catalog/v1/catalog.proto",
    "emporium/identity/v1/identity.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    let file_descriptor_set = protox::compile(FILES, [PROTO_ROOT])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("emporium_descriptor.bin"),
        file_descriptor_set.encode_to_vec(),
    )?;
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
