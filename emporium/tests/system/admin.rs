//! The admin console in a real browser: `tests/browser/admin.mjs` (playwright-core driving
//! Debian's chromium) signs in to `emporium up` as its admin and works through the catalog (see
//! the script). `./scripts/test` builds the console (`web/admin/dist`) before the tests; `up`
//! serves it from there at `/admin/`. The screenshots are kept under `target/tmp/screenshots/`.

use std::path::{Path, PathBuf};

use crate::up::{ADMIN_EMAIL, Suite, generated_password};

/// The built console, `web/admin/dist`, and the directory its checks keep screenshots in.
pub(crate) fn built_console() -> (PathBuf, PathBuf) {
    let console = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/admin/dist");
    assert!(
        console.join("index.html").is_file(),
        "the admin console is not built: ./scripts/test builds it (npm ci && npm run build in \
         web/admin)"
    );
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&screenshots).expect("a directory for the screenshots");
    (console, screenshots)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_sign_in_and_run_the_catalog_from_the_admin_console() {
    let (console, screenshots) = built_console();
    let scratch = std::env::temp_dir().join(format!("emporium-admin-{}", uuid::Uuid::new_v4()));
    let suite = Suite::new(&scratch);
    let mut up = suite.start_with(&[("EMPORIUM_ADMIN_DIR", &console)]);
    let banner = up.banner();
    let password = generated_password(&banner);
    assert!(
        banner
            .iter()
            .any(|line| line.contains(&format!("{}/admin/", suite.issuer))),
        "the banner names the console: {banner:?}"
    );

    crate::assert_node_check_passes(
        "browser",
        "admin.mjs",
        vec![
            ("EMPORIUM_ORIGIN", suite.issuer.clone()),
            ("EMPORIUM_ADMIN_EMAIL", ADMIN_EMAIL.to_owned()),
            ("EMPORIUM_ADMIN_PASSWORD", password),
            ("EMPORIUM_SCREENSHOTS", screenshots.display().to_string()),
        ],
    )
    .await;
    up.stop();
    let _ = std::fs::remove_dir_all(&scratch);
}
