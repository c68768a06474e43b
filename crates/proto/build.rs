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

/// The packages whose messages declare events: each gets an `events` module of typed constants.
const PACKAGES_WITH_EVENTS: &[&str] = &["emporium.catalog.v1", "emporium.identity.v1"];

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
    write_event_constants(&compiler.encode_file_descriptor_set(), &out_dir)?;
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
        // `prost::Name` on every message: events name their data's type (`dataschema`).
        .compile_fds_with_config(file_descriptor_set, {
            let mut config = tonic_prost_build::Config::new();
            config.enable_type_names();
            config
        })?;
    Ok(())
}

/// Writes `<package>.events.rs` for every package of `PACKAGES_WITH_EVENTS`: one typed constant
/// per event its messages declare (`(emporium.api.v1.events)`), so that code emits only declared
/// events, each with its declared message.
fn write_event_constants(
    file_descriptor_set: &[u8],
    out_dir: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let pool = contract::decode_pool(file_descriptor_set)?;
    let events = contract::events::declared_events(&pool);
    for package in PACKAGES_WITH_EVENTS {
        let mut code = String::new();
        for event in events
            .iter()
            .filter(|e| e.message.package_name() == *package)
        {
            let parts = contract::events::parse_event_type(&event.event_type)?;
            let rust_message = event.message.full_name()[package.len() + 1..].replace('.', "::");
            code.push_str(&format!(
                "#[doc = {description:?}]\npub const {constant}: crate::EventType<super::{rust_message}> = \
                 crate::EventType::new({event_type:?});\n",
                description = event.description,
                constant = contract::events::constant_name(&parts),
                event_type = event.event_type,
            ));
        }
        std::fs::write(out_dir.join(format!("{package}.events.rs")), code)?;
    }
    Ok(())
}
