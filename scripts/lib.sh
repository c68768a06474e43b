# Shared by scripts/up and scripts/test (sourced, not run): messages, installing Debian
# packages, and building the admin console.

say() { printf '\n==> %s\n' "$*"; }
die() { printf '\nerror: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root to run: $*"; fi; }
apt_install() {
  say "Installing $* (Debian packages)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "could not install $*"
}

# Node.js and npm, from Debian's packages when missing.
ensure_node_tools() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then apt_install nodejs npm; fi
  command -v node >/dev/null || die "node is missing after installing Debian's nodejs"
  command -v npm >/dev/null || die "npm is missing after installing Debian's npm"
}

# `npm ci` in $1 from its committed lockfile, unless node_modules already holds that lockfile.
npm_ci() {
  if [ -f "$1/node_modules/.package-lock.json" ] && [ "$1/node_modules/.package-lock.json" -nt "$1/package-lock.json" ]; then
    return
  fi
  say "npm ci ($1)"
  (cd "$1" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed in $1"
}

# The admin console, built into web/admin/dist (what the gateway serves at /admin/).
build_admin_console() {
  ensure_node_tools
  npm_ci web/admin
  say "Building the admin console (web/admin)"
  (cd web/admin && npm run --silent build) || die "the admin console did not build"
}
